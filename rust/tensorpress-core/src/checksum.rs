//! CRC32C (Castagnoli), the checksum of streams and of the .tpz container.

/// CRC32C of `data`, continuing a running checksum `crc` (0 to start).
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

/// CRC32C of each buffer, the buffers spread over the shared pool (`threads` as everywhere).
pub fn crc32c_many(buffers: &[&[u8]], threads: Option<usize>) -> crate::error::Result<Vec<u32>> {
    crate::threads::validate_threads(threads)?;
    Ok(crate::threads::map_pieces(buffers.to_vec(), threads, crc32c::crc32c))
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_vector_and_continuation() {
        // RFC 3720 test vector: 32 bytes of zeros.
        assert_eq!(super::crc32c_append(0, &[0u8; 32]), 0x8a91_36aa);
        let whole = super::crc32c_append(0, b"hello world");
        assert_eq!(super::crc32c_append(super::crc32c_append(0, b"hello "), b"world"), whole);
    }

    #[test]
    fn many_equals_one_by_one() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let buffers: Vec<&[u8]> = vec![&data[..0], &data[..1], &data[10..4000], &data];
        let one_by_one: Vec<u32> = buffers.iter().map(|b| super::crc32c_append(0, b)).collect();
        for threads in [None, Some(1), Some(3)] {
            assert_eq!(super::crc32c_many(&buffers, threads).unwrap(), one_by_one);
        }
        assert!(super::crc32c_many(&buffers, Some(0)).is_err());
    }
}
