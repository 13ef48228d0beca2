//! Times the fused tensor paths on synthetic bf16 weights (Gaussian, σ = 0.02), best of N:
//! decode+merge into a caller buffer against decoding each plane to its own vector and merging
//! (the unfused path), and split+encode; with 1 thread and with `threads`.
//!
//! ```text
//! fused_loop [elements=8388608] [iters=20] [threads=2] [codec=auto|huffman|qlc|…]
//! ```
//! GB/s are of the tensor's bytes (2 per element).

use std::hint::black_box;
use std::time::Instant;
use tensorpress_core::fused::{decode_planes_into, encode_planes, PlaneCodecs};
use tensorpress_core::planes::Transform;
use tensorpress_core::stream::{decode, Codec, DecodeOptions, EncodeOptions};

fn bf16_gaussian(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(2 * n);
    for _ in 0..n {
        // Sum of 4 uniforms: close enough to a Gaussian for byte statistics.
        let mut s = 0.0f32;
        for _ in 0..4 {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            s += (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        }
        let bits = (s * 0.035).to_bits();
        let rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) as u16;
        out.extend_from_slice(&rounded.to_le_bytes());
    }
    out
}

fn best(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let n: usize = arg(0, "8388608").parse().expect("elements");
    let iters: usize = arg(1, "20").parse().expect("iters");
    let threads: usize = arg(2, "2").parse().expect("threads");
    let codecs = match arg(3, "auto").as_str() {
        "auto" => PlaneCodecs::Auto {
            candidates: vec![Codec::Qlc, Codec::Huffman, Codec::ExpGolombRank],
            min_saving_permille: 10,
        },
        name => PlaneCodecs::Fixed(Codec::from_name(name).expect("codec")),
    };
    let data = bf16_gaussian(n);
    let t = Transform::Bf16Exponent;
    let gb = |s: f64| data.len() as f64 / s / 1e9;
    for th in [1, threads] {
        let eopts = EncodeOptions { threads: Some(th), ..Default::default() };
        let planes = encode_planes(&data, t, &codecs, &eopts).expect("encode");
        let blobs: Vec<&[u8]> = planes.iter().map(|(_, b)| b.as_slice()).collect();
        let dopts = DecodeOptions { threads: Some(th), ..Default::default() };
        let mut out = vec![0u8; data.len()];
        decode_planes_into(&blobs, t, &mut out, &dopts).expect("decode");
        assert_eq!(out, data, "round trip");
        let fused =
            best(iters, || decode_planes_into(black_box(&blobs), t, black_box(&mut out), &dopts).expect("decode"));
        let unfused = best(iters, || {
            let decoded: Vec<Vec<u8>> = blobs.iter().map(|b| decode(b, &dopts).expect("decode")).collect();
            let views: Vec<&[u8]> = decoded.iter().map(Vec::as_slice).collect();
            t.merge(&views, black_box(&mut out));
        });
        let exponent_only = best(iters, || {
            black_box(decode(blobs[0], &dopts).expect("decode"));
        });
        let enc = best(iters.div_ceil(4), || {
            black_box(encode_planes(black_box(&data), t, &codecs, &eopts).expect("encode"));
        });
        let size: usize = planes.iter().map(|(_, b)| b.len()).sum();
        let names: Vec<&str> = planes.iter().map(|(c, _)| c.name()).collect();
        println!(
            "threads={th} {:?} ratio {:.4}: decode+merge fused {:.2} GB/s, unfused {:.2} GB/s, exponent plane alone {:.2} GB/s of plane, split+encode {:.2} GB/s",
            names,
            size as f64 / data.len() as f64,
            gb(fused),
            gb(unfused),
            gb(exponent_only) / 2.0,
            gb(enc)
        );
    }
}
