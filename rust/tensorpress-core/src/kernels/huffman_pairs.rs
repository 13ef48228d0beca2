//! Two symbols per table lookup for Huffman chunks of short codes (bf16 exponent planes average
//! 2.6 bits per symbol). The AVX2 kernel's Huffman step gathers one table entry per symbol, and
//! its register groups wait on chains of gathers (benches/RESULTS.md §2); here one gather
//! decodes a lane's next two symbols wherever both codes fit in the `max_len` bits that index
//! the table.
//!
//! A round per register group of 8 lanes: one `vpgatherdd` of each lane's 32-bit window at byte
//! `pos / 8` (25 valid bits after the shift by `pos % 8`), then K pair steps, each one gather of
//! the pair entries and two rows of output. A step without a split consumes at most `max_len`
//! bits. Where some lane's pair does not fit (or its first code is invalid) the group takes a
//! second path: its split lanes look up their second symbol in a fresh window gathered after the
//! first code, the others fetch a fresh window after their pair, so every lane leaves the step
//! with at least 25 − max_len valid bits. The branch is per group; on chunks where pairs are
//! worth it (see `HuffmanDecoder::pair_table`) it is rarely taken.
//!
//! Invalid codes: the entry of an invalid first code is flagged like a pair that does not fit,
//! so the fast path never meets one; the second path keeps the smallest length it saw (0:
//! invalid), checked once per chunk. Any error re-runs the scalar reference, so results and
//! errors are exactly the reference's (`kernels_agree` and the tests below).

use super::avx2::{pack32, tail, Layout};
use super::{scalar, Readable};
use crate::codes::SymbolDecoder;
use crate::error::Result;
use std::arch::x86_64::*;

/// Decodes `lanes` (16 or 32 of them) into `out` with `pairs` (built by
/// [`pair_table`](crate::codes::huffman::pair_table) from `dec`'s table); `vl` (the caller
/// checked AVX-512 F/BW/VL) selects the build with 32 `ymm` registers. Returns `None` where this
/// kernel does not apply (then the caller decodes).
pub fn decode_lanes<D: SymbolDecoder>(
    dec: &D,
    pairs: &[u32],
    max_len: u32,
    lanes: &[&[u8]],
    readable: &Readable<'_>,
    out: &mut [u8],
    vl: bool,
) -> Option<Result<()>> {
    if !super::avx2::supported() || !(1..=12).contains(&max_len) || pairs.len() != 1 << max_len {
        return None;
    }
    let layout = Layout::of(lanes, readable)?;
    // Steps per window fetch: a step's lookup needs `max_len` valid bits and a step without
    // a split consumes at most `max_len`; a split fetches fresh windows that leave at least
    // 25 − max_len. So step s of a round has at least 25 − s · max_len valid bits.
    let steps = (1 + (25 - max_len) / max_len).min(4);
    // SAFETY: AVX2 is available (checked above), AVX-512 F/BW/VL where the caller says `vl`;
    // `layout` describes `lanes`; `pairs` has 2^max_len entries, max_len ≤ 12 (so steps ≥ 2)
    // and (steps − 1) · max_len ≤ 25 − max_len: every step's window holds max_len valid bits.
    let (rows, pos, smallest) = unsafe {
        match (lanes.len(), vl, steps) {
            (16, false, 2) => fast::<2, 2>(pairs, &layout, out, max_len),
            (16, false, 3) => fast::<2, 3>(pairs, &layout, out, max_len),
            (16, false, _) => fast::<2, 4>(pairs, &layout, out, max_len),
            (32, false, 2) => fast::<4, 2>(pairs, &layout, out, max_len),
            (32, false, 3) => fast::<4, 3>(pairs, &layout, out, max_len),
            (32, false, _) => fast::<4, 4>(pairs, &layout, out, max_len),
            (16, true, 2) => fast_vl::<2, 2>(pairs, &layout, out, max_len),
            (16, true, 3) => fast_vl::<2, 3>(pairs, &layout, out, max_len),
            (16, true, _) => fast_vl::<2, 4>(pairs, &layout, out, max_len),
            (32, true, 2) => fast_vl::<4, 2>(pairs, &layout, out, max_len),
            (32, true, 3) => fast_vl::<4, 3>(pairs, &layout, out, max_len),
            (32, true, _) => fast_vl::<4, 4>(pairs, &layout, out, max_len),
            _ => return None,
        }
    };
    if smallest == 0 || tail(dec, lanes, out, rows, &pos).is_err() {
        // Re-run the reference: it names the failing lane exactly as it would alone.
        return Some(scalar::decode_lanes(dec, lanes, out));
    }
    Some(Ok(()))
}

/// Defines the fast part once for two feature sets.
macro_rules! fast_pairs {
    ($(#[$doc:meta])* $name:ident, $features:literal) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        unsafe fn $name<const G: usize, const K: usize>(
            pairs: &[u32],
            layout: &Layout,
            out: &mut [u8],
            max_len: u32,
        ) -> (usize, [u32; 32], u32) {
            let n_lanes = G * 8;
            let full_rows = out.len() / n_lanes;
            let mask = _mm256_set1_epi32(((1u32 << max_len) - 1) as i32);
            let byte = _mm256_set1_epi32(0xff);
            let seven = _mm256_set1_epi32(7);
            let table: *const i32 = pairs.as_ptr().cast();
            // A group's 32-bit windows at its lanes' bit addresses: 25 valid bits each.
            let window = |pos: __m256i| {
                // SAFETY: the round count keeps 4 bytes at every lane's byte address (the
                // window starts of a round, and those of its second-lookup paths) inside the
                // lane's readable bytes (see the loop), as in the AVX2 kernel.
                let raw = unsafe { _mm256_i32gather_epi32::<1>(layout.base.cast(), _mm256_srai_epi32::<3>(pos)) };
                _mm256_srlv_epi32(raw, _mm256_and_si256(pos, seven))
            };
            // Each lane's bit address relative to `layout.base` (see the AVX2 kernel).
            let mut pos = [_mm256_setzero_si256(); G];
            for (g, p) in pos.iter_mut().enumerate() {
                // SAFETY: 8 i32s at 8g..8g+8 of a 32-element array (G ≤ 4).
                *p = _mm256_slli_epi32::<3>(unsafe { _mm256_loadu_si256(layout.offset.as_ptr().add(8 * g).cast()) });
            }
            // Smallest code length met by the second-lookup path (0: an invalid code).
            let mut smallest = _mm256_set1_epi32(-1);
            let mut pos_arr = [0u32; 32];
            let mut row = 0usize;
            // Bits one round may advance a lane: K steps of two codes.
            let advance = 2 * K as u64 * u64::from(max_len);
            let out_ptr = out.as_mut_ptr();
            loop {
                // Rounds every lane can run: a round's window reads, its own and those the
                // second-lookup path makes mid-round, start at most `advance` bits past the
                // round's start, so `rounds` rounds stay inside the readable bytes while
                // p + rounds · advance ≤ 8 · (readable − 4).
                let mut rounds = ((full_rows - row) / (2 * K)) as u64;
                for (l, &reach) in layout.readable.iter().enumerate().take(n_lanes) {
                    let limit = (reach as u64).saturating_sub(4) * 8;
                    rounds = rounds.min(limit.saturating_sub(u64::from(pos_arr[l])) / advance);
                }
                if rounds == 0 {
                    break;
                }
                for _ in 0..rounds {
                    let mut w = [_mm256_setzero_si256(); G];
                    for g in 0..G {
                        w[g] = window(pos[g]);
                    }
                    for s in 0..K {
                        let mut first = [_mm256_setzero_si256(); G];
                        let mut second = [_mm256_setzero_si256(); G];
                        for g in 0..G {
                            // SAFETY: index ≤ 2^max_len − 1 < pairs.len().
                            let entry = unsafe { _mm256_i32gather_epi32::<4>(table, _mm256_and_si256(w[g], mask)) };
                            first[g] = _mm256_and_si256(entry, byte);
                            if _mm256_movemask_ps(_mm256_castsi256_ps(entry)) == 0 {
                                let len = _mm256_srli_epi32::<24>(entry);
                                second[g] = _mm256_and_si256(_mm256_srli_epi32::<8>(entry), byte);
                                w[g] = _mm256_srlv_epi32(w[g], len);
                                pos[g] = _mm256_add_epi32(pos[g], len);
                            } else {
                                // Split lanes take their second symbol from a fresh window after
                                // the first code; the others fetch a fresh window after their pair,
                                // so every lane leaves with at least 25 − max_len valid bits.
                                let split = _mm256_srai_epi32::<31>(entry);
                                let len1 = _mm256_and_si256(_mm256_srli_epi32::<16>(entry), byte);
                                let first_step = _mm256_blendv_epi8(_mm256_srli_epi32::<24>(entry), len1, split);
                                let at = _mm256_add_epi32(pos[g], first_step);
                                let fresh = window(at);
                                // SAFETY: index ≤ 2^max_len − 1, as above.
                                let next = unsafe { _mm256_i32gather_epi32::<4>(table, _mm256_and_si256(fresh, mask)) };
                                let len2 = _mm256_and_si256(_mm256_and_si256(_mm256_srli_epi32::<16>(next), byte), split);
                                let valid2 = _mm256_blendv_epi8(byte, len2, split);
                                smallest = _mm256_min_epu32(smallest, _mm256_min_epu32(len1, valid2));
                                let sym2 = _mm256_blendv_epi8(_mm256_srli_epi32::<8>(entry), next, split);
                                second[g] = _mm256_and_si256(sym2, byte);
                                w[g] = _mm256_srlv_epi32(fresh, len2);
                                pos[g] = _mm256_add_epi32(at, len2);
                            }
                        }
                        // SAFETY: row + 2K ≤ full_rows (round count): the step's two rows,
                        // 2 · n_lanes bytes at (row + 2s) · n_lanes, lie inside `out`.
                        unsafe {
                            let at = out_ptr.add((row + 2 * s) * n_lanes);
                            if G == 4 {
                                _mm256_storeu_si256(at.cast(), pack32(first[0], first[1], first[2], first[3]));
                                _mm256_storeu_si256(at.add(32).cast(), pack32(second[0], second[1], second[2], second[3]));
                            } else {
                                _mm256_storeu_si256(at.cast(), pack32(first[0], first[1], second[0], second[1]));
                            }
                        }
                    }
                    row += 2 * K;
                }
                for (g, &p) in pos.iter().enumerate() {
                    // SAFETY: 8 u32s into pos_arr[8g..8g + 8] of 32.
                    unsafe { _mm256_storeu_si256(pos_arr.as_mut_ptr().add(8 * g).cast(), p) };
                }
                for (p, &o) in pos_arr.iter_mut().zip(&layout.offset).take(n_lanes) {
                    // Bit address back to the lane's bit position.
                    *p = p.wrapping_sub((o as u32).wrapping_mul(8));
                }
            }
            let mut lanes_min = [0u32; 8];
            // SAFETY: 8 u32s into an 8-element array.
            unsafe { _mm256_storeu_si256(lanes_min.as_mut_ptr().cast(), smallest) };
            (row, pos_arr, lanes_min.iter().copied().min().unwrap_or(0))
        }
    };
}

fast_pairs!(
    /// Decodes whole pairs of rows while every lane provably has 4 bytes left for its window.
    /// Returns (rows decoded, each lane's bit position, smallest length met by the second-lookup
    /// path: 0 means an invalid code, `u32::MAX` that the path never ran).
    ///
    /// # Safety
    /// AVX2 must be available; `layout` must describe the lanes, `G · 8` of them; `pairs` must
    /// hold 2^max_len entries, max_len ≤ 12.
    fast,
    "avx2"
);

fast_pairs!(
    /// [`fast`] compiled with AVX-512VL's 32 `ymm` registers.
    ///
    /// # Safety
    /// As [`fast`], and the CPU must support AVX-512 F, BW and VL.
    fast_vl,
    "avx2,avx512f,avx512vl,avx512bw"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::huffman::{pair_table, HuffmanTable, PAIR_SPLIT};
    use crate::histogram::histogram;
    use crate::stream::{encode, parse_header, split_lanes, CodeTable, Codec, EncodeOptions, MODE_CODED};

    fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// Exponent-like bytes: a few symbols carry most of the mass, a long tail is rare.
    fn short_codes(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n).map(|_| (120 + (xorshift(&mut x) % 1024).trailing_zeros() * 3 % 23) as u8).collect()
    }

    #[test]
    fn pair_entries_decode_like_two_single_lookups() {
        let data = short_codes(7, 50_000);
        let table = HuffmanTable::fit(&histogram(&data), 12).unwrap();
        let dec = table.decoder();
        let max_len = SymbolDecoder::max_code_len(&dec);
        let pairs = pair_table(dec.table(), max_len);
        for (i, &e) in pairs.iter().enumerate() {
            let (s1, l1, bad1) = SymbolDecoder::decode(&dec, i as u64);
            assert_eq!((e & 0xff, e >> 16 & 0xff), (u32::from(s1), if bad1 != 0 { 0 } else { l1 }));
            if e & PAIR_SPLIT == 0 {
                let (s2, l2, bad2) = SymbolDecoder::decode(&dec, (i as u64) >> l1);
                assert_eq!(bad2, 0);
                assert!(l1 + l2 <= max_len);
                assert_eq!((e >> 8 & 0xff, e >> 24), (u32::from(s2), l1 + l2));
            }
        }
    }

    /// The pair kernel against the reference, on whole valid chunks and on the same lanes with
    /// random bytes written over them (invalid codes, lanes ending early or late).
    #[test]
    fn pair_kernel_matches_reference() {
        if !super::super::avx2::supported() {
            eprintln!("skipped: this CPU has no AVX2");
            return;
        }
        let vl_options: &[bool] = if super::super::avx512::supported() { &[false, true] } else { &[false] };
        let mut seed = 0x51u64;
        for (n, lanes) in [(70_000usize, 32usize), (40_001, 16), (5_000, 32), (300, 16)] {
            let data = short_codes(n as u64, n);
            let blob =
                encode(&data, &EncodeOptions { codec: Codec::Huffman, lanes, chunk_size: 1 << 17, threads: Some(1) })
                    .unwrap();
            let info = parse_header(&blob).unwrap();
            let CodeTable::Huffman(table) = &info.table else { panic!("not Huffman") };
            let dec = table.decoder();
            let max_len = SymbolDecoder::max_code_len(&dec);
            let pairs = pair_table(dec.table(), max_len);
            let (at, len, _) = info.chunks[0];
            let chunk = &blob[at..at + len];
            assert_eq!(chunk[0], MODE_CODED);
            let lanes_of = |body: &[u8]| -> Vec<Vec<u8>> {
                split_lanes(body, lanes, info.format().version).unwrap()[..lanes].iter().map(|l| l.to_vec()).collect()
            };
            let good = lanes_of(&chunk[1..]);
            for trial in 0..40 {
                let mut lane_bytes = good.clone();
                if trial > 0 {
                    for _ in 0..trial {
                        let l = (xorshift(&mut seed) % lanes as u64) as usize;
                        if !lane_bytes[l].is_empty() {
                            let i = (xorshift(&mut seed) % lane_bytes[l].len() as u64) as usize;
                            lane_bytes[l][i] = xorshift(&mut seed) as u8;
                        }
                    }
                }
                let views: Vec<&[u8]> = lane_bytes.iter().map(Vec::as_slice).collect();
                let mut want = vec![0u8; info.chunk_decoded_len(0)];
                let expected = scalar::decode_lanes(&dec, &views, &mut want).map(|()| want);
                for &vl in vl_options {
                    let mut got = vec![0u8; info.chunk_decoded_len(0)];
                    let result = decode_lanes(&dec, &pairs, max_len, &views, &Readable::Lanes, &mut got, vl)
                        .expect("the pair kernel applies")
                        .map(|()| got);
                    assert_eq!(
                        result.as_ref().map_err(ToString::to_string),
                        expected.as_ref().map_err(ToString::to_string),
                        "n {n} lanes {lanes} trial {trial} vl {vl}"
                    );
                }
            }
        }
    }
}
