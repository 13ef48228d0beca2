//! Criterion benches: decode per codec × kernel and encode per codec, one thread, on skewed
//! e4m3-like bytes generated here (Gaussian and Laplace values rounded to FP8 e4m3), with
//! `Throughput::Bytes` of *decoded* data. Sizes: 1 MiB (in cache) and 16 MiB.
//!
//! `cargo bench -p tensorpress-core --bench codecs` (filter with e.g. `-- decode/qlc`);
//! `TP_BENCH_SIZES=1` restricts to 1 MiB.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use tensorpress_core::stream::{decode_into, encode, Codec, DecodeOptions, EncodeOptions};
use tensorpress_core::Kernel;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn gaussian(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn laplace(&mut self) -> f64 {
        let u = self.uniform() - 0.5;
        -u.signum() * (1.0 - 2.0 * u.abs()).ln()
    }
}

/// Rounds `x` to FP8 e4m3 (bias 7, 3 mantissa bits, saturating at ±448), returning its byte.
fn to_e4m3(x: f64) -> u8 {
    let sign = if x < 0.0 { 0x80u8 } else { 0 };
    let a = x.abs().min(448.0);
    if a < 2f64.powi(-6) {
        // Subnormal: multiples of 2^-9.
        return sign | (a / 2f64.powi(-9)).round().min(7.0) as u8;
    }
    let e = a.log2().floor() as i32;
    let mut m = ((a / 2f64.powi(e) - 1.0) * 8.0).round() as i32;
    let mut e = e;
    if m == 8 {
        m = 0;
        e += 1;
    }
    let field = (e + 7).clamp(1, 15) as u8;
    sign | (field << 3) | (m as u8).min(if field == 15 { 6 } else { 7 })
}

/// e4m3 bytes of weight-like values (σ = 0.02, scaled per 4096-block like a per-tensor scale).
fn e4m3_data(n: usize, laplace: bool, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    (0..n)
        .map(|_| {
            let v = if laplace { rng.laplace() } else { rng.gaussian() };
            to_e4m3(v * 0.02 * (448.0 / 0.02 / 8.0) / 16.0)
        })
        .collect()
}

const CODECS: [Codec; 5] = [Codec::Qlc, Codec::Dlc, Codec::Huffman, Codec::ExpGolomb, Codec::ExpGolombRank];

fn sizes() -> Vec<usize> {
    match std::env::var("TP_BENCH_SIZES").as_deref() {
        Ok("1") => vec![1 << 20],
        _ => vec![1 << 20, 16 << 20],
    }
}

fn bench_decode(c: &mut Criterion) {
    for size in sizes() {
        let data = e4m3_data(size, false, 7);
        let mut group = c.benchmark_group(format!("decode_{}MiB", size >> 20));
        group.throughput(Throughput::Bytes(size as u64));
        group.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500)).sample_size(20);
        for codec in CODECS {
            let blob = encode(&data, &EncodeOptions { codec, threads: Some(1), ..Default::default() }).expect("encode");
            let mut out = vec![0u8; size];
            for kernel in Kernel::available() {
                let opts = DecodeOptions { kernel, threads: Some(1) };
                group.bench_function(BenchmarkId::new(codec.name(), kernel.name()), |b| {
                    b.iter(|| decode_into(black_box(&blob), &mut out, &opts).expect("decode"));
                });
            }
        }
        group.finish();
    }
}

fn bench_encode(c: &mut Criterion) {
    for size in sizes() {
        let data = e4m3_data(size, true, 11);
        let mut group = c.benchmark_group(format!("encode_{}MiB", size >> 20));
        group.throughput(Throughput::Bytes(size as u64));
        group.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500)).sample_size(20);
        for codec in CODECS {
            let opts = EncodeOptions { codec, threads: Some(1), ..Default::default() };
            group.bench_function(codec.name(), |b| b.iter(|| encode(black_box(&data), &opts).expect("encode")));
        }
        group.finish();
    }
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
