//! Each decode kernel on valid headers with fuzzed chunk bodies: the checksums are recomputed
//! so the mutation reaches the lane decoders; every kernel must agree with the reference.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tensorpress_core::stream::{decode, encode, parse_header, Codec, DecodeOptions, EncodeOptions};
use tensorpress_core::Kernel;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let codec = Codec::ALL[usize::from(data[0]) % Codec::ALL.len()];
    let sample: Vec<u8> = data.iter().map(|&b| b.leading_zeros() as u8).cycle().take(3000).collect();
    let Ok(mut blob) = encode(&sample, &EncodeOptions { codec, lanes: 8, chunk_size: 1024, threads: Some(1) }) else {
        return;
    };
    let Ok(info) = parse_header(&blob) else { return };
    // Overwrite chunk bodies with fuzz bytes, then fix every CRC so only the decoders judge.
    for (k, &(at, len, _)) in info.chunks.iter().enumerate() {
        for (j, b) in blob[at + 1..at + len].iter_mut().enumerate() {
            *b ^= data[(k * 131 + j) % data.len()] & data[1];
        }
    }
    let index_at = info.header_len - 4 - 8 * info.chunks.len();
    for (k, &(at, len, _)) in info.chunks.iter().enumerate() {
        let crc = tensorpress_core::checksum::crc32c_append(0, &blob[at..at + len]);
        blob[index_at + 8 * k + 4..index_at + 8 * k + 8].copy_from_slice(&crc.to_le_bytes());
    }
    let header_crc = tensorpress_core::checksum::crc32c_append(0, &blob[..info.header_len - 4]);
    blob[info.header_len - 4..info.header_len].copy_from_slice(&header_crc.to_le_bytes());
    let reference = decode(&blob, &DecodeOptions { kernel: Kernel::Scalar, threads: Some(1) });
    for kernel in Kernel::available() {
        let got = decode(&blob, &DecodeOptions { kernel, threads: Some(1) });
        assert_eq!(got.is_ok(), reference.is_ok(), "{kernel:?}");
        if let (Ok(a), Ok(b)) = (&got, &reference) {
            assert_eq!(a, b, "{kernel:?}");
        }
    }
});
