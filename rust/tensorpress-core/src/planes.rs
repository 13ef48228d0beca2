//! Byte-plane transforms of tensor elements (normative text in docs/format.md, "Container",
//! `lossless` method): each plane holds one kind of content (exponents, mantissa bytes, …), so
//! each plane's bytes have a skewed histogram an entropy code can use.
//!
//! - `bf16-exponent`: planes [exponent byte, sign·mantissa(7)].
//! - `fp32-exponent`: [exponent byte, sign·mantissa bits 22–16, bits 15–8, bits 7–0].
//! - `nibbles`: one plane, two 4-bit values per byte (first value in the low nibble; an odd
//!   count pads the last high nibble with 0; decoding drops it).
//! - `byte-planes` of width `w`: one plane per byte of the little-endian element, most
//!   significant first.
//!
//! Split and merge work on any element range, so the fused paths run them per chunk.

mod nontemporal;

use crate::error::{Error, Result};
use crate::histogram::{histogram_by, Histogram};
use nontemporal::Pair;

/// A byte-plane transform, with the element width for `byte-planes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    Bf16Exponent,
    Fp32Exponent,
    Nibbles,
    /// Little-endian elements of this many bytes (1..=8).
    BytePlanes(usize),
}

/// Widest element `byte-planes` handles (float64/int64).
pub const MAX_ELEMENT_BYTES: usize = 8;

impl Transform {
    /// Parses a transform name; `width` is the element size in bytes (used by `byte-planes`,
    /// checked against the fixed width of the others).
    pub fn from_name(name: &str, width: usize) -> Result<Transform> {
        let (t, expected) = match name {
            "bf16-exponent" => (Transform::Bf16Exponent, 2),
            "fp32-exponent" => (Transform::Fp32Exponent, 4),
            "nibbles" => (Transform::Nibbles, 1),
            "byte-planes" if (1..=MAX_ELEMENT_BYTES).contains(&width) => (Transform::BytePlanes(width), width),
            "byte-planes" => {
                return Err(Error::invalid(format!("byte-planes element width must be 1..=8, got {width}")))
            }
            other => return Err(Error::format(format!("unknown byte-plane transform {other:?}"))),
        };
        if width != expected {
            return Err(Error::invalid(format!("{name} needs {expected}-byte elements, got {width}")));
        }
        Ok(t)
    }

    pub fn name(self) -> &'static str {
        match self {
            Transform::Bf16Exponent => "bf16-exponent",
            Transform::Fp32Exponent => "fp32-exponent",
            Transform::Nibbles => "nibbles",
            Transform::BytePlanes(_) => "byte-planes",
        }
    }

    /// Bytes per element in the caller's buffer (a nibble element occupies one byte there).
    pub fn element_bytes(self) -> usize {
        match self {
            Transform::Bf16Exponent => 2,
            Transform::Fp32Exponent => 4,
            Transform::Nibbles => 1,
            Transform::BytePlanes(w) => w,
        }
    }

    /// Number of planes.
    pub fn planes(self) -> usize {
        match self {
            Transform::Bf16Exponent => 2,
            Transform::Fp32Exponent => 4,
            Transform::Nibbles => 1,
            Transform::BytePlanes(w) => w,
        }
    }

    /// Bytes in each plane for `count` elements.
    pub fn plane_len(self, count: usize) -> usize {
        match self {
            Transform::Nibbles => count.div_ceil(2),
            _ => count,
        }
    }

    /// Elements in a caller's buffer of `len` bytes, or an error if it is not a whole number.
    pub fn count_of(self, len: usize) -> Result<usize> {
        let w = self.element_bytes();
        if !len.is_multiple_of(w) {
            return Err(Error::invalid(format!("{len} bytes is not a whole number of {w}-byte elements")));
        }
        Ok(len / w)
    }

    /// Byte range of the caller's buffer (of `count` elements) that plane bytes
    /// `[start, end)` come from.
    pub fn source_range(self, start: usize, end: usize, count: usize) -> std::ops::Range<usize> {
        match self {
            Transform::Nibbles => (2 * start).min(count)..(2 * end).min(count),
            t => start * t.element_bytes()..end * t.element_bytes(),
        }
    }

    /// The histogram of the exponent plane (plane 0) of the elements in `src`, counted straight
    /// from the elements with no split, for the float transforms; None for the others. Equals
    /// [`crate::histogram::histogram`] of the split plane.
    pub fn exponent_histogram(self, src: &[u8]) -> Option<Histogram> {
        match self {
            Transform::Bf16Exponent => Some(histogram_by::<2>(src, |w| (u16::from_le_bytes(w) >> 7) as u8)),
            Transform::Fp32Exponent => Some(histogram_by::<4>(src, |w| (u32::from_le_bytes(w) >> 23) as u8)),
            _ => None,
        }
    }

    /// Splits the elements in `src` into `planes` (each `plane_len` of the elements long).
    pub fn split(self, src: &[u8], planes: &mut [&mut [u8]]) {
        match self {
            Transform::Bf16Exponent => {
                let [e, sm] = planes else { unreachable!("two planes") };
                split_bf16(src, e, sm);
            }
            Transform::Fp32Exponent => {
                let [e, st, m1, m0] = planes else { unreachable!("four planes") };
                split_fp32(src, e, st, m1, m0);
            }
            Transform::Nibbles => {
                let plane = &mut *planes[0];
                let pairs = src.chunks_exact(2);
                let tail = pairs.remainder();
                for (x, p) in pairs.zip(plane.iter_mut()) {
                    *p = (x[0] & 0x0F) | (x[1] << 4);
                }
                if let (Some(&last), Some(p)) = (tail.first(), plane.get_mut(src.len() / 2)) {
                    *p = last & 0x0F;
                }
            }
            Transform::BytePlanes(1) => planes[0][..src.len()].copy_from_slice(src),
            Transform::BytePlanes(2) => {
                let [hi, lo] = planes else { unreachable!("two planes") };
                split_pairs(src, hi, lo);
            }
            Transform::BytePlanes(w) => {
                for (i, x) in src.chunks_exact(w).enumerate() {
                    for (k, plane) in planes.iter_mut().enumerate() {
                        plane[i] = x[w - 1 - k];
                    }
                }
            }
        }
    }

    /// Whether [`Transform::merge_streaming`] streams on this CPU (bf16-exponent,
    /// fp32-exponent and 2-byte byte-planes on x86-64 with AVX2).
    pub fn has_streaming_merge(self) -> bool {
        matches!(self, Transform::Bf16Exponent | Transform::Fp32Exponent | Transform::BytePlanes(2))
            && nontemporal::available()
    }

    /// [`Transform::merge`] writing `dst` with non-temporal stores where
    /// [`Transform::has_streaming_merge`]: for large outputs that are not read again soon.
    pub fn merge_streaming(self, planes: &[&[u8]], dst: &mut [u8]) {
        let streamed = match (self, planes) {
            (Transform::Bf16Exponent, [e, sm]) => nontemporal::merge(Pair::Bf16, e, sm, dst, merge_bf16),
            (Transform::BytePlanes(2), [hi, lo]) => nontemporal::merge(Pair::Bytes, hi, lo, dst, merge_pairs),
            (Transform::Fp32Exponent, &[e, st, m1, m0]) => nontemporal::merge_fp32([e, st, m1, m0], dst, merge_fp32),
            _ => false,
        };
        if !streamed {
            self.merge(planes, dst);
        }
    }

    /// Rebuilds elements into `dst` from plane bytes (each at least as long as `dst` needs;
    /// for `nibbles` a trailing pad nibble is dropped).
    pub fn merge(self, planes: &[&[u8]], dst: &mut [u8]) {
        match self {
            Transform::Bf16Exponent => {
                let [e, sm] = planes else { unreachable!("two planes") };
                merge_bf16(e, sm, dst);
            }
            Transform::Fp32Exponent => {
                let [e, st, m1, m0] = planes else { unreachable!("four planes") };
                merge_fp32(e, st, m1, m0, dst);
            }
            Transform::Nibbles => {
                let plane = planes[0];
                let at = dst.len() / 2;
                let mut pairs = dst.chunks_exact_mut(2);
                for (x, &p) in (&mut pairs).zip(plane.iter()) {
                    x[0] = p & 0x0F;
                    x[1] = p >> 4;
                }
                if let ([x], Some(&p)) = (pairs.into_remainder(), plane.get(at)) {
                    *x = p & 0x0F;
                }
            }
            Transform::BytePlanes(1) => {
                let n = dst.len();
                dst.copy_from_slice(&planes[0][..n]);
            }
            Transform::BytePlanes(2) => {
                let [hi, lo] = planes else { unreachable!("two planes") };
                merge_pairs(hi, lo, dst);
            }
            Transform::BytePlanes(w) => {
                for (i, x) in dst.chunks_exact_mut(w).enumerate() {
                    for (k, plane) in planes.iter().enumerate() {
                        x[w - 1 - k] = plane[i];
                    }
                }
            }
        }
    }
}

/// Defines `fn $name` from a plain loop `$body`, compiled three times (AVX-512BW, AVX2 and the
/// baseline) and dispatched on the CPU at run time: the crate builds for baseline x86-64, where
/// LLVM vectorizes these byte shuffles with SSE2 only, at a third of the wider paths' speed.
/// All three are the same source, so they agree by construction (tests pin them anyway).
macro_rules! multiversioned {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw")]
                unsafe fn avx512($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    body($($arg),*)
                }
                if is_x86_feature_detected!("avx512bw") {
                    // SAFETY: the CPU has AVX-512F/BW (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                if is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

// The loops index pre-cut slices of one length: the form LLVM vectorizes.

multiversioned! {
    /// bf16 elements → [exponent, sign·mantissa(7)].
    fn split_bf16(src: &[u8], e: &mut [u8], sm: &mut [u8]) {
        let n = (src.len() / 2).min(e.len()).min(sm.len());
        let (src, e, sm) = (&src[..2 * n], &mut e[..n], &mut sm[..n]);
        for i in 0..n {
            let u = u16::from_le_bytes([src[2 * i], src[2 * i + 1]]);
            e[i] = (u >> 7) as u8;
            sm[i] = (((u >> 8) & 0x80) | (u & 0x7F)) as u8;
        }
    }
}

multiversioned! {
    /// Inverse of [`split_bf16`].
    fn merge_bf16(e: &[u8], sm: &[u8], dst: &mut [u8]) {
        let n = (dst.len() / 2).min(e.len()).min(sm.len());
        let (dst, e, sm) = (&mut dst[..2 * n], &e[..n], &sm[..n]);
        for i in 0..n {
            let (e, sm) = (u16::from(e[i]), u16::from(sm[i]));
            let u = ((sm & 0x80) << 8) | (e << 7) | (sm & 0x7F);
            dst[2 * i..2 * i + 2].copy_from_slice(&u.to_le_bytes());
        }
    }
}

multiversioned! {
    /// fp32 elements → [exponent, sign·mantissa bits 22–16, bits 15–8, bits 7–0].
    fn split_fp32(src: &[u8], e: &mut [u8], st: &mut [u8], m1: &mut [u8], m0: &mut [u8]) {
        let n = (src.len() / 4).min(e.len()).min(st.len()).min(m1.len()).min(m0.len());
        let (src, e, st, m1, m0) = (&src[..4 * n], &mut e[..n], &mut st[..n], &mut m1[..n], &mut m0[..n]);
        for i in 0..n {
            let u = u32::from_le_bytes([src[4 * i], src[4 * i + 1], src[4 * i + 2], src[4 * i + 3]]);
            e[i] = (u >> 23) as u8;
            st[i] = (((u >> 24) & 0x80) | ((u >> 16) & 0x7F)) as u8;
            m1[i] = (u >> 8) as u8;
            m0[i] = u as u8;
        }
    }
}

multiversioned! {
    /// Inverse of [`split_fp32`].
    fn merge_fp32(e: &[u8], st: &[u8], m1: &[u8], m0: &[u8], dst: &mut [u8]) {
        let n = (dst.len() / 4).min(e.len()).min(st.len()).min(m1.len()).min(m0.len());
        let (dst, e, st, m1, m0) = (&mut dst[..4 * n], &e[..n], &st[..n], &m1[..n], &m0[..n]);
        for i in 0..n {
            let (e, st) = (u32::from(e[i]), u32::from(st[i]));
            let u = ((st & 0x80) << 24) | (e << 23) | ((st & 0x7F) << 16) | (u32::from(m1[i]) << 8) | u32::from(m0[i]);
            dst[4 * i..4 * i + 4].copy_from_slice(&u.to_le_bytes());
        }
    }
}

multiversioned! {
    /// 2-byte little-endian elements → [high bytes, low bytes].
    fn split_pairs(src: &[u8], hi: &mut [u8], lo: &mut [u8]) {
        let n = (src.len() / 2).min(hi.len()).min(lo.len());
        let (src, hi, lo) = (&src[..2 * n], &mut hi[..n], &mut lo[..n]);
        for i in 0..n {
            lo[i] = src[2 * i];
            hi[i] = src[2 * i + 1];
        }
    }
}

multiversioned! {
    /// Inverse of [`split_pairs`].
    fn merge_pairs(hi: &[u8], lo: &[u8], dst: &mut [u8]) {
        let n = (dst.len() / 2).min(hi.len()).min(lo.len());
        let (dst, hi, lo) = (&mut dst[..2 * n], &hi[..n], &lo[..n]);
        for i in 0..n {
            dst[2 * i] = lo[i];
            dst[2 * i + 1] = hi[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::histogram;

    #[test]
    fn exponent_histogram_equals_the_split_plane_histogram() {
        let bytes: Vec<u8> = (0..4099u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8).collect();
        for t in [Transform::Bf16Exponent, Transform::Fp32Exponent] {
            for len in [0, 4, 8, 12, 20, 4096] {
                let data = &bytes[..len];
                let n = t.plane_len(t.count_of(data.len()).unwrap());
                let mut planes = vec![vec![0u8; n]; t.planes()];
                t.split(data, &mut planes.iter_mut().map(Vec::as_mut_slice).collect::<Vec<_>>());
                assert_eq!(t.exponent_histogram(data), Some(histogram(&planes[0])), "{t:?} {len}");
            }
        }
        assert_eq!(Transform::BytePlanes(2).exponent_histogram(&bytes[..8]), None);
        assert_eq!(Transform::Nibbles.exponent_histogram(&bytes[..8]), None);
    }

    fn round_trip(t: Transform, src: &[u8]) {
        let count = t.count_of(src.len()).unwrap();
        let n = t.plane_len(count);
        let mut storage = vec![vec![0xAAu8; n]; t.planes()];
        let mut planes: Vec<&mut [u8]> = storage.iter_mut().map(Vec::as_mut_slice).collect();
        t.split(src, &mut planes);
        let views: Vec<&[u8]> = storage.iter().map(Vec::as_slice).collect();
        let mut back = vec![0u8; src.len()];
        t.merge(&views, &mut back);
        assert_eq!(back, src, "{t:?}");
    }

    #[test]
    fn known_values() {
        // bf16 1.0 = 0x3F80: exponent 127, sign·mantissa 0.
        let mut e = [0u8];
        let mut sm = [0u8];
        Transform::Bf16Exponent.split(&[0x80, 0x3F], &mut [&mut e, &mut sm]);
        assert_eq!((e[0], sm[0]), (127, 0));
        // bf16 -1.5 = 0xBFC0: exponent 127, sign set, mantissa 0x40.
        Transform::Bf16Exponent.split(&[0xC0, 0xBF], &mut [&mut e, &mut sm]);
        assert_eq!((e[0], sm[0]), (127, 0xC0));
    }

    #[test]
    fn every_transform_round_trips() {
        let bytes: Vec<u8> = (0..48u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        for t in [Transform::Bf16Exponent, Transform::Fp32Exponent, Transform::BytePlanes(1), Transform::BytePlanes(8)]
        {
            round_trip(t, &bytes);
            round_trip(t, &[]);
        }
        let nibbles: Vec<u8> = bytes.iter().map(|b| b & 0x0F).collect();
        round_trip(Transform::Nibbles, &nibbles);
        round_trip(Transform::Nibbles, &nibbles[..7]);
    }
}
