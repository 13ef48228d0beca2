//! Plane merges (bf16-exponent, 2-byte byte-planes, fp32-exponent) that write their output
//! with non-temporal (streaming) stores: a decoded model is not read again soon, and a plain
//! store first reads each output line from memory. On outputs already mapped this made a bf16
//! load 20–28 % faster (benches/RESULTS.md §2); fresh outputs are populated first
//! ([`crate::memory::populate`]).
//!
//! Each step turns 64 (AVX-512BW) or 32 (AVX2) elements of the planes into their output bytes,
//! interleaves them and streams whole 64-byte aligned lines; the unaligned head and the tail go
//! through the plain merge. Same results as the plain merges (tests pin every length and
//! alignment).

/// How the low and high byte of an element come from the two planes' bytes `a` and `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pair {
    /// bf16-exponent: `a` the exponent, `b` sign·mantissa(7) → low = b[6:0] | a[0] << 7,
    /// high = b[7] | a[7:1].
    Bf16,
    /// 2-byte byte-planes: `a` the high bytes, `b` the low bytes.
    Bytes,
}

/// Whether this CPU has a streaming merge.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Merges the first `n` elements of planes `a` and `b` into `dst` (`2 n` bytes), with
/// `plain` for the parts that are not whole aligned lines; false (nothing written) where the
/// CPU has no streaming merge or `dst` cannot be line-aligned on an element boundary.
pub(super) fn merge(pair: Pair, a: &[u8], b: &[u8], dst: &mut [u8], plain: fn(&[u8], &[u8], &mut [u8])) -> bool {
    let n = (dst.len() / 2).min(a.len()).min(b.len());
    let head = dst.as_ptr().align_offset(64).min(2 * n);
    if !head.is_multiple_of(2) || !available() {
        return false;
    }
    let start = head / 2;
    plain(&a[..start], &b[..start], &mut dst[..head]);
    let done = start + streamed(pair, &a[start..n], &b[start..n], &mut dst[head..2 * n]);
    plain(&a[done..n], &b[done..n], &mut dst[2 * done..2 * n]);
    true
}

/// The fp32-exponent merge of planes `[e, st, m1, m0]` into `dst` (`4 n` bytes), as [`merge`].
pub(super) fn merge_fp32(planes: [&[u8]; 4], dst: &mut [u8], plain: Plain4) -> bool {
    let n = planes.iter().fold(dst.len() / 4, |n, p| n.min(p.len()));
    let head = dst.as_ptr().align_offset(64).min(4 * n);
    if !head.is_multiple_of(4) || !available() {
        return false;
    }
    let cut = |from: usize, to: usize| planes.map(|p| &p[from..to]);
    let start = head / 4;
    let [e, st, m1, m0] = cut(0, start);
    plain(e, st, m1, m0, &mut dst[..head]);
    let done = start + streamed_fp32(cut(start, n), &mut dst[head..4 * n]);
    let [e, st, m1, m0] = cut(done, n);
    plain(e, st, m1, m0, &mut dst[4 * done..4 * n]);
    true
}

/// The plain four-plane merge [`merge_fp32`] falls back to.
pub(super) type Plain4 = fn(&[u8], &[u8], &[u8], &[u8], &mut [u8]);

fn streamed_fp32(planes: [&[u8]; 4], dst: &mut [u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has AVX-512F/BW (checked just above); `dst` is 64-byte aligned.
            return unsafe { x86::avx512_fp32(planes, dst) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above); `dst` is 64-byte aligned.
            return unsafe { x86::avx2_fp32(planes, dst) };
        }
    }
    let _ = (planes, dst);
    0
}

/// Streams as many whole steps as fit into the 64-byte aligned `dst`; returns the elements
/// written.
fn streamed(pair: Pair, a: &[u8], b: &[u8], dst: &mut [u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has AVX-512F/BW (checked just above); `dst` is 64-byte aligned.
            return unsafe { x86::avx512(pair, a, b, dst) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above); `dst` is 64-byte aligned.
            return unsafe { x86::avx2(pair, a, b, dst) };
        }
    }
    let _ = (pair, a, b, dst);
    0
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Pair;
    use std::arch::x86_64::*;

    /// How far ahead of its reads the loop asks for plane `b` (read from the page cache, whose
    /// 4 KiB pages stop the hardware prefetchers); plane `a` is the decoder's scratch, in cache.
    const PREFETCH_BYTES: usize = 2048;

    /// The low and high byte of 64 bf16 elements from their exponent bytes `e` and
    /// sign·mantissa bytes `sm` (bytes 2 and 3 of fp32 elements alike). Shifts are 16-bit; each
    /// select (0xAC: mask ? sm : shifted e) keeps only each byte's own bits.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn bf16_bytes_512(e: __m512i, sm: __m512i) -> (__m512i, __m512i) {
        let (low_bits, high_bit) = (_mm512_set1_epi8(0x7F), _mm512_set1_epi8(-128));
        (
            _mm512_ternarylogic_epi64::<0xAC>(low_bits, _mm512_slli_epi16::<7>(e), sm),
            _mm512_ternarylogic_epi64::<0xAC>(high_bit, _mm512_srli_epi16::<1>(e), sm),
        )
    }

    /// [`bf16_bytes_512`] for 32 elements with AVX2.
    #[target_feature(enable = "avx2")]
    fn bf16_bytes_256(e: __m256i, sm: __m256i) -> (__m256i, __m256i) {
        let (low_bits, high_bit) = (_mm256_set1_epi8(0x7F), _mm256_set1_epi8(-128));
        (
            _mm256_or_si256(_mm256_and_si256(sm, low_bits), _mm256_and_si256(_mm256_slli_epi16::<7>(e), high_bit)),
            _mm256_or_si256(_mm256_and_si256(sm, high_bit), _mm256_and_si256(_mm256_srli_epi16::<1>(e), low_bits)),
        )
    }

    /// # Safety
    /// The CPU has AVX-512F/BW; `dst` is 64-byte aligned.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn avx512(pair: Pair, a: &[u8], b: &[u8], dst: &mut [u8]) -> usize {
        let steps = (dst.len() / 128).min(a.len() / 64).min(b.len() / 64);
        let first = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
        let second = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
        let (pa, pb, pd) = (a.as_ptr(), b.as_ptr(), dst.as_mut_ptr());
        for s in 0..steps {
            // SAFETY: step s reads a and b at 64 s..64 s + 64 and writes dst at 128 s..128 s + 128,
            // all inside the slices (s < steps); dst + 128 s is 64-byte aligned; a prefetch
            // only hints an address.
            unsafe {
                let av = _mm512_loadu_si512(pa.add(64 * s).cast());
                let bv = _mm512_loadu_si512(pb.add(64 * s).cast());
                _mm_prefetch::<_MM_HINT_T0>(pb.wrapping_add(64 * s + PREFETCH_BYTES).cast());
                let (lo, hi) = match pair {
                    Pair::Bf16 => bf16_bytes_512(av, bv),
                    Pair::Bytes => (bv, av),
                };
                // unpack interleaves within 128-bit lanes: qwords 2j, 2j+1 of x are elements
                // 16j..16j+8, of y 16j+8..16j+16; the permutes put them back in order.
                let (x, y) = (_mm512_unpacklo_epi8(lo, hi), _mm512_unpackhi_epi8(lo, hi));
                _mm512_stream_si512(pd.add(128 * s).cast(), _mm512_permutex2var_epi64(x, first, y));
                _mm512_stream_si512(pd.add(128 * s + 64).cast(), _mm512_permutex2var_epi64(x, second, y));
            }
        }
        _mm_sfence();
        64 * steps
    }

    /// # Safety
    /// The CPU has AVX2; `dst` is 32-byte aligned.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2(pair: Pair, a: &[u8], b: &[u8], dst: &mut [u8]) -> usize {
        let steps = (dst.len() / 64).min(a.len() / 32).min(b.len() / 32);
        let (pa, pb, pd) = (a.as_ptr(), b.as_ptr(), dst.as_mut_ptr());
        for s in 0..steps {
            // SAFETY: step s reads a and b at 32 s..32 s + 32 and writes dst at 64 s..64 s + 64,
            // inside the slices (s < steps); dst + 64 s is 32-byte aligned.
            unsafe {
                let av = _mm256_loadu_si256(pa.add(32 * s).cast());
                let bv = _mm256_loadu_si256(pb.add(32 * s).cast());
                _mm_prefetch::<_MM_HINT_T0>(pb.wrapping_add(32 * s + PREFETCH_BYTES).cast());
                let (lo, hi) = match pair {
                    Pair::Bf16 => bf16_bytes_256(av, bv),
                    Pair::Bytes => (bv, av),
                };
                // x = elements 0..8 | 16..24, y = 8..16 | 24..32.
                let (x, y) = (_mm256_unpacklo_epi8(lo, hi), _mm256_unpackhi_epi8(lo, hi));
                _mm256_stream_si256(pd.add(64 * s).cast(), _mm256_permute2x128_si256::<0x20>(x, y));
                _mm256_stream_si256(pd.add(64 * s + 32).cast(), _mm256_permute2x128_si256::<0x31>(x, y));
            }
        }
        _mm_sfence();
        32 * steps
    }

    /// # Safety
    /// The CPU has AVX-512F/BW; `dst` is 64-byte aligned.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn avx512_fp32(planes: [&[u8]; 4], dst: &mut [u8]) -> usize {
        let steps = planes.iter().fold(dst.len() / 256, |s, p| s.min(p.len() / 64));
        let [e, st, m1, m0] = planes.map(<[u8]>::as_ptr);
        let pd = dst.as_mut_ptr();
        for s in 0..steps {
            // SAFETY: step s reads each plane at 64 s..64 s + 64 and writes dst at
            // 256 s..256 s + 256, inside the slices (s < steps); dst + 256 s is 64-byte aligned.
            unsafe {
                let load = |p: *const u8| _mm512_loadu_si512(p.add(64 * s).cast());
                for p in [st, m1, m0] {
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64 * s + PREFETCH_BYTES).cast());
                }
                let (ev, sv) = (load(e), load(st));
                // Bytes 2 and 3 of each element are the bf16 merge's low and high byte.
                let (b2, b3) = bf16_bytes_512(ev, sv);
                let (b1, b0) = (load(m1), load(m0));
                // In-lane interleaves: w_k's 128-bit lane j holds elements 16 j + 4 k ..+4.
                let (lo01, hi01) = (_mm512_unpacklo_epi8(b0, b1), _mm512_unpackhi_epi8(b0, b1));
                let (lo23, hi23) = (_mm512_unpacklo_epi8(b2, b3), _mm512_unpackhi_epi8(b2, b3));
                let w0 = _mm512_unpacklo_epi16(lo01, lo23);
                let w1 = _mm512_unpackhi_epi16(lo01, lo23);
                let w2 = _mm512_unpacklo_epi16(hi01, hi23);
                let w3 = _mm512_unpackhi_epi16(hi01, hi23);
                // Output line j is lane j of w0..w3: a 4 × 4 transpose of 128-bit lanes.
                let t0 = _mm512_shuffle_i64x2::<0x44>(w0, w1);
                let t1 = _mm512_shuffle_i64x2::<0x44>(w2, w3);
                let t2 = _mm512_shuffle_i64x2::<0xEE>(w0, w1);
                let t3 = _mm512_shuffle_i64x2::<0xEE>(w2, w3);
                let out = pd.add(256 * s);
                _mm512_stream_si512(out.cast(), _mm512_shuffle_i64x2::<0x88>(t0, t1));
                _mm512_stream_si512(out.add(64).cast(), _mm512_shuffle_i64x2::<0xDD>(t0, t1));
                _mm512_stream_si512(out.add(128).cast(), _mm512_shuffle_i64x2::<0x88>(t2, t3));
                _mm512_stream_si512(out.add(192).cast(), _mm512_shuffle_i64x2::<0xDD>(t2, t3));
            }
        }
        _mm_sfence();
        64 * steps
    }

    /// # Safety
    /// The CPU has AVX2; `dst` is 32-byte aligned.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2_fp32(planes: [&[u8]; 4], dst: &mut [u8]) -> usize {
        let steps = planes.iter().fold(dst.len() / 128, |s, p| s.min(p.len() / 32));
        let [e, st, m1, m0] = planes.map(<[u8]>::as_ptr);
        let pd = dst.as_mut_ptr();
        for s in 0..steps {
            // SAFETY: step s reads each plane at 32 s..32 s + 32 and writes dst at
            // 128 s..128 s + 128, inside the slices (s < steps); dst + 128 s is 32-byte aligned.
            unsafe {
                let load = |p: *const u8| _mm256_loadu_si256(p.add(32 * s).cast());
                for p in [st, m1, m0] {
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(32 * s + PREFETCH_BYTES).cast());
                }
                let (ev, sv) = (load(e), load(st));
                let (b2, b3) = bf16_bytes_256(ev, sv);
                let (b1, b0) = (load(m1), load(m0));
                let (lo01, hi01) = (_mm256_unpacklo_epi8(b0, b1), _mm256_unpackhi_epi8(b0, b1));
                let (lo23, hi23) = (_mm256_unpacklo_epi8(b2, b3), _mm256_unpackhi_epi8(b2, b3));
                let w0 = _mm256_unpacklo_epi16(lo01, lo23);
                let w1 = _mm256_unpackhi_epi16(lo01, lo23);
                let w2 = _mm256_unpacklo_epi16(hi01, hi23);
                let w3 = _mm256_unpackhi_epi16(hi01, hi23);
                let out = pd.add(128 * s);
                _mm256_stream_si256(out.cast(), _mm256_permute2x128_si256::<0x20>(w0, w1));
                _mm256_stream_si256(out.add(32).cast(), _mm256_permute2x128_si256::<0x20>(w2, w3));
                _mm256_stream_si256(out.add(64).cast(), _mm256_permute2x128_si256::<0x31>(w0, w1));
                _mm256_stream_si256(out.add(96).cast(), _mm256_permute2x128_si256::<0x31>(w2, w3));
            }
        }
        _mm_sfence();
        32 * steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planes::Transform;

    /// The plain merges, for comparison.
    fn plain(pair: Pair, a: &[u8], b: &[u8], dst: &mut [u8]) {
        match pair {
            Pair::Bf16 => Transform::Bf16Exponent.merge(&[a, b], dst),
            Pair::Bytes => Transform::BytePlanes(2).merge(&[a, b], dst),
        }
    }

    #[test]
    fn streamed_merges_equal_the_plain_ones_at_every_length_and_alignment() {
        let a: Vec<u8> = (0..1200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let b: Vec<u8> = (0..1200u32).map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8).collect();
        let mut storage = vec![0u8; 2 * 1200 + 128];
        for pair in [Pair::Bf16, Pair::Bytes] {
            for offset in [0, 1, 2, 30, 63, 64] {
                for n in [0, 1, 31, 32, 63, 64, 65, 127, 128, 200, 1031, 1200] {
                    let mut want = vec![0u8; 2 * n];
                    plain(pair, &a[..n], &b[..n], &mut want);
                    let dst = &mut storage[offset..offset + 2 * n];
                    dst.fill(0x5A);
                    let plain_fn: fn(&[u8], &[u8], &mut [u8]) = match pair {
                        Pair::Bf16 => |a: &[u8], b: &[u8], d: &mut [u8]| Transform::Bf16Exponent.merge(&[a, b], d),
                        Pair::Bytes => |a: &[u8], b: &[u8], d: &mut [u8]| Transform::BytePlanes(2).merge(&[a, b], d),
                    };
                    if merge(pair, &a[..n], &b[..n], dst, plain_fn) {
                        assert_eq!(dst, &want[..], "{pair:?} n={n} offset={offset}");
                    } else {
                        assert!(!available() || !dst.as_ptr().align_offset(64).is_multiple_of(2));
                    }
                }
            }
        }
    }

    fn plain_fp32(e: &[u8], st: &[u8], m1: &[u8], m0: &[u8], dst: &mut [u8]) {
        Transform::Fp32Exponent.merge(&[e, st, m1, m0], dst);
    }

    #[test]
    fn streamed_fp32_merge_equals_the_plain_one_at_every_length_and_alignment() {
        let planes: Vec<Vec<u8>> = (0..4u32)
            .map(|k| (0..700u32).map(|i| (i.wrapping_mul(2_654_435_761).rotate_left(5 * k) >> 9) as u8).collect())
            .collect();
        let mut storage = vec![0u8; 4 * 700 + 128];
        for offset in [0, 1, 4, 60, 64] {
            for n in [0, 1, 15, 16, 31, 32, 63, 64, 65, 129, 700] {
                let cut: [&[u8]; 4] = std::array::from_fn(|k| &planes[k][..n]);
                let mut want = vec![0u8; 4 * n];
                Transform::Fp32Exponent.merge(&cut, &mut want);
                let dst = &mut storage[offset..offset + 4 * n];
                dst.fill(0x5A);
                if merge_fp32(cut, dst, plain_fp32) {
                    assert_eq!(dst, &want[..], "n={n} offset={offset}");
                } else {
                    assert!(!available() || !dst.as_ptr().align_offset(64).is_multiple_of(4));
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn both_instruction_sets_agree_on_fp32() {
        #[repr(align(64))]
        struct Aligned([u8; 4096]);
        let planes: Vec<Vec<u8>> =
            (0..4u32).map(|k| (0..1024u32).map(|i| (i.wrapping_mul(40_503 + k) >> 3) as u8).collect()).collect();
        let views: [&[u8]; 4] = std::array::from_fn(|k| planes[k].as_slice());
        let mut want = vec![0u8; 4096];
        Transform::Fp32Exponent.merge(&views, &mut want);
        if is_x86_feature_detected!("avx2") {
            let mut out = Aligned([0; 4096]);
            // SAFETY: AVX2 checked; `out` is 64-byte aligned.
            assert_eq!(unsafe { x86::avx2_fp32(views, &mut out.0) }, 1024);
            assert_eq!(out.0.to_vec(), want, "avx2");
        }
        if is_x86_feature_detected!("avx512bw") {
            let mut out = Aligned([0; 4096]);
            // SAFETY: AVX-512BW checked; `out` is 64-byte aligned.
            assert_eq!(unsafe { x86::avx512_fp32(views, &mut out.0) }, 1024);
            assert_eq!(out.0.to_vec(), want, "avx512");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn both_instruction_sets_agree_with_the_plain_merge() {
        #[repr(align(64))]
        struct Aligned([u8; 2048]);
        let a: Vec<u8> = (0..1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
        let b: Vec<u8> = (0..1024u32).map(|i| (i.wrapping_mul(40_503) >> 3) as u8).collect();
        for pair in [Pair::Bf16, Pair::Bytes] {
            let mut want = vec![0u8; 2048];
            plain(pair, &a, &b, &mut want);
            if is_x86_feature_detected!("avx2") {
                let mut out = Aligned([0; 2048]);
                // SAFETY: AVX2 checked; `out` is 64-byte aligned.
                assert_eq!(unsafe { x86::avx2(pair, &a, &b, &mut out.0) }, 1024);
                assert_eq!(out.0.to_vec(), want, "avx2 {pair:?}");
            }
            if is_x86_feature_detected!("avx512bw") {
                let mut out = Aligned([0; 2048]);
                // SAFETY: AVX-512BW checked; `out` is 64-byte aligned.
                assert_eq!(unsafe { x86::avx512(pair, &a, &b, &mut out.0) }, 1024);
                assert_eq!(out.0.to_vec(), want, "avx512 {pair:?}");
            }
        }
    }
}
