//! CRC32C (Castagnoli), the checksum of streams and of the .tpz container.

/// CRC32C of `data`, continuing a running checksum `crc` (0 to start).
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
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
}
