//! One-thread encode and decode speed of the entropy stream on a file's bytes, for profiling
//! and for quick before/after checks (benches/compare.py runs the published comparison).
//!
//! `cargo run --release -p tensorpress-core --example entropy_speed -- FILE [REPEATS] [CODEC...]`
//! prints, per codec, the ratio and the best-of-REPEATS encode and decode MB/s (MB = 10^6 bytes;
//! best-of, as the huff0 peer benchmark reports, so the two compare on a busy machine).
//! `TP_SPEED_ONLY=encode` (or `decode`) times one direction only, for `perf record`;
//! `TP_CHUNK_SIZE=N` codes in chunks of N bytes instead of the default; `TP_KERNEL=NAME` decodes
//! with that kernel (`avx2` on an AVX-512 machine measures what a machine without AVX-512 runs).

use std::time::Instant;
use tensorpress_core::stream::{decode_into, encode, Codec, DecodeOptions, EncodeOptions};
use tensorpress_core::Kernel;

fn best_secs(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or("usage: entropy_speed FILE [REPEATS] [CODEC...]")?;
    let data = std::fs::read(path)?;
    let repeats: usize = args.get(1).map_or(Ok(9), |r| r.parse())?;
    let codecs = match args.get(2..) {
        Some(names) if !names.is_empty() => names.iter().map(|n| Codec::from_name(n)).collect::<Result<Vec<_>, _>>()?,
        _ => vec![Codec::Huffman, Codec::Qlc, Codec::ExpGolombRank],
    };
    let only = std::env::var("TP_SPEED_ONLY").unwrap_or_default();
    let chunk_size = match std::env::var("TP_CHUNK_SIZE") {
        Ok(n) => n.parse()?,
        Err(_) => EncodeOptions::default().chunk_size,
    };
    let kernel = match std::env::var("TP_KERNEL") {
        Ok(name) => Kernel::from_name(&name)?,
        Err(_) => Kernel::Auto,
    };
    let mb = data.len() as f64 / 1e6;
    for codec in codecs {
        let opts = EncodeOptions { codec, threads: Some(1), chunk_size, ..Default::default() };
        let blob = encode(&data, &opts)?;
        let enc = if only == "decode" { f64::NAN } else { mb / best_secs(repeats, || drop(encode(&data, &opts))) };
        let mut out = vec![0u8; data.len()];
        let dopts = DecodeOptions { threads: Some(1), kernel };
        decode_into(&blob, &mut out, &dopts)?;
        assert!(out == data, "round trip failed");
        let dec = if only == "encode" {
            f64::NAN
        } else {
            mb / best_secs(repeats, || decode_into(&blob, &mut out, &dopts).expect("decode"))
        };
        println!(
            "{:16} ratio {:.4}  encode {enc:7.0} MB/s  decode {dec:7.0} MB/s",
            codec.name(),
            blob.len() as f64 / data.len() as f64
        );
    }
    Ok(())
}
