//! The two-symbol Huffman path (`kernels::huffman_pairs`) on large chunks of short codes, with
//! a few fuzzed bytes written into the coded lanes and every checksum recomputed, so the
//! mutation reaches the kernels; every kernel must agree with the reference. Input: byte 0
//! picks the lane count, byte 1 the number of overwrites, then (position, value) triples, then
//! the bytes the symbols are drawn from.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tensorpress_core::stream::{decode, encode, parse_header, Codec, DecodeOptions, EncodeOptions};
use tensorpress_core::Kernel;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let lanes = [16, 32][usize::from(data[0] & 1)];
    let overwrites = usize::from(data[1] % 8);
    let (edits, seed) = data[2..].split_at((3 * overwrites).min(data.len() - 2));
    if seed.is_empty() {
        return;
    }
    // Exponent-like symbols: most of the mass on a few values (2–3 bit codes), a rare tail.
    let sample: Vec<u8> = (0..100_000usize)
        .map(|i| {
            let b = seed[i % seed.len()].wrapping_add((i / seed.len()) as u8);
            120u8.wrapping_add((b | 0x80).trailing_zeros() as u8 * 2).wrapping_add(b & 1)
        })
        .collect();
    let opts = EncodeOptions { codec: Codec::Huffman, lanes, chunk_size: 1 << 17, threads: Some(1) };
    let Ok(mut blob) = encode(&sample, &opts) else { return };
    let Ok(info) = parse_header(&blob) else { return };
    let (at, len, _) = info.chunks[0];
    for edit in edits.chunks_exact(3) {
        let i = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % (len - 1);
        blob[at + 1 + i] = edit[2];
    }
    let index_at = info.header_len - 4 - 8 * info.chunks.len();
    let crc = tensorpress_core::checksum::crc32c_append(0, &blob[at..at + len]);
    blob[index_at + 4..index_at + 8].copy_from_slice(&crc.to_le_bytes());
    let header_crc = tensorpress_core::checksum::crc32c_append(0, &blob[..info.header_len - 4]);
    blob[info.header_len - 4..info.header_len].copy_from_slice(&header_crc.to_le_bytes());
    let reference = decode(&blob, &DecodeOptions { kernel: Kernel::Scalar, threads: Some(1) });
    if edits.is_empty() {
        assert_eq!(reference.as_deref().ok(), Some(&sample[..]));
    }
    for kernel in Kernel::available() {
        let got = decode(&blob, &DecodeOptions { kernel, threads: Some(1) });
        assert_eq!(got.is_ok(), reference.is_ok(), "{kernel:?}");
        if let (Ok(a), Ok(b)) = (&got, &reference) {
            assert_eq!(a, b, "{kernel:?}");
        }
    }
});
