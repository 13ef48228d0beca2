//! Inputs crafted *behind* the checksums: every CRC is recomputed after the change, so the
//! structural checks that follow the CRCs (the kernels' lane-end check, `split_lanes`' check for
//! bytes after the last lane) are what must catch them — with every kernel.

use tensorpress_core::checksum::crc32c_append;
use tensorpress_core::stream::{decode, encode, parse_header, Codec, DecodeOptions, EncodeOptions};
use tensorpress_core::varint::{put_lane_lengths, read_lane_lengths};
use tensorpress_core::{Error, Kernel};

const CODED: [Codec; 5] = [Codec::Qlc, Codec::Dlc, Codec::Huffman, Codec::ExpGolomb, Codec::ExpGolombRank];
const LANES: usize = 4;

/// Skewed bytes (few distinct values) so every codec codes the chunk (mode 1).
fn skewed(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 97).trailing_zeros() as u8 + 3
        })
        .collect()
}

fn kernels() -> Vec<Kernel> {
    let mut k = Kernel::available();
    k.push(Kernel::Auto);
    k
}

/// `blob` with chunk 0 replaced by `chunk`: the index entry (length, CRC) and the header CRC are
/// recomputed, so the stream is checksum-clean.
fn reseal_first_chunk(blob: &[u8], chunk: &[u8]) -> Vec<u8> {
    let info = parse_header(blob).expect("a valid stream");
    let table_len = u32::from_le_bytes(blob[20..24].try_into().unwrap()) as usize;
    let index_at = 24 + table_len;
    let header_end = index_at + 8 * info.chunks.len();
    let mut out = blob[..header_end].to_vec();
    out[index_at..index_at + 4].copy_from_slice(&(chunk.len() as u32).to_le_bytes());
    out[index_at + 4..index_at + 8].copy_from_slice(&crc32c_append(0, chunk).to_le_bytes());
    let crc = crc32c_append(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(chunk);
    for &(offset, len, _) in &info.chunks[1..] {
        out.extend_from_slice(&blob[offset..offset + len]);
    }
    out
}

fn first_chunk(blob: &[u8]) -> Vec<u8> {
    let info = parse_header(blob).unwrap();
    let (offset, len, _) = info.chunks[0];
    blob[offset..offset + len].to_vec()
}

fn coded_stream(codec: Codec) -> Vec<u8> {
    let opts = EncodeOptions { codec, lanes: LANES, chunk_size: 4096, threads: Some(1) };
    let blob = encode(&skewed(4096 + 100), &opts).unwrap();
    assert_eq!(first_chunk(&blob)[0], 1, "{codec:?}: chunk 0 must be coded (mode 1)");
    blob
}

fn corrupt_message(blob: &[u8], kernel: Kernel) -> String {
    match decode(blob, &DecodeOptions { kernel, threads: Some(1) }) {
        Err(Error::Corrupt(message)) => message,
        other => panic!("{kernel:?}: expected a Corrupt error, got {other:?}"),
    }
}

#[test]
fn resealing_an_unchanged_chunk_still_decodes() {
    for codec in CODED {
        let blob = coded_stream(codec);
        let again = reseal_first_chunk(&blob, &first_chunk(&blob));
        assert_eq!(again, blob, "{codec:?}");
    }
}

#[test]
fn a_lane_longer_than_its_symbols_fails_the_lane_end_check_in_every_kernel() {
    for codec in CODED {
        let blob = coded_stream(codec);
        let chunk = first_chunk(&blob);
        // Lane 0 gets one more (zero) byte than its codes use; its length says so too.
        let mut lens = [0usize; LANES];
        let body_start = 1 + read_lane_lengths(&chunk[1..], &mut lens).unwrap();
        let mut longer = vec![chunk[0]];
        let mut new_lens = lens.map(|l| l as u32);
        new_lens[0] += 1;
        put_lane_lengths(&mut longer, &new_lens);
        longer.extend_from_slice(&chunk[body_start..body_start + lens[0]]);
        longer.push(0);
        longer.extend_from_slice(&chunk[body_start + lens[0]..]);
        let bad = reseal_first_chunk(&blob, &longer);
        for kernel in kernels() {
            let message = corrupt_message(&bad, kernel);
            assert!(message.contains("lane 0 holds"), "{codec:?} {kernel:?}: {message}");
        }
    }
}

#[test]
fn bytes_after_the_last_lane_fail_split_lanes_in_every_kernel() {
    for codec in CODED {
        let blob = coded_stream(codec);
        let mut chunk = first_chunk(&blob);
        chunk.push(0);
        let bad = reseal_first_chunk(&blob, &chunk);
        for kernel in kernels() {
            let message = corrupt_message(&bad, kernel);
            assert!(message.contains("bytes after the last lane"), "{codec:?} {kernel:?}: {message}");
        }
    }
}
