//! Differential tests: every kernel returns exactly the scalar reference's output, and fails on
//! exactly the same corrupt inputs with the same error, for every codec, lane count 1..=32 and
//! several chunk sizes, on uniform, skewed and e4m3-like data.

use proptest::prelude::*;
use tensorpress_core::stream::{decode, encode, Codec, DecodeOptions, EncodeOptions, MIN_CHUNK_SIZE};
use tensorpress_core::varint::{put_lane_lengths, read_lane_lengths};
use tensorpress_core::Kernel;

const CODECS: [Codec; 6] = [Codec::Raw, Codec::Qlc, Codec::Dlc, Codec::Huffman, Codec::ExpGolomb, Codec::ExpGolombRank];

/// Bytes with a controllable skew: `skew` 0 is uniform, larger values concentrate the mass on
/// few symbols (like exponent bytes of weights).
fn skewed(seed: u64, n: usize, skew: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            // Geometric-like around a centre, symmetric: e4m3-ish sign/exponent structure.
            let mag = (-(1.0 - u).ln() * 256.0 / f64::from(skew.max(1) * 4)) as u32;
            let v = if skew == 0 { (x >> 3) as u32 & 0xff } else { 0x38u32.wrapping_add(mag.min(0x3f)) };
            (v as u8) ^ if x & (1 << 40) != 0 { 0x80 } else { 0 }
        })
        .collect()
}

fn decode_with(blob: &[u8], kernel: Kernel) -> Result<Vec<u8>, String> {
    decode(blob, &DecodeOptions { kernel, threads: Some(1) }).map_err(|e| format!("{e:?}"))
}

fn kernels() -> Vec<Kernel> {
    let mut k = Kernel::available();
    k.push(Kernel::Auto);
    k
}

fn check_all_agree(blob: &[u8]) -> Result<(), TestCaseError> {
    let reference = decode_with(blob, Kernel::Scalar);
    for kernel in kernels() {
        let got = decode_with(blob, kernel);
        prop_assert_eq!(&got, &reference, "kernel {:?}", kernel);
    }
    Ok(())
}

fn codec_strategy() -> impl Strategy<Value = Codec> {
    prop::sample::select(CODECS.to_vec())
}

proptest! {
    // 96 cases by default; PROPTEST_CASES=n for a longer run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(96),
        ..ProptestConfig::default()
    })]

    #[test]
    fn kernels_match_reference(
        seed in any::<u64>(),
        n in 0usize..40_000,
        skew in 0u32..12,
        lanes in 1usize..=32,
        chunk_pow in 10u32..=15,
        codec in codec_strategy(),
    ) {
        let data = skewed(seed, n, skew);
        let opts = EncodeOptions { codec, lanes, chunk_size: 1 << chunk_pow, threads: Some(1) };
        let blob = encode(&data, &opts).unwrap();
        for kernel in kernels() {
            let out = decode_with(&blob, kernel);
            prop_assert_eq!(out.as_deref(), Ok(&data[..]), "kernel {:?} codec {:?} lanes {}", kernel, codec, lanes);
        }
    }

    #[test]
    fn kernels_match_reference_on_simd_lane_counts(
        seed in any::<u64>(),
        n in 0usize..300_000,
        skew in 1u32..12,
        lanes in prop::sample::select(vec![8usize, 16, 24, 32]),
        codec in codec_strategy(),
    ) {
        let data = skewed(seed, n, skew);
        let opts = EncodeOptions { codec, lanes, chunk_size: 1 << 16, threads: Some(1) };
        let blob = encode(&data, &opts).unwrap();
        check_all_agree(&blob)?;
        let out = decode_with(&blob, Kernel::Scalar);
        prop_assert_eq!(out.as_deref(), Ok(&data[..]));
    }

    /// Corrupt streams: the CRCs are recomputed after flipping bits inside coded lanes, so the
    /// corruption reaches the kernels; every kernel must fail (or succeed) exactly as the
    /// reference does, with the same error.
    #[test]
    fn kernels_fail_like_reference(
        seed in any::<u64>(),
        n in 2_000usize..60_000,
        skew in 1u32..12,
        lanes in prop::sample::select(vec![1usize, 3, 8, 16, 32]),
        codec in codec_strategy(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..6),
        cut_lane_byte in any::<bool>(),
    ) {
        let data = skewed(seed, n, skew);
        let opts = EncodeOptions { codec, lanes, chunk_size: MIN_CHUNK_SIZE * 16, threads: Some(1) };
        let blob = encode(&data, &opts).unwrap();
        let info = tensorpress_core::parse_header(&blob).unwrap();
        let mut chunks: Vec<Vec<u8>> = info.chunks.iter().map(|&(off, len, _)| blob[off..off + len].to_vec()).collect();
        // Whether some flip landed outside the last byte of its lane: there a changed bit must
        // change the decoded bytes or be refused (the last byte may hold accepted padding bits).
        let mut flipped = Vec::new();
        for (at, bit) in &flips {
            let k = at.index(chunks.len());
            if let Some((data_at, lens)) = coded_lanes(&chunks[k], lanes) {
                let total: usize = lens.iter().sum();
                if total > 0 {
                    // Inside the lane data (past the mode byte and the lane lengths).
                    let i = data_at + at.index(total);
                    chunks[k][i] ^= 1 << bit;
                    flipped.push((k, i, is_last_byte_of_lane(data_at, &lens, i)));
                }
            }
        }
        // Two flips of one bit cancel: only bytes that really differ count.
        let differs = |&&(k, i, _): &&(usize, usize, bool)| chunks[k][i] != blob[info.chunks[k].0 + i];
        let flipped_inside = flipped.iter().filter(differs).any(|&(_, _, last)| !last);
        let any_flip = flipped.iter().any(|f| differs(&f));
        let mut cut = false;
        if cut_lane_byte && lanes > 1 {
            // Claim one byte less for lane 0 of the first chunk and one more for lane 1.
            if let Some((data_at, mut lens)) = coded_lanes(&chunks[0], lanes) {
                if lens[0] > 0 {
                    lens[0] -= 1;
                    lens[1] += 1;
                    let mut chunk = vec![chunks[0][0]];
                    put_lane_lengths(&mut chunk, &lens.iter().map(|&l| l as u32).collect::<Vec<_>>());
                    chunk.extend_from_slice(&chunks[0][data_at..]);
                    chunks[0] = chunk;
                    cut = true;
                }
            }
        }
        let bad = resealed(&blob, &info, &chunks);
        check_all_agree(&bad)?;
        let reference = decode_with(&bad, Kernel::Scalar);
        if cut && !any_flip {
            // Lane 0 runs past its shortened end or lane 1 is left with a byte unread. With a
            // flipped bit as well, lane 0 may need fewer bits and lane 1 may parse its extra byte:
            // the CRCs were re-sealed, so such a stream is only required to decode like the
            // reference (checked above).
            prop_assert!(reference.is_err(), "moving a lane boundary was accepted");
        } else if !cut && flipped_inside {
            prop_assert!(
                reference.as_deref() != Ok(&data[..]),
                "a flipped code bit decoded to the original bytes"
            );
        }
    }

    /// Huffman chunks of short codes, where the AVX2 and AVX-512 kernels decode two symbols per
    /// lookup (`kernels::huffman_pairs`), intact and with bytes of coded lanes overwritten: every
    /// kernel returns the reference's bytes or its error.
    #[test]
    fn pair_decoding_matches_reference(
        seed in any::<u64>(),
        n in 60_000usize..400_000,
        rare_per_mille in 0u64..20,
        lanes in prop::sample::select(vec![8usize, 16, 32]),
        chunk_pow in 16u32..=18,
        overwrites in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let data = exponent_like(seed, n, rare_per_mille);
        let opts = EncodeOptions { codec: Codec::Huffman, lanes, chunk_size: 1 << chunk_pow, threads: Some(1) };
        let blob = encode(&data, &opts).unwrap();
        let info = tensorpress_core::parse_header(&blob).unwrap();
        let mut chunks: Vec<Vec<u8>> = info.chunks.iter().map(|&(off, len, _)| blob[off..off + len].to_vec()).collect();
        for (chunk_at, byte_at, value) in &overwrites {
            let k = chunk_at.index(chunks.len());
            if let Some((data_at, lens)) = coded_lanes(&chunks[k], lanes) {
                let total: usize = lens.iter().sum();
                if total > 0 {
                    chunks[k][data_at + byte_at.index(total)] = *value;
                }
            }
        }
        let stream = resealed(&blob, &info, &chunks);
        check_all_agree(&stream)?;
        if overwrites.is_empty() {
            let reference = decode_with(&stream, Kernel::Scalar);
            prop_assert_eq!(reference.as_deref(), Ok(&data[..]));
        }
    }
}

/// Exponent-like bytes (bf16 exponent planes: 2–3 bits per symbol): a geometric spread over
/// about 20 values, plus a share `rare_per_mille`/1000 of 16 rare values (long codes).
fn exponent_like(seed: u64, n: usize, rare_per_mille: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (x >> 20) % 1000 < rare_per_mille {
                ((x >> 40) % 16 * 7 + 3) as u8
            } else {
                (118 + (x % 4096).trailing_zeros() * 2 + ((x >> 30) & 1) as u32) as u8
            }
        })
        .collect()
}

/// `blob` with its chunks replaced by `chunks`: the index (lengths, CRCs) and the header CRC
/// recomputed, so corruption inside the chunks reaches the kernels.
fn resealed(blob: &[u8], info: &tensorpress_core::stream::StreamInfo, chunks: &[Vec<u8>]) -> Vec<u8> {
    let index_at = info.header_len - 4 - info.chunks.len() * 8;
    let mut bad = blob[..info.header_len].to_vec();
    for (i, chunk) in chunks.iter().enumerate() {
        bad[index_at + 8 * i..index_at + 8 * i + 4].copy_from_slice(&(chunk.len() as u32).to_le_bytes());
        bad[index_at + 8 * i + 4..index_at + 8 * i + 8].copy_from_slice(&crc32c::crc32c(chunk).to_le_bytes());
    }
    let hcrc = crc32c::crc32c(&bad[..info.header_len - 4]);
    bad[info.header_len - 4..info.header_len].copy_from_slice(&hcrc.to_le_bytes());
    bad.extend(chunks.iter().flatten());
    bad
}

/// Where the lane data of a coded (mode 1) chunk starts and each lane's length; `None` for
/// other modes.
fn coded_lanes(chunk: &[u8], lanes: usize) -> Option<(usize, Vec<usize>)> {
    if chunk.first() != Some(&1) {
        return None;
    }
    let mut lens = vec![0usize; lanes];
    let used = read_lane_lengths(&chunk[1..], &mut lens).ok()?;
    Some((1 + used, lens))
}

/// Whether byte `i` of a chunk is the last byte of its lane (lanes of `lens` from `data_at`).
fn is_last_byte_of_lane(data_at: usize, lens: &[usize], i: usize) -> bool {
    let mut end = data_at;
    for &len in lens {
        end += len;
        if i < end {
            return i + 1 == end;
        }
    }
    false
}

#[test]
fn available_lists_only_runnable_kernels() {
    let names: Vec<_> = Kernel::available().into_iter().map(Kernel::name).collect();
    assert_eq!(names[0], "scalar");
    assert!(names.contains(&"interleaved"));
    #[cfg(target_arch = "x86_64")]
    assert_eq!(names.contains(&"avx2"), std::arch::is_x86_feature_detected!("avx2"));
    // The AVX-512 VBMI kernel only where the CPU has it (CI machines may not: then it is
    // absent here and from every differential test below, which iterate `available()`).
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        names.contains(&"avx512vbmi"),
        std::arch::is_x86_feature_detected!("avx512vbmi")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512f")
    );
    for name in names {
        assert_eq!(Kernel::from_name(name).unwrap().name(), name);
    }
}

#[test]
fn every_lane_count_and_codec_on_large_skewed_data() {
    let data = skewed(42, 1 << 20, 5);
    for codec in CODECS {
        for lanes in [1, 2, 7, 8, 9, 15, 16, 17, 24, 31, 32] {
            let blob = encode(&data, &EncodeOptions { codec, lanes, chunk_size: 1 << 18, threads: Some(2) }).unwrap();
            for kernel in kernels() {
                let out = decode(&blob, &DecodeOptions { kernel, threads: Some(2) }).unwrap();
                assert!(out == data, "{codec:?} lanes={lanes} {kernel:?}");
            }
        }
    }
}

/// The AVX2 kernel's shapes: code lengths from 1–2 bits (few symbols: many symbols per window)
/// to 17 bits (Exp-Golomb on ranks of uniform data: one per narrow window), largest ranks from
/// 1 to 255 (the rank translation uses 1 to 16 `vpshufb` tables), on 8, 16 and 32 lanes (wide
/// and narrow windows).
#[test]
fn every_kernel_on_code_length_extremes() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let n = 150_000;
    let mut datasets: Vec<Vec<u8>> = Vec::new();
    // `distinct` symbols scattered over the byte range, geometric frequencies.
    for distinct in [2u64, 3, 17, 33, 100, 129, 200, 256] {
        datasets.push(
            (0..n)
                .map(|_| {
                    let r = next();
                    let k = u64::from((r % 64).trailing_zeros()) * (distinct / 7 + 1) + (r >> 40) % (distinct / 7 + 1);
                    ((k.min(distinct - 1) * 97 + 31) % 256) as u8
                })
                .collect(),
        );
    }
    datasets.push((0..n).map(|_| next() as u8).collect());
    for data in &datasets {
        for codec in CODECS {
            for lanes in [8, 16, 32] {
                let blob =
                    encode(data, &EncodeOptions { codec, lanes, chunk_size: 1 << 16, threads: Some(1) }).unwrap();
                for kernel in kernels() {
                    let out = decode_with(&blob, kernel);
                    assert!(out.as_deref() == Ok(&data[..]), "{codec:?} lanes={lanes} {kernel:?}");
                }
            }
        }
    }
}
