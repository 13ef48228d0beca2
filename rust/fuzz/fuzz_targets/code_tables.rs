//! Table fitting from arbitrary histograms never panics and always yields a decodable code.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tensorpress_core::stream::{CodeTable, Codec};

fuzz_target!(|data: &[u8]| {
    let mut hist = [0u64; 256];
    for pair in data.chunks(2) {
        let weight = u64::from(pair.get(1).copied().unwrap_or(1)) << (pair[0] % 40);
        hist[usize::from(pair[0])] += weight;
    }
    for codec in Codec::ALL {
        let table = CodeTable::fit(codec, &hist).expect("fit");
        if let Some(codes) = table.encode_table() {
            for (s, &count) in hist.iter().enumerate() {
                assert!(count == 0 || codes.len[s] > 0, "{codec:?} lost symbol {s}");
            }
        }
    }
});
