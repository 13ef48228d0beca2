//! Fused tensor paths on arbitrary input: `decode_planes_into` on arbitrary plane streams must
//! return an error or fill the output, never panic; and split+encode then decode+merge must give
//! the input back for every transform, equal to the per-plane reference streams.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tensorpress_core::fused::{decode_planes_into, encode_planes, PlaneCodecs};
use tensorpress_core::planes::Transform;
use tensorpress_core::stream::{encode_compact, Codec, DecodeOptions, EncodeOptions};

const TRANSFORMS: [Transform; 5] = [
    Transform::Bf16Exponent,
    Transform::Fp32Exponent,
    Transform::Nibbles,
    Transform::BytePlanes(1),
    Transform::BytePlanes(2),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let t = TRANSFORMS[usize::from(selector) % TRANSFORMS.len()];
    let opts = DecodeOptions { threads: Some(1), ..Default::default() };
    // Hostile streams: the input cut into as many pieces as the transform has planes.
    let k = t.planes();
    let cut = rest.len() / k;
    let blobs: Vec<&[u8]> =
        (0..k).map(|i| &rest[i * cut..if i + 1 == k { rest.len() } else { (i + 1) * cut }]).collect();
    // An odd-length input asks for an output past the streaming-merge threshold (a stream of
    // constant chunks can fill it from a few bytes): the populate + non-temporal path.
    let out_len = if rest.len() % 2 == 1 { 96 << 10 } else { usize::from(selector >> 3) * 37 };
    let mut out = vec![0u8; out_len / t.element_bytes() * t.element_bytes()];
    let _ = decode_planes_into(&blobs, t, &mut out, &opts);
    // Round trip of the input as element bytes.
    let w = t.element_bytes();
    let mut elements = rest[..rest.len() / w * w].to_vec();
    if t == Transform::Nibbles {
        elements.iter_mut().for_each(|b| *b &= 0x0F);
    }
    let codec = Codec::ALL[usize::from(selector >> 5) % Codec::ALL.len()];
    let eopts = EncodeOptions { codec, lanes: usize::from(selector % 7) + 1, chunk_size: 1024, threads: Some(1) };
    let planes = encode_planes(&elements, t, &PlaneCodecs::Fixed(codec), &eopts).expect("valid options");
    let count = elements.len() / w;
    let mut reference = vec![vec![0u8; t.plane_len(count)]; k];
    let mut views: Vec<&mut [u8]> = reference.iter_mut().map(Vec::as_mut_slice).collect();
    t.split(&elements, &mut views);
    for ((c, blob), plane) in planes.iter().zip(&reference) {
        assert_eq!((*c, blob.clone()), encode_compact(plane, &eopts).expect("encode"));
    }
    let blobs: Vec<&[u8]> = planes.iter().map(|(_, b)| b.as_slice()).collect();
    let mut back = vec![0u8; elements.len()];
    decode_planes_into(&blobs, t, &mut back, &opts).expect("own streams decode");
    assert_eq!(back, elements);
});
