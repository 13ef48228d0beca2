//! Property tests: every codec round-trips arbitrary bytes through every lane count and chunk
//! size, and no mutation of a valid stream decodes to wrong data silently.

use proptest::prelude::*;
use tensorpress_core::codes::huffman::{HuffmanTable, MAX_HUFFMAN_LEN};
use tensorpress_core::stream::{decode, encode, Codec, DecodeOptions, EncodeOptions};

fn codec() -> impl Strategy<Value = Codec> {
    prop::sample::select(Codec::ALL.to_vec())
}

/// Bytes with a tunable skew: from uniform noise to nearly constant.
fn skewed_bytes() -> impl Strategy<Value = Vec<u8>> {
    (0u32..8, prop::collection::vec(any::<u32>(), 0..20_000))
        .prop_map(|(shift, raw)| raw.into_iter().map(|x| ((x >> 8) >> (x % 24 + shift)) as u8).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn round_trips(data in skewed_bytes(), codec in codec(), lanes in 1usize..=32, chunk_pow in 10u32..=16) {
        let opts = EncodeOptions { codec, lanes, chunk_size: 1 << chunk_pow, threads: Some(2) };
        let blob = encode(&data, &opts).unwrap();
        prop_assert_eq!(decode(&blob, &DecodeOptions::default()).unwrap(), data);
    }

    #[test]
    fn arbitrary_bytes_round_trip(data in prop::collection::vec(any::<u8>(), 0..5000), codec in codec()) {
        let blob = encode(&data, &EncodeOptions { codec, chunk_size: 1024, ..Default::default() }).unwrap();
        prop_assert_eq!(decode(&blob, &DecodeOptions::default()).unwrap(), data);
    }

    #[test]
    fn mutations_never_decode_silently(data in skewed_bytes(), codec in codec(), at in any::<usize>(), flip in 1u8..=255) {
        let blob = encode(&data, &EncodeOptions { codec, chunk_size: 2048, ..Default::default() }).unwrap();
        let mut bad = blob.clone();
        let i = at % bad.len();
        bad[i] ^= flip;
        // CRC32C covers every byte: header by the header CRC, chunks by their own CRC.
        prop_assert!(decode(&bad, &DecodeOptions::default()).is_err());
        let cut = at % blob.len();
        prop_assert!(decode(&blob[..cut], &DecodeOptions::default()).is_err());
    }

    #[test]
    fn garbage_never_panics(junk in prop::collection::vec(any::<u8>(), 0..4000)) {
        let _ = decode(&junk, &DecodeOptions::default());
        for version in [1, 2] {
            let mut with_magic = vec![0x89, b'T', b'P', b'E', version];
            with_magic.extend_from_slice(&junk);
            let _ = decode(&with_magic, &DecodeOptions::default());
        }
    }

    #[test]
    fn huffman_tables_parse_or_fail_cleanly(junk in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = HuffmanTable::parse(&junk);
        let _ = HuffmanTable::parse_nibbles(&junk);
    }

    #[test]
    fn huffman_tables_round_trip(counts in prop::collection::vec(prop_oneof![Just(0u64), 1u64..1_000_000], 256)) {
        let hist: [u64; 256] = counts.try_into().unwrap();
        let table = HuffmanTable::fit(&hist, MAX_HUFFMAN_LEN).unwrap();
        let mut bytes = Vec::new();
        table.serialize(&mut bytes);
        prop_assert!(bytes.len() <= 6 * 256 / 8);
        prop_assert_eq!(HuffmanTable::parse(&bytes).unwrap(), table);
    }
}

#[test]
fn size_never_exceeds_raw_plus_overhead() {
    // Incompressible data falls back to raw chunks: overhead is the header and 9 bytes/chunk.
    let noise: Vec<u8> = (0..1_000_000u64).map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8).collect();
    for codec in Codec::ALL {
        let blob = encode(&noise, &EncodeOptions { codec, ..Default::default() }).unwrap();
        let chunks = noise.len().div_ceil(tensorpress_core::stream::DEFAULT_CHUNK_SIZE);
        assert!(blob.len() <= noise.len() + 24 + 265 + 4 + chunks * 9, "{codec:?}: {}", blob.len());
    }
}

/// Version-1 streams (u32 lane lengths, nibble Huffman tables), pinned by the golden files,
/// still decode, to the same bytes as the version-2 streams written now.
#[test]
fn version_1_golden_streams_still_decode() {
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden");
    let mut seen = 0;
    for entry in std::fs::read_dir(&golden).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("stream-v1-") && name.ends_with(".tpe")) {
            continue;
        }
        let blob = std::fs::read(&path).unwrap();
        assert_eq!(blob[4], 1, "{name}");
        let info = tensorpress_core::parse_header(&blob).unwrap();
        let data = decode(&blob, &DecodeOptions::default()).unwrap();
        let opts =
            EncodeOptions { codec: info.codec(), lanes: info.lanes, chunk_size: info.chunk_size, threads: Some(1) };
        let again = encode(&data, &opts).unwrap();
        assert_eq!(again[4], 2);
        assert_eq!(decode(&again, &DecodeOptions::default()).unwrap(), data, "{name}");
        if info.codec() != Codec::Raw {
            assert!(again.len() < blob.len(), "{name}: version 2 is smaller");
        }
        seen += 1;
    }
    assert!(seen >= 7, "{seen} version-1 golden streams found");
}
