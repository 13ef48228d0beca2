//! AVX-512 VBMI pieces of the SIMD kernel (the AVX2 kernel compiled with AVX-512VL registers, and
//! the rank map below), selected at run time where the CPU has them
//! (`Kernel::Avx512Vbmi`); the AVX2 kernel stays the path everywhere else and stays forcible.
//!
//! [`translate`]: the rank → symbol map after QLC and Exp-Golomb-rank decoding, 64 bytes per
//! step with two `vpermi2b` (128-entry byte tables) and one blend on bit 7, instead of up to 16
//! `vpshufb` per 32 bytes.

use std::arch::x86_64::*;

/// Whether this CPU runs the AVX-512 VBMI pieces (and the AVX2 kernel they extend, which is
/// compiled for AVX-512VL's 32 registers there).
pub fn supported() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vbmi")
}

/// Replaces every byte b of `buf` by `map[b]`.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VBMI ([`supported`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub unsafe fn translate(buf: &mut [u8], map: &[u8; 256]) {
    // SAFETY: four unaligned 64-byte loads inside the 256-byte map.
    let [t0, t1, t2, t3] = [0, 64, 128, 192].map(|at| unsafe { _mm512_loadu_si512(map.as_ptr().add(at).cast()) });
    let mut blocks = buf.chunks_exact_mut(64);
    for block in &mut blocks {
        // SAFETY: `block` is exactly 64 bytes.
        let r = unsafe { _mm512_loadu_si512(block.as_ptr().cast()) };
        // Index bits 0-6 pick one of 128 entries of (t0, t1) or (t2, t3); bit 7 picks the pair.
        let low = _mm512_permutex2var_epi8(t0, r, t1);
        let high = _mm512_permutex2var_epi8(t2, r, t3);
        let out = _mm512_mask_blend_epi8(_mm512_movepi8_mask(r), low, high);
        // SAFETY: as for the load.
        unsafe { _mm512_storeu_si512(block.as_mut_ptr().cast(), out) };
    }
    for b in blocks.into_remainder() {
        *b = map[usize::from(*b)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translate_matches_the_table() {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX-512 VBMI");
            return;
        }
        let map: [u8; 256] = std::array::from_fn(|i| (i as u8).wrapping_mul(167).wrapping_add(13));
        for len in [0usize, 1, 63, 64, 65, 200, 1000] {
            let mut buf: Vec<u8> = (0..len).map(|i| (i * 7919 % 256) as u8).collect();
            let expected: Vec<u8> = buf.iter().map(|&b| map[usize::from(b)]).collect();
            // SAFETY: support checked above.
            unsafe { translate(&mut buf, &map) };
            assert_eq!(buf, expected, "len {len}");
        }
    }
}
