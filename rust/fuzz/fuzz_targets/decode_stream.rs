//! Whole-stream decoder on arbitrary bytes (covers the header parser and every codec's
//! decoder), plus re-encoding of the input as data: decode(encode(x)) must equal x.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tensorpress_core::stream::{decode, encode, Codec, DecodeOptions, EncodeOptions};

fuzz_target!(|data: &[u8]| {
    let _ = decode(data, &DecodeOptions::default());
    if let Some((&selector, rest)) = data.split_first() {
        let codec = Codec::ALL[usize::from(selector) % Codec::ALL.len()];
        let lanes = usize::from(selector >> 3) % 32 + 1;
        let opts = EncodeOptions { codec, lanes, chunk_size: 1024, threads: Some(1) };
        let blob = encode(rest, &opts).expect("valid options");
        assert_eq!(decode(&blob, &DecodeOptions::default()).expect("own stream decodes"), rest);
    }
});
