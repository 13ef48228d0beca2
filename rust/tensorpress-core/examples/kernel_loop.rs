//! Decodes one codec with one kernel in a loop: for timing (best of N) and for instruction
//! counts under callgrind.
//!
//! ```text
//! kernel_loop [codec=qlc] [kernel=avx2] [lanes=32] [iters=200] [size=1048576] [data=gauss]
//! ```
//! Prints the best and median wall time per decode and GB/s of decoded bytes. Data: e4m3 bytes
//! of Gaussian (`gauss`) or Laplace (`laplace`) weights, as in `benches/codecs.rs`, one thread.
//!
//! Instructions per byte: run under `valgrind --tool=callgrind` with two iteration counts and
//! divide the difference of the totals by the difference of decoded bytes (this removes
//! data generation and encoding), e.g. iters 1 and 11.

use std::hint::black_box;
use std::time::Instant;
use tensorpress_core::stream::{decode_into, encode, Codec, DecodeOptions, EncodeOptions};
use tensorpress_core::Kernel;

#[path = "../benches/common/synthetic.rs"]
mod synthetic;
use synthetic::e4m3_data;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let codec_name = arg(0, "qlc");
    let codec = Codec::ALL.into_iter().find(|c| c.name() == codec_name).unwrap_or_else(|| {
        let names: Vec<_> = Codec::ALL.iter().map(|c| c.name()).collect();
        panic!("unknown codec {codec_name:?} (one of {names:?})")
    });
    let kernel = Kernel::from_name(&arg(1, "avx2")).expect("kernel");
    let lanes: usize = arg(2, "32").parse().expect("lanes");
    let iters: usize = arg(3, "200").parse().expect("iters");
    let size: usize = arg(4, "1048576").parse().expect("size");
    let laplace = match arg(5, "gauss").as_str() {
        "gauss" => false,
        "laplace" => true,
        other => panic!("unknown data {other:?} (gauss, laplace)"),
    };

    let data = e4m3_data(size, laplace, 7);
    let blob = encode(&data, &EncodeOptions { codec, lanes, threads: Some(1), ..Default::default() }).expect("encode");
    let opts = DecodeOptions { kernel, threads: Some(1) };
    let mut out = vec![0u8; size];
    decode_into(&blob, &mut out, &opts).expect("decode");
    if let Some(i) = out.iter().zip(&data).position(|(a, b)| a != b) {
        panic!(
            "decoded bytes differ at {i}: {} vs {}; {:?} vs {:?}",
            out[i],
            data[i],
            &out[i.saturating_sub(4)..i + 40],
            &data[i.saturating_sub(4)..i + 40]
        );
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        decode_into(black_box(&blob), black_box(&mut out), &opts).expect("decode");
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    if let (Some(&best), Some(&median)) = (times.first(), times.get(times.len() / 2)) {
        println!(
            "{} {} lanes={} size={} ratio={:.4} best={:.1}us ({:.3} GB/s) median={:.1}us ({:.3} GB/s)",
            codec.name(),
            kernel.name(),
            lanes,
            size,
            blob.len() as f64 / size as f64,
            best * 1e6,
            size as f64 / best / 1e9,
            median * 1e6,
            size as f64 / median / 1e9
        );
    }
}
