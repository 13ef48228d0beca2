//! The fused tensor paths agree with the reference (split the whole tensor into planes, one
//! stream per plane, decode each, merge), for every transform, element count (empty and odd
//! included), codec, lane count, chunk size, thread count and kernel; and they refuse wrong
//! sizes before writing.

use proptest::prelude::*;
use tensorpress_core::error::Error;
use tensorpress_core::fused::{decode_planes_into, encode_planes, encode_planes_parts, PlaneCodecs};
use tensorpress_core::planes::Transform;
use tensorpress_core::stream::{
    decode, encode, encode_compact, parse_header, raw_stream_bound, Codec, DecodeOptions, EncodeOptions,
};
use tensorpress_core::Kernel;

fn transform() -> impl Strategy<Value = Transform> {
    prop::sample::select(vec![
        Transform::Bf16Exponent,
        Transform::Fp32Exponent,
        Transform::Nibbles,
        Transform::BytePlanes(1),
        Transform::BytePlanes(2),
        Transform::BytePlanes(3),
        Transform::BytePlanes(8),
    ])
}

/// Element bytes with float-like structure (a few distinct high bytes) or plain noise.
fn elements(t: Transform) -> impl Strategy<Value = Vec<u8>> {
    let w = t.element_bytes();
    (0usize..6000, any::<u64>(), 0u32..3).prop_map(move |(count, seed, shape)| {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(count * w);
        for _ in 0..count * w {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = match shape {
                0 => x as u8,
                1 => 60 + ((x >> 40) % 5) as u8,
                _ => ((x >> 20) as u8) >> ((x >> 8) % 8),
            };
            out.push(if t == Transform::Nibbles { b & 0x0F } else { b });
        }
        out
    })
}

/// The reference: whole planes, split in one go.
fn reference_planes(t: Transform, data: &[u8]) -> Vec<Vec<u8>> {
    let count = t.count_of(data.len()).unwrap();
    let mut planes = vec![vec![0u8; t.plane_len(count)]; t.planes()];
    let mut views: Vec<&mut [u8]> = planes.iter_mut().map(Vec::as_mut_slice).collect();
    t.split(data, &mut views);
    planes
}

fn strategy() -> impl Strategy<Value = (Transform, Vec<u8>)> {
    transform().prop_flat_map(|t| (Just(t), elements(t)))
}

fn codec() -> impl Strategy<Value = Codec> {
    prop::sample::select(Codec::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn fused_equals_split_encode_decode_merge(
        (t, data) in strategy(),
        codec in codec(),
        lanes in 1usize..=32,
        chunk_pow in 10u32..=13,
        threads in 1usize..=3,
    ) {
        let opts = EncodeOptions { codec, lanes, chunk_size: 1 << chunk_pow, threads: Some(threads) };
        let fused = encode_planes(&data, t, &PlaneCodecs::Fixed(codec), &opts).unwrap();
        let planes = reference_planes(t, &data);
        prop_assert_eq!(fused.len(), planes.len());
        for (plane, (plane_codec, blob)) in planes.iter().zip(&fused) {
            // Same bytes as coding the reference plane on its own.
            prop_assert_eq!(&(*plane_codec, blob.clone()), &encode_compact(plane, &opts).unwrap());
            let exact = encode(plane, &opts).unwrap();
            prop_assert!(exact[5] == codec as u8);
            prop_assert!(blob.len() <= exact.len());
            prop_assert!(blob.len() <= raw_stream_bound(plane.len(), opts.chunk_size));
        }
        let blobs: Vec<&[u8]> = fused.iter().map(|(_, b)| b.as_slice()).collect();
        for kernel in Kernel::available() {
            let mut out = vec![0xA5u8; data.len()];
            decode_planes_into(&blobs, t, &mut out, &DecodeOptions { kernel, threads: Some(threads) }).unwrap();
            prop_assert_eq!(&out, &data, "{:?} {:?}", t, kernel);
        }
        // The reference merge of separately decoded planes gives the same bytes.
        let decoded: Vec<Vec<u8>> = blobs.iter().map(|b| decode(b, &DecodeOptions::default()).unwrap()).collect();
        let views: Vec<&[u8]> = decoded.iter().map(Vec::as_slice).collect();
        let mut merged = vec![0u8; data.len()];
        t.merge(&views, &mut merged);
        prop_assert_eq!(merged, data);
    }

    #[test]
    fn planes_cut_into_different_chunk_sizes_still_merge((t, data) in strategy(), codec in codec()) {
        let planes = reference_planes(t, &data);
        let blobs: Vec<Vec<u8>> = planes
            .iter()
            .enumerate()
            .map(|(k, p)| encode(p, &EncodeOptions { codec, chunk_size: 1024 << (k % 3), ..Default::default() }).unwrap())
            .collect();
        let views: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
        let mut out = vec![0u8; data.len()];
        decode_planes_into(&views, t, &mut out, &DecodeOptions::default()).unwrap();
        prop_assert_eq!(out, data);
    }

    #[test]
    fn per_plane_codecs_equal_each_plane_coded_alone(
        (t, data) in strategy(),
        picks in prop::collection::vec(codec(), 8),
        threads in 1usize..=3,
    ) {
        let opts = EncodeOptions { chunk_size: 2048, threads: Some(threads), ..Default::default() };
        let list: Vec<Codec> = picks[..t.planes()].to_vec();
        let parts = encode_planes_parts(&data, t, &PlaneCodecs::PerPlane(list.clone()), &opts).unwrap();
        for ((plane, codec), (used, stream)) in reference_planes(t, &data).iter().zip(&list).zip(&parts) {
            let alone = encode_compact(plane, &EncodeOptions { codec: *codec, ..opts }).unwrap();
            let mut written = vec![0u8; stream.len()];
            stream.write_into(&mut written);
            prop_assert_eq!((*used, written), alone);
        }
        // A list of the wrong length is refused, not indexed out of bounds.
        let short = PlaneCodecs::PerPlane(picks[..t.planes() - 1].to_vec());
        prop_assert!(encode_planes_parts(&data, t, &short, &opts).is_err());
    }

    #[test]
    fn auto_codecs_round_trip_and_never_exceed_raw((t, data) in strategy()) {
        let auto = PlaneCodecs::Auto { candidates: vec![Codec::Qlc, Codec::Huffman, Codec::ExpGolombRank], min_saving_permille: 10 };
        let opts = EncodeOptions { chunk_size: 4096, ..Default::default() };
        let fused = encode_planes(&data, t, &auto, &opts).unwrap();
        let n = t.plane_len(t.count_of(data.len()).unwrap());
        for (_, blob) in &fused {
            prop_assert!(blob.len() <= raw_stream_bound(n, opts.chunk_size));
        }
        let blobs: Vec<&[u8]> = fused.iter().map(|(_, b)| b.as_slice()).collect();
        let mut out = vec![0u8; data.len()];
        decode_planes_into(&blobs, t, &mut out, &DecodeOptions::default()).unwrap();
        prop_assert_eq!(out, data);
    }

    #[test]
    fn mutated_plane_streams_are_errors_not_wrong_data((t, data) in strategy(), at in any::<usize>(), flip in 1u8..=255) {
        prop_assume!(!data.is_empty());
        let opts = EncodeOptions { codec: Codec::Huffman, chunk_size: 2048, ..Default::default() };
        let mut fused: Vec<Vec<u8>> = encode_planes(&data, t, &PlaneCodecs::Fixed(Codec::Huffman), &opts)
            .unwrap().into_iter().map(|(_, b)| b).collect();
        let k = at % fused.len();
        let i = (at / 7) % fused[k].len();
        let in_chunk = i >= parse_header(&fused[k]).unwrap().header_len;
        fused[k][i] ^= flip;
        let blobs: Vec<&[u8]> = fused.iter().map(Vec::as_slice).collect();
        let mut out = vec![0u8; data.len()];
        let result = decode_planes_into(&blobs, t, &mut out, &DecodeOptions::default());
        // Chunks are decoded (or merged, when raw) before their checksums are checked, but a
        // damaged chunk is a checksum error whatever the decode made of it.
        if in_chunk {
            prop_assert!(matches!(result, Err(Error::Checksum(_))), "{result:?}");
        } else {
            prop_assert!(result.is_err());
        }
    }
}

#[test]
fn wrong_sizes_and_counts_are_refused_before_writing() {
    let data: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
    let t = Transform::Bf16Exponent;
    let opts = EncodeOptions::default();
    let fused = encode_planes(&data, t, &PlaneCodecs::Fixed(Codec::Qlc), &opts).unwrap();
    let blobs: Vec<&[u8]> = fused.iter().map(|(_, b)| b.as_slice()).collect();
    let dopts = DecodeOptions::default();
    // Output one element short, one element long, and not a whole element.
    for len in [data.len() - 2, data.len() + 2] {
        let mut out = vec![7u8; len];
        assert!(matches!(decode_planes_into(&blobs, t, &mut out, &dopts), Err(Error::Corrupt(_) | Error::Format(_))));
        assert!(out.iter().all(|&b| b == 7), "wrote before validating");
    }
    let mut odd = vec![0u8; data.len() - 1];
    assert!(matches!(decode_planes_into(&blobs, t, &mut odd, &dopts), Err(Error::InvalidArgument(_))));
    let mut out = vec![0u8; data.len()];
    assert!(matches!(decode_planes_into(&blobs[..1], t, &mut out, &dopts), Err(Error::Format(_))));
    assert!(decode_planes_into(&[blobs[0], &blobs[1][..20]], t, &mut out, &dopts).is_err());
    assert!(decode_planes_into(&blobs, t, &mut out, &DecodeOptions { threads: Some(0), ..dopts }).is_err());
    // Element bytes that are not a whole number of elements.
    assert!(matches!(
        encode_planes(&data[..3], t, &PlaneCodecs::Fixed(Codec::Qlc), &opts),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn incompressible_bytes_fall_back_to_a_raw_stream() {
    let noise: Vec<u8> = (0..3000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for codec in Codec::ALL {
        let (got, blob) =
            encode_compact(&noise, &EncodeOptions { codec, chunk_size: 1024, ..Default::default() }).unwrap();
        assert!(blob.len() <= raw_stream_bound(noise.len(), 1024), "{codec:?}: {}", blob.len());
        assert_eq!((got, blob[5]), (Codec::Raw, 0), "{codec:?} stream should be stored raw");
        assert_eq!(decode(&blob, &DecodeOptions::default()).unwrap(), noise);
    }
}

/// bf16-like elements: the low byte from `low(x)`, the high byte a random sign and one of a few
/// exponent values (so the sign·mantissa plane is `low`'s 7 bits under a random sign bit).
fn bf16_like(count: usize, low: impl Fn(u64) -> u8) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(2 * count);
    for _ in 0..count {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(low(x));
        out.push(((x >> 50) as u8 & 0x80) | (0x3C + ((x >> 40) % 3) as u8));
    }
    out
}

/// Makes an element's low byte from a random word.
type LowByte = fn(u64) -> u8;

#[test]
fn raw_probe_skips_only_planes_no_code_could_shrink() {
    // 64 chunks per plane: the automatic choice probes every 8th chunk before counting the rest.
    let opts = EncodeOptions { chunk_size: 4096, lanes: 4, threads: Some(2), ..Default::default() };
    let auto = PlaneCodecs::Auto { candidates: vec![Codec::Qlc, Codec::Huffman], min_saving_permille: 10 };
    let t = Transform::Bf16Exponent;
    let cases: [(&str, LowByte, bool); 3] = [
        ("noise mantissa", |x| (x >> 24) as u8, true),
        // 6 of 7 mantissa bits random (plane entropy 7 bits): worth coding, never settled raw.
        ("6-bit mantissa", |x| ((x >> 24) as u8) & 0x3F, false),
        // Half the mantissas from 64 values, half from 128: plane entropy ~7.5 bits.
        ("skewed mantissa", |x| if x & 1 == 0 { (x >> 24) as u8 } else { ((x >> 24) as u8) & 0x3F }, false),
    ];
    for (what, low, expect_raw) in cases {
        let data = bf16_like(64 * 4096, low);
        let parts = encode_planes(&data, t, &auto, &opts).unwrap();
        let chosen: Vec<Codec> = parts.iter().map(|(c, _)| *c).collect();
        assert_ne!(chosen[0], Codec::Raw, "{what}: the exponent plane codes");
        assert_eq!(chosen[1] == Codec::Raw, expect_raw, "{what}: {chosen:?}");
        // The probe changes which histograms are counted, not the bytes of what is chosen:
        // fully counted per-plane coding with the same choice gives the same streams.
        let counted = encode_planes(&data, t, &PlaneCodecs::PerPlane(chosen.clone()), &opts).unwrap();
        assert_eq!(parts, counted, "{what}");
        let blobs: Vec<&[u8]> = parts.iter().map(|(_, b)| b.as_slice()).collect();
        let mut out = vec![0u8; data.len()];
        decode_planes_into(&blobs, t, &mut out, &DecodeOptions::default()).unwrap();
        assert_eq!(out, data, "{what}");
    }
}

#[test]
fn raw_probe_decides_from_every_eighth_chunk() {
    // Noise mantissas in the probed chunks (0, 8, 16, ...) and three values elsewhere: counted in
    // full the plane would code (entropy ~2.4 bits), but the probe settles it raw without
    // counting the rest. Contrived on purpose: it shows the probe is what decides, and what the
    // sample-based decision gives up (weights do not vary with an 8-chunk period).
    let opts = EncodeOptions { chunk_size: 4096, lanes: 4, threads: Some(1), ..Default::default() };
    let auto = PlaneCodecs::Auto { candidates: vec![Codec::Huffman], min_saving_permille: 10 };
    let mut data = bf16_like(64 * 4096, |x| (x >> 24) as u8);
    for (i, element) in data.chunks_exact_mut(2).enumerate() {
        if (i / 4096) % 8 != 0 {
            element[0] = (i % 3) as u8;
            element[1] = 0x3C;
        }
    }
    let parts = encode_planes(&data, Transform::Bf16Exponent, &auto, &opts).unwrap();
    assert_eq!(parts[1].0, Codec::Raw);
    let counted = encode_planes(&data, Transform::Bf16Exponent, &PlaneCodecs::Fixed(Codec::Huffman), &opts).unwrap();
    assert!(counted[1].1.len() < parts[1].1.len() / 2, "full counts would code the plane");
    // One chunk (one of the three-value ones): no probe, the full count decides.
    let short = &data[2 * 4096..2 * 2 * 4096];
    let parts = encode_planes(short, Transform::Bf16Exponent, &auto, &opts).unwrap();
    assert_eq!(parts[1].0, Codec::Huffman);
}

/// Outputs of `STREAMING_MIN_BYTES` and more take the populate + non-temporal merge path: on
/// fresh and reused memory, at aligned, element-aligned and odd offsets, on every thread count,
/// they hold exactly the elements.
#[test]
fn large_outputs_merged_with_streaming_stores_equal_the_elements() {
    use tensorpress_core::fused::STREAMING_MIN_BYTES;
    let count = STREAMING_MIN_BYTES + 12_345; // several chunks of every transform's elements
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<u8> = (0..4 * count)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 2 == 1 && i % 4 != 1 {
                60 + (x % 5) as u8
            } else {
                x as u8
            }
        })
        .collect();
    for t in [Transform::Bf16Exponent, Transform::BytePlanes(2), Transform::Fp32Exponent] {
        let opts = EncodeOptions { chunk_size: 1 << 15, ..Default::default() };
        let fused = encode_planes(&data, t, &PlaneCodecs::Fixed(Codec::Huffman), &opts).unwrap();
        let blobs: Vec<&[u8]> = fused.iter().map(|(_, b)| b.as_slice()).collect();
        for threads in [1, 2, 3] {
            let decode_opts = DecodeOptions { threads: Some(threads), ..Default::default() };
            for offset in [0, 1, 2, 62] {
                // Fresh pages (a new allocation of this size is a fresh mapping), then reused.
                let mut storage = vec![0u8; data.len() + 64];
                for round in 0..2 {
                    let out = &mut storage[offset..offset + data.len()];
                    decode_planes_into(&blobs, t, out, &decode_opts).unwrap();
                    assert!(out == &data[..], "{t:?} threads={threads} offset={offset} round={round}");
                    out.fill(0x5A);
                }
                assert!(storage[..offset].iter().chain(&storage[offset + data.len()..]).all(|&b| b == 0));
            }
        }
    }
}
