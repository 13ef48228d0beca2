//! Table fitting from arbitrary histograms never panics and always yields a decodable code whose
//! serialised form parses back to it; parsing arbitrary bytes as a Huffman table (either stream
//! version's form) never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tensorpress_core::codes::huffman::HuffmanTable;
use tensorpress_core::stream::{CodeTable, Codec};

fuzz_target!(|data: &[u8]| {
    let _ = HuffmanTable::parse(data);
    let _ = HuffmanTable::parse_nibbles(data);
    let mut hist = [0u64; 256];
    for pair in data.chunks(2) {
        let weight = u64::from(pair.get(1).copied().unwrap_or(1)) << (pair[0] % 40);
        hist[usize::from(pair[0])] += weight;
    }
    for codec in Codec::ALL {
        let table = CodeTable::fit(codec, &hist).expect("fit");
        if let CodeTable::Huffman(t) = &table {
            let mut bytes = Vec::new();
            t.serialize(&mut bytes);
            assert_eq!(&HuffmanTable::parse(&bytes).expect("own table parses"), t);
        }
        if let Some(codes) = table.encode_table() {
            for (s, &count) in hist.iter().enumerate() {
                assert!(count == 0 || codes.len[s] > 0, "{codec:?} lost symbol {s}");
            }
        }
    }
});
