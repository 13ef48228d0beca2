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

#[path = "common/synthetic.rs"]
mod synthetic;
use synthetic::e4m3_data;

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
