//! AVX2 kernel: eight lanes per 256-bit register, one `u32` bit position per lane.
//!
//! A round fetches a bit window per lane and decodes `S` symbols from it:
//! - narrow windows: one `vpgatherdd` of 32 bits at byte `pos / 8`, shifted by `pos % 8`
//!   (at least 25 valid bits, `S · max_len ≤ 25`);
//! - wide windows: two `vpgatherdq` of 64 bits (four lanes each) at byte `pos / 8` (at least 57
//!   valid bits, `S · max_len ≤ 57`). The symbol steps work on a 32-bit view `w` of the window
//!   that each step shifts by the code length; [`wide_schedule`] says before which steps of the
//!   round `w` is re-extracted from the 64-bit windows at the lane's current position (two
//!   `vpsrlvq` and one `vshufps`), so most steps pay a single shift.
//!
//! The window width is chosen per codec and register-group count (measured, see
//! [`decode_lanes`]). Per symbol:
//! - QLC/DLC: the 3-bit (1-bit) area prefix selects the area's length and rank base with
//!   `vpermd` (an in-register table of 8 entries, no memory access at all); the index bits are
//!   masked with a second `vpermd`; the loop stores the *rank*.
//! - Huffman: one gather from the `u16` table indexed by the low `max_len` bits. Chunks of
//!   short codes (where the decoder offers a pair table: bf16 exponent planes) run
//!   [`super::huffman_pairs`] instead, which decodes two symbols per gather.
//! - Exp-Golomb: trailing zeros by isolating the lowest set bit and reading the exponent of
//!   its float conversion (AVX2 has no `tzcnt`), then variable shifts; the loop stores the value.
//!
//! Invalid codes are not tested per step: the loop keeps a running maximum of the stored
//! ranks/values (invalid: > 255) or, for Huffman, a running minimum of the lengths (invalid:
//! 0), checked once per chunk. Four registers of 8 output bytes are packed into one 32-byte
//! store. Ranks and values are mapped to symbols afterwards by [`translate`]: a 256-entry byte
//! table as 16-entry `vpshufb` tables, of which only those up to the largest rank present are
//! used, merged by XOR of differences of neighbouring tables with saturating-add indices
//! (three single-µop instructions per table; a `vpblendvb` tree measured 12 % slower, as
//! `vpblendvb` is several µops). Skipped for Exp-Golomb on raw values, where the map is the
//! identity.
//!
//! Lane counts that are multiples of 8 up to 32 run 1, 2 or 4 independent register groups
//! (more groups hide the gather latency); other lane counts use the portable kernel. Before
//! each batch of rounds the kernel computes, in scalar code, how many rounds every lane can run
//! without reading past its end; the rounds themselves carry no bounds checks. Any error
//! (invalid code, tail or lane end) re-runs the scalar reference so errors are exactly the
//! reference's.

use super::{check_lane_end, interleaved, invalid_code, scalar, Readable};
use crate::bits::peek_bits_checked;
use crate::codes::{SimdTables, SymbolDecoder};
use crate::error::Result;
use std::arch::x86_64::*;

/// Valid bits in a 32-bit (`WIDE` = false) or 64-bit window gathered at byte `pos / 8` and
/// shifted by `pos % 8`.
const fn window_bits(wide: bool) -> u32 {
    if wide {
        57
    } else {
        25
    }
}
/// Most symbols one round decodes per lane (wide windows, codes ≤ 9 bits).
const MAX_PER_ROUND: u32 = 6;
/// Largest lane length (bytes) whose bit positions fit the kernel's `u32`/`i32` arithmetic.
const MAX_LANE_BYTES: usize = 1 << 26;
/// Largest distance (bytes) of a lane's end from the first lane's start: the kernel tracks
/// each lane's bit address `8 · offset + pos` relative to the first lane in an `i32`.
const MAX_SPAN_BYTES: usize = 1 << 27;

/// Whether this CPU runs the kernel.
pub fn supported() -> bool {
    is_x86_feature_detected!("avx2")
}

/// The steps of a wide round (bit `s` set: before step `s`) at which the 32-bit view `w` is
/// re-extracted from the lane's 64-bit window at its current bit position. Bit 0 is always
/// set. Worst case assumed: the window starts 7 bits into the gathered 64 (so 57 bits are
/// valid) and every code is `max_len` bits; a view extracted after `c` consumed bits holds
/// `min(32, 57 − c)` valid bits, each step needs `max_len`. Needs
/// `per_round · max_len ≤ 57`, `per_round ≤ 32`.
pub(crate) const fn wide_schedule(max_len: u32, per_round: u32) -> u32 {
    let mut mask = 0u32;
    let mut avail = 0u32;
    let mut s = 0;
    while s < per_round {
        if avail < max_len {
            mask |= 1 << s;
            let left = window_bits(true) - s * max_len;
            avail = if left < 32 { left } else { 32 };
        }
        avail -= max_len;
        s += 1;
    }
    mask
}

/// Whether the kernel fetches 64-bit windows for this codec and register-group count, with
/// 16 `ymm` registers (AVX2) or 32 (`vl`: AVX-512VL). Measured (1 MiB e4m3, benches/RESULTS.md
/// §2): with one or two register groups the window gather's latency is on the critical path
/// and wide windows (two 4-element gathers per 3–6 symbols) win; with four groups and 16
/// registers narrow windows (one 8-element gather per 1–3 symbols, no re-extraction) win for
/// QLC, DLC and Huffman (QLC 1.59 → 1.80 GB/s), wide ones for Exp-Golomb, whose long codes leave
/// one symbol per narrow window (1.13 → 1.30 GB/s). With 32 registers the wide windows' extra
/// state no longer spills and they win for every codec (Huffman +9 %, QLC +5 %): gathered
/// elements, not instructions, bound these loops.
fn use_wide(tables: &SimdTables<'_>, groups: usize, vl: bool) -> bool {
    vl || groups < 4 || matches!(tables, SimdTables::ExpGolomb { .. })
}

/// Decodes `lanes` into `out`, with the AVX-512 VBMI rank → symbol map when `vbmi` (the caller
/// checked [`super::avx512::supported`]) and reading as far as `readable` allows; falls back to
/// the portable kernel where AVX2 does not apply.
pub fn decode_lanes_with<D: SymbolDecoder>(
    dec: &D,
    lanes: &[&[u8]],
    readable: &Readable<'_>,
    out: &mut [u8],
    vbmi: bool,
) -> Result<()> {
    let groups = lanes.len() / 8;
    let Some(tables) = dec.simd_tables() else { return interleaved::decode_lanes(dec, lanes, out) };
    if !supported() || !lanes.len().is_multiple_of(8) || !matches!(groups, 1 | 2 | 4) {
        return interleaved::decode_lanes(dec, lanes, out);
    }
    if let (SimdTables::Huffman { max_len, .. }, Some(pairs)) = (tables, dec.pair_table(out.len())) {
        let vl = vbmi && super::avx512::supported();
        if let Some(result) = super::huffman_pairs::decode_lanes(dec, pairs, max_len, lanes, readable, out, vl) {
            return result;
        }
    }
    let Some(layout) = Layout::of(lanes, readable) else { return interleaved::decode_lanes(dec, lanes, out) };
    if matches!(tables, SimdTables::Qlc { lut, .. } if lut.len() < 256) {
        // Not a table `QlcTable::decoder` builds (its ranks cover 0..256).
        return interleaved::decode_lanes(dec, lanes, out);
    }
    let max_len = match tables {
        SimdTables::Qlc { max_len, .. }
        | SimdTables::Huffman { max_len, .. }
        | SimdTables::ExpGolomb { max_len, .. } => max_len.max(1),
    };
    let vl = vbmi && super::avx512::supported();
    let wide = use_wide(&tables, groups, vl);
    let per_round = window_bits(wide) / max_len;
    if max_len > 25 || per_round < 1 || (wide && per_round < 3) {
        // No decoder of this crate has such long codes; keep the kernel's window invariant.
        return interleaved::decode_lanes(dec, lanes, out);
    }
    let schedule = wide_schedule(max_len, per_round.min(MAX_PER_ROUND));
    // SAFETY: AVX2 is available (checked above), AVX-512 F/BW/VL where `fast_vl` runs;
    // `layout` was built from `lanes` and `out` is the caller's buffer; S · max_len ≤
    // window_bits(WIDE) by the choice of `per_round` (S ≤ per_round) and `schedule` is
    // `wide_schedule(max_len, S)`; `fast` upholds the bounds argument documented on it.
    let (rows, pos, acc) = unsafe {
        macro_rules! by_shape {
            ($c:literal, $fast:ident) => {
                match (groups, wide, per_round.min(MAX_PER_ROUND)) {
                    (1, _, 3) => $fast::<$c, 1, 3, true>(&tables, &layout, lanes, out, max_len, schedule),
                    (1, _, 4) => $fast::<$c, 1, 4, true>(&tables, &layout, lanes, out, max_len, schedule),
                    (1, _, 5) => $fast::<$c, 1, 5, true>(&tables, &layout, lanes, out, max_len, schedule),
                    (1, _, _) => $fast::<$c, 1, 6, true>(&tables, &layout, lanes, out, max_len, schedule),
                    (2, _, 3) => $fast::<$c, 2, 3, true>(&tables, &layout, lanes, out, max_len, schedule),
                    (2, _, 4) => $fast::<$c, 2, 4, true>(&tables, &layout, lanes, out, max_len, schedule),
                    (2, _, 5) => $fast::<$c, 2, 5, true>(&tables, &layout, lanes, out, max_len, schedule),
                    (2, _, _) => $fast::<$c, 2, 6, true>(&tables, &layout, lanes, out, max_len, schedule),
                    (_, true, 3) => $fast::<$c, 4, 3, true>(&tables, &layout, lanes, out, max_len, schedule),
                    (_, true, 4) => $fast::<$c, 4, 4, true>(&tables, &layout, lanes, out, max_len, schedule),
                    (_, true, 5) => $fast::<$c, 4, 5, true>(&tables, &layout, lanes, out, max_len, schedule),
                    (_, true, _) => $fast::<$c, 4, 6, true>(&tables, &layout, lanes, out, max_len, schedule),
                    (_, false, 1) => $fast::<$c, 4, 1, false>(&tables, &layout, lanes, out, max_len, 0),
                    (_, false, 2) => $fast::<$c, 4, 2, false>(&tables, &layout, lanes, out, max_len, 0),
                    (_, false, _) => $fast::<$c, 4, 3, false>(&tables, &layout, lanes, out, max_len, 0),
                }
            };
        }
        macro_rules! by_codec {
            ($fast:ident) => {
                match tables {
                    SimdTables::Qlc { .. } => by_shape!(0, $fast),
                    SimdTables::Huffman { .. } => by_shape!(1, $fast),
                    SimdTables::ExpGolomb { order, .. } if order >= 2 => by_shape!(3, $fast),
                    SimdTables::ExpGolomb { .. } => by_shape!(2, $fast),
                }
            };
        }
        if vl {
            by_codec!(fast_vl)
        } else {
            by_codec!(fast)
        }
    };
    // Huffman: `acc` is the smallest length decoded (0: an invalid code); otherwise the largest
    // rank or value stored (past 255: an invalid code).
    let bad = match tables {
        SimdTables::Huffman { .. } => acc == 0,
        _ => acc > 0xff,
    };
    if !bad {
        // QLC and Exp-Golomb rows hold ranks / values so far: map them to symbols.
        let map: Option<[u8; 256]> = match tables {
            SimdTables::Qlc { lut, .. } => Some(std::array::from_fn(|r| lut[r] as u8)),
            SimdTables::ExpGolomb { lut, .. } if lut.iter().enumerate().any(|(v, &s)| v as u32 != s) => {
                Some(lut.map(|s| s as u8))
            }
            _ => None,
        };
        if let Some(map) = map {
            let rows_out = &mut out[..rows * lanes.len()];
            if vl {
                // SAFETY: `vl` holds only where `avx512::supported()` (AVX-512 F/BW/VL/VBMI).
                unsafe { super::avx512::translate(rows_out, &map) };
            } else {
                // SAFETY: AVX2 is available (checked above).
                unsafe { translate(rows_out, &map, acc as u8) };
            }
        }
    }
    if bad || tail(dec, lanes, out, rows, &pos).is_err() {
        // Re-run the reference: it names the failing lane exactly as it would alone.
        return scalar::decode_lanes(dec, lanes, out);
    }
    Ok(())
}

/// Checked tail: rows from `row` on, each lane from its bit position, then the end check.
pub(super) fn tail<D: SymbolDecoder>(
    dec: &D,
    lanes: &[&[u8]],
    out: &mut [u8],
    row: usize,
    pos: &[u32; 32],
) -> Result<()> {
    let n_lanes = lanes.len();
    for (l, lane) in lanes.iter().enumerate() {
        let mut p = pos[l] as usize;
        for i in (row * n_lanes + l..out.len()).step_by(n_lanes) {
            let (sym, len, invalid) = dec.decode(peek_bits_checked(lane, p));
            if invalid != 0 {
                return Err(invalid_code(l));
            }
            out[i] = sym;
            p += len as usize;
        }
        check_lane_end(l, p, lane.len())?;
    }
    Ok(())
}

/// Where the lanes lie relative to one base pointer, for gathers with `i32` offsets.
pub(super) struct Layout {
    pub(super) base: *const u8,
    /// Byte offset of each lane from `base`; |offset| + readable bytes ≤ MAX_SPAN_BYTES, so bit
    /// addresses `8 · offset + pos` (pos ≤ 8 · readable bytes) fit an `i32`.
    pub(super) offset: [i32; 32],
    /// Bytes that may be read from each lane's first byte on: its own length, or (with a
    /// [`Readable::Region`]) up to the region's end, at most MAX_LANE_BYTES.
    pub(super) readable: [usize; 32],
}

impl Layout {
    pub(super) fn of(lanes: &[&[u8]], readable: &Readable<'_>) -> Option<Self> {
        let base = lanes.first()?.as_ptr();
        let mut offset = [0i32; 32];
        let mut reach = [0usize; 32];
        let region = match *readable {
            Readable::Region(region) => {
                let (start, end) = (region.as_ptr() as usize, region.as_ptr() as usize + region.len());
                // Every lane must lie inside the region, in order: else read only the lanes.
                let inside = lanes.iter().all(|l| start <= l.as_ptr() as usize && l.as_ptr() as usize + l.len() <= end);
                let ordered = lanes.windows(2).all(|w| w[0].as_ptr() as usize + w[0].len() == w[1].as_ptr() as usize);
                (inside && ordered).then_some(end)
            }
            Readable::Lanes => None,
        };
        for ((o, r), lane) in offset.iter_mut().zip(reach.iter_mut()).zip(lanes) {
            if lane.len() > MAX_LANE_BYTES {
                return None;
            }
            *r = region.map_or(lane.len(), |end| (end - lane.as_ptr() as usize).min(MAX_LANE_BYTES));
            let d = (lane.as_ptr() as isize).wrapping_sub(base as isize);
            // Every gathered address is `base + offset + byte` with byte < readable bytes
            // (≤ MAX_LANE_BYTES), and the kernel's bit addresses 8 · (offset + byte) + 7 must
            // fit an i32.
            if d.unsigned_abs() > MAX_SPAN_BYTES - MAX_LANE_BYTES {
                return None;
            }
            *o = d as i32;
        }
        Some(Self { base, offset, readable: reach })
    }
}

/// Per-codec constants held in registers for the whole chunk.
#[derive(Clone, Copy)]
struct Regs {
    /// QLC: per prefix value (low 3 bits of the window), the code length and the area's
    /// first rank (three tables, so no field extraction per symbol).
    qlc_len: __m256i,
    qlc_base: __m256i,
    /// QLC: per prefix value, the index mask (2^width − 1).
    qlc_mask: __m256i,
    /// QLC: prefix bits as a shift count; Exp-Golomb: unused.
    prefix: __m128i,
    /// Huffman: 2^max_len − 1.
    huff_mask: __m256i,
    /// Exp-Golomb order k − 1 and 2^k.
    eg_order_m1: __m256i,
    eg_pow: __m256i,
    /// Exp-Golomb with order ≥ 2, per z = trailing zeros + 1 (slot z mod 8, z ≤ 8): code
    /// length, mask of the `rest` bits and 2^width − 2^k (256 where no value has z − 1 zeros).
    eg_len: __m256i,
    eg_mask: __m256i,
    eg_off: __m256i,
    max_len: __m256i,
}

/// Defines the fast part once for two feature sets (a `#[target_feature]` function's body is
/// compiled for its own features only).
macro_rules! fast_part {
    ($(#[$doc:meta])* $name:ident, $features:literal) => {
        $(#[$doc])*
        #[target_feature(enable = $features)]
        unsafe fn $name<const C: u8, const G: usize, const S: usize, const WIDE: bool>(
            tables: &SimdTables<'_>,
            layout: &Layout,
            lanes: &[&[u8]],
            out: &mut [u8],
            max_len: u32,
            schedule: u32,
        ) -> (usize, [u32; 32], u32) {
            let n_lanes = G * 8;
            let full_rows = out.len() / n_lanes;
            let mut regs = Regs {
                qlc_len: _mm256_setzero_si256(),
                qlc_base: _mm256_setzero_si256(),
                qlc_mask: _mm256_setzero_si256(),
                prefix: _mm_setzero_si128(),
                huff_mask: _mm256_setzero_si256(),
                eg_order_m1: _mm256_setzero_si256(),
                eg_pow: _mm256_setzero_si256(),
                eg_len: _mm256_setzero_si256(),
                eg_mask: _mm256_setzero_si256(),
                eg_off: _mm256_setzero_si256(),
                max_len: _mm256_set1_epi32(max_len as i32),
            };
            // Table base pointer for the symbol gather.
            let sym_table: *const u8 = match *tables {
                SimdTables::Qlc { prefix_bits, area_info, lut, .. } => {
                    let areas = 1usize << prefix_bits;
                    let mut len = [0i32; 8];
                    let mut base = [0i32; 8];
                    let mut mask = [0i32; 8];
                    for p in 0..8 {
                        let a = area_info[p & (areas - 1)];
                        let width = a >> 16;
                        len[p] = (prefix_bits + width) as i32;
                        base[p] = (a & 0xffff) as i32;
                        mask[p] = ((1u32 << width) - 1) as i32;
                    }
                    // SAFETY: unaligned loads of three local 8 × i32 arrays.
                    unsafe {
                        regs.qlc_len = _mm256_loadu_si256(len.as_ptr().cast());
                        regs.qlc_base = _mm256_loadu_si256(base.as_ptr().cast());
                        regs.qlc_mask = _mm256_loadu_si256(mask.as_ptr().cast());
                    }
                    regs.prefix = _mm_cvtsi32_si128(prefix_bits as i32);
                    lut.as_ptr().cast()
                }
                SimdTables::Huffman { max_len, table } => {
                    regs.huff_mask = _mm256_set1_epi32(((1u32 << max_len) - 1) as i32);
                    table.as_ptr().cast()
                }
                SimdTables::ExpGolomb { order, lut, .. } => {
                    regs.eg_order_m1 = _mm256_set1_epi32(order as i32 - 1);
                    regs.eg_pow = _mm256_set1_epi32(1 << order);
                    if C == 3 {
                        let (mut len, mut mask, mut off) = ([0i32; 8], [0i32; 8], [0i32; 8]);
                        for z in 1..=8u32 {
                            let width = z - 1 + order;
                            let slot = (z % 8) as usize;
                            if (1u32 << width) - (1 << order) <= 0xff {
                                len[slot] = (2 * (z - 1) + order + 1) as i32;
                                mask[slot] = ((1u32 << width) - 1) as i32;
                                off[slot] = ((1u32 << width) - (1 << order)) as i32;
                            } else {
                                // No value has this many zeros (nor, for order ≥ 2, more: z = 8 stands
                                // for 7 or more): an invalid code. Its length only has to be ≤ max_len.
                                len[slot] = max_len as i32;
                                off[slot] = 0x100;
                            }
                        }
                        // SAFETY: unaligned loads of three local 8 × i32 arrays.
                        unsafe {
                            regs.eg_len = _mm256_loadu_si256(len.as_ptr().cast());
                            regs.eg_mask = _mm256_loadu_si256(mask.as_ptr().cast());
                            regs.eg_off = _mm256_loadu_si256(off.as_ptr().cast());
                        }
                    }
                    lut.as_ptr().cast()
                }
            };

            // Each lane's bit address relative to `layout.base`: 8 · offset + pos (fits an i32 by
            // Layout::of); byte `addr >> 3` (arithmetic: offsets may be negative) is `offset + pos / 8`
            // and `addr & 7` is `pos & 7`, so the gather index needs no per-lane offset register.
            let mut pos = [_mm256_setzero_si256(); G];
            for (g, p) in pos.iter_mut().enumerate() {
                // SAFETY: 8 i32s at 8g..8g+8 of a 32-element array (G ≤ 4).
                *p = _mm256_slli_epi32::<3>(unsafe { _mm256_loadu_si256(layout.offset.as_ptr().add(8 * g).cast()) });
            }
            // Running check value (see the return value), shared by the groups.
            let mut acc = if C == 1 { _mm256_set1_epi32(-1) } else { _mm256_setzero_si256() };
            let seven = _mm256_set1_epi32(7);
            // Lanes 0, 1, 4, 5 | 2, 3, 6, 7: the order `rewindow` puts the 64-bit windows back in.
            let gather_order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
            let mut pos_arr = [0u32; 32];
            let mut row = 0usize;
            // Bits one round may advance a lane (lengths are clamped to max_len).
            let advance = (S as u64) * u64::from(max_len);
            let out_ptr = out.as_mut_ptr();

            loop {
                // How many rounds every lane can run: round j reads bytes [p_j/8, p_j/8 + window) with
                // p_j ≤ p_0 + j·advance, in bounds while p_0 + j·advance ≤ 8·(len − window bytes).
                let window_bytes: u64 = if WIDE { 8 } else { 4 };
                let mut rounds = ((full_rows - row) / S) as u64;
                for (l, &reach) in layout.readable.iter().enumerate().take(lanes.len()) {
                    let limit = (reach as u64).saturating_sub(window_bytes) * 8;
                    let p = u64::from(pos_arr[l]);
                    if (reach as u64) < window_bytes || p > limit {
                        rounds = 0;
                        break;
                    }
                    rounds = rounds.min((limit - p) / advance + 1);
                }
                if rounds == 0 {
                    break;
                }
                for _ in 0..rounds {
                    // Narrow: `w` is the 32-bit window. Wide: `x`, `y` are the 64-bit windows of lanes
                    // 0, 1, 4, 5 and 2, 3, 6, 7, starting at bit `start` of the lane; `w` is a view
                    // re-extracted at the steps `schedule` names.
                    let mut w = [_mm256_setzero_si256(); G];
                    let mut x = [_mm256_setzero_si256(); G];
                    let mut y = [_mm256_setzero_si256(); G];
                    let mut start = [_mm256_setzero_si256(); G];
                    for g in 0..G {
                        let byte = _mm256_srai_epi32::<3>(pos[g]);
                        if WIDE {
                            let idx = _mm256_permutevar8x32_epi32(byte, gather_order);
                            // SAFETY: by the round count above every lane l satisfies
                            // pos/8 + 8 ≤ layout.readable[l], so the 8 bytes at base + (addr >> 3) =
                            // base + offset[l] + pos/8 lie inside lanes[l] or, with a region, inside
                            // the region after lanes[l]'s start (Layout::of: base + offset[l] =
                            // lanes[l].as_ptr(); readable[l] ends at the lane's or the region's end).
                            unsafe {
                                x[g] = _mm256_i32gather_epi64::<1>(layout.base.cast(), _mm256_castsi256_si128(idx));
                                y[g] = _mm256_i32gather_epi64::<1>(layout.base.cast(), _mm256_extracti128_si256::<1>(idx));
                            }
                            start[g] = _mm256_andnot_si256(seven, pos[g]);
                        } else {
                            // SAFETY: as above with pos/8 + 4 ≤ layout.readable[l] and 4 bytes.
                            let raw = unsafe { _mm256_i32gather_epi32::<1>(layout.base.cast(), byte) };
                            w[g] = _mm256_srlv_epi32(raw, _mm256_and_si256(pos[g], seven));
                        }
                    }
                    let mut pending = [_mm256_setzero_si256(); 4];
                    for s in 0..S {
                        let rewindow = WIDE && schedule & (1 << s) != 0;
                        for g in 0..G {
                            if rewindow {
                                w[g] = view(x[g], y[g], _mm256_sub_epi32(pos[g], start[g]));
                            }
                            // SAFETY: AVX2 is enabled here; `sym_table` is the table of variant `C`
                            // (caller contract), and `step` only gathers indices it holds.
                            let (sym, len) = unsafe { step::<C>(&regs, sym_table, w[g]) };
                            w[g] = _mm256_srlv_epi32(w[g], len);
                            pos[g] = _mm256_add_epi32(pos[g], len);
                            acc = if C == 1 { _mm256_min_epu32(acc, len) } else { _mm256_max_epu32(acc, sym) };
                            // Register k = s·G + g holds the bytes at row·n_lanes + 8k: four
                            // consecutive ones make one 32-byte store.
                            let k = s * G + g;
                            pending[k % 4] = sym;
                            if k % 4 == 3 {
                                // SAFETY: row + S ≤ full_rows (round count), so the 32 bytes at
                                // row·n_lanes + 8(k − 3) ≤ (row + S)·n_lanes − 32 lie inside `out`.
                                unsafe {
                                    _mm256_storeu_si256(
                                        out_ptr.add(row * n_lanes + 8 * (k - 3)).cast(),
                                        pack32(pending[0], pending[1], pending[2], pending[3]),
                                    );
                                }
                            }
                        }
                    }
                    for (k, &sym) in pending.iter().enumerate().take(S * G % 4) {
                        // SAFETY: registers S·G − S·G % 4 + k < S·G of this round: 8 bytes inside the
                        // round's rows, as above.
                        unsafe {
                            _mm_storel_epi64(out_ptr.add(row * n_lanes + 8 * (S * G - S * G % 4 + k)).cast(), pack8(sym));
                        }
                    }
                    row += S;
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
            let mut lanes_acc = [0u32; 8];
            // SAFETY: 8 u32s into an 8-element array.
            unsafe { _mm256_storeu_si256(lanes_acc.as_mut_ptr().cast(), acc) };
            let check = if C == 1 { lanes_acc.iter().min() } else { lanes_acc.iter().max() };
            (row, pos_arr, check.copied().unwrap_or(0))
        }
    };
}

fast_part!(
    /// The fast part: decodes whole rows while every lane provably has bytes left for the round's
    /// window gather. Returns (rows decoded, each lane's bit position, check value): for Huffman
    /// the smallest length decoded, otherwise the largest rank/value stored (`u32::MAX` / 0 if no
    /// row was decoded).
    ///
    /// # Safety
    /// AVX2 must be available. `layout` must describe `lanes`. `C` must name the variant of
    /// `tables` (0 QLC, 1 Huffman, 2 Exp-Golomb, 3 Exp-Golomb of order ≥ 2). `tables` must come
    /// from a decoder
    /// whose symbols are at most `max_len` bits, with `G · 8 == lanes.len()` and
    /// `S · max_len ≤ window_bits(WIDE)`, `max_len ≤ 25`, and for `WIDE`
    /// `schedule == wide_schedule(max_len, S)`.
    fast,
    "avx2"
);

fast_part!(
    /// [`fast`] compiled with AVX-512VL: the same instructions, but 32 `ymm` registers instead of
    /// 16, so the register groups' windows, positions and pending rows spill less (QLC +4 %,
    /// Exp-Golomb-rank +7 %, Huffman +1 %; benches/RESULTS.md §2).
    ///
    /// # Safety
    /// As [`fast`], and the CPU must support AVX-512 F, BW and VL.
    fast_vl,
    "avx2,avx512f,avx512vl,avx512bw"
);

/// The 32 bits at bit `sh` (< 64) of each lane's 64-bit window: `x` holds lanes 0, 1, 4, 5 and
/// `y` lanes 2, 3, 6, 7 (bits past the window read as zeros).
#[target_feature(enable = "avx2")]
#[inline]
fn view(x: __m256i, y: __m256i, sh: __m256i) -> __m256i {
    let zero = _mm256_setzero_si256();
    // unpacklo: shift counts of lanes 0, 1 | 4, 5 as u64s; unpackhi: 2, 3 | 6, 7.
    let xs = _mm256_srlv_epi64(x, _mm256_unpacklo_epi32(sh, zero));
    let ys = _mm256_srlv_epi64(y, _mm256_unpackhi_epi32(sh, zero));
    // Low halves: x0 x1 y0 y1 | x2 x3 y2 y3 = lanes 0..8 in order.
    _mm256_castps_si256(_mm256_shuffle_ps::<0x88>(_mm256_castsi256_ps(xs), _mm256_castsi256_ps(ys)))
}

/// Replaces every byte b of `buf` by `map[b]`, 32 bytes at a time; every byte must be at most
/// `max`. The table is 16 `vpshufb` tables of 16 entries, of which the `max / 16 + 1` needed
/// are looked up ([`translate_n`]).
#[target_feature(enable = "avx2")]
fn translate(buf: &mut [u8], map: &[u8; 256], max: u8) {
    match max >> 4 {
        0 => translate_n::<1>(buf, map),
        1 => translate_n::<2>(buf, map),
        2 => translate_n::<3>(buf, map),
        3 => translate_n::<4>(buf, map),
        4 => translate_n::<5>(buf, map),
        5 => translate_n::<6>(buf, map),
        6 => translate_n::<7>(buf, map),
        7 => translate_n::<8>(buf, map),
        8 => translate_n::<9>(buf, map),
        9 => translate_n::<10>(buf, map),
        10 => translate_n::<11>(buf, map),
        11 => translate_n::<12>(buf, map),
        12 => translate_n::<13>(buf, map),
        13 => translate_n::<14>(buf, map),
        14 => translate_n::<15>(buf, map),
        _ => translate_n::<16>(buf, map),
    }
}

/// [`translate`] for bytes below `16 · N`, without blends: with `t_h` the 16-entry table of
/// high nibble h, a byte r < 128 with high nibble j gets `XOR_{h = j..8} d_h[r & 15]` where
/// `d_h = t_h ^ t_{h+1}` (`t_8` = 0), which telescopes to `t_j[r & 15]`. Term h is a `vpshufb`
/// with index `r +sat (0x70 − 16h)`: below 0x80 (a lookup of the low nibble) exactly when
/// j ≤ h, else bit 7 set (zero). Bytes ≥ 128 do the same on `r ^ 0x80` with tables 8..16
/// (and read zeros from the first half, as their index has bit 7 set).
#[target_feature(enable = "avx2")]
fn translate_n<const N: usize>(buf: &mut [u8], map: &[u8; 256]) {
    let mut tables = [_mm256_setzero_si256(); N];
    for (h, t) in tables.iter_mut().enumerate() {
        // d_h = t_h ^ t_{h+1} within each half (the last table of a half stands alone).
        let next = h + 1 < N && h != 7;
        let mut v = [0u8; 32];
        for i in 0..16 {
            v[i] = map[16 * h + i] ^ if next { map[16 * (h + 1) + i] } else { 0 };
            v[16 + i] = v[i];
        }
        // SAFETY: unaligned load of a local 32-byte array.
        *t = unsafe { _mm256_loadu_si256(v.as_ptr().cast()) };
    }
    let mut blocks = buf.chunks_exact_mut(32);
    for block in &mut blocks {
        // SAFETY: `block` is exactly 32 bytes.
        let r = unsafe { _mm256_loadu_si256(block.as_ptr().cast()) };
        let flipped = _mm256_xor_si256(r, _mm256_set1_epi8(-128));
        let mut acc = _mm256_setzero_si256();
        for (h, t) in tables.iter().enumerate() {
            let (x, hh) = if h < 8 { (r, h) } else { (flipped, h - 8) };
            let idx = _mm256_adds_epu8(x, _mm256_set1_epi8((0x70 - 16 * hh) as i8));
            acc = _mm256_xor_si256(acc, _mm256_shuffle_epi8(*t, idx));
        }
        // SAFETY: as for the load.
        unsafe { _mm256_storeu_si256(block.as_mut_ptr().cast(), acc) };
    }
    for b in blocks.into_remainder() {
        *b = map[usize::from(*b)];
    }
}

/// Low bytes of 4 × 8 `u32`s (each ≤ 255) as 32 bytes: a's 8, then b's, c's, d's.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn pack32(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m256i {
    // Per 128-bit half: a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7 (saturating packs).
    let bytes = _mm256_packus_epi16(_mm256_packus_epi32(a, b), _mm256_packus_epi32(c, d));
    _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Low bytes of 8 `u32`s (each ≤ 255) as 8 bytes.
#[target_feature(enable = "avx2")]
#[inline]
fn pack8(v: __m256i) -> __m128i {
    let bytes = _mm256_shuffle_epi8(
        v,
        _mm256_setr_epi8(
            0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1,
            -1, -1, -1, -1,
        ),
    );
    _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1)))
}

/// Decodes one code per lane from window `w`: (output value, length ≤ max_len). The output
/// is the symbol for Huffman (length 0: invalid code), the rank (QLC) or value (Exp-Golomb)
/// otherwise (past 255: invalid code), which `translate` maps to the symbol.
///
/// # Safety
/// AVX2 must be available; for Huffman (`C` = 1) `table` must be the Huffman table of the
/// same `SimdTables`: the gather reads 4 bytes at `table[w & mask]`, mask < table.len() − 1.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn step<const C: u8>(r: &Regs, table: *const u8, w: __m256i) -> (__m256i, __m256i) {
    let byte = _mm256_set1_epi32(0xff);
    match C {
        0 => {
            // vpermd reads only the low 3 bits of each index: the area prefix.
            let mask = _mm256_permutevar8x32_epi32(r.qlc_mask, w);
            let index = _mm256_and_si256(_mm256_srl_epi32(w, r.prefix), mask);
            // The rank; `translate` maps ranks to symbols after the loop (ranks past 255 are
            // codes no encoder writes).
            let rank = _mm256_add_epi32(_mm256_permutevar8x32_epi32(r.qlc_base, w), index);
            (rank, _mm256_permutevar8x32_epi32(r.qlc_len, w))
        }
        1 => {
            let index = _mm256_and_si256(w, r.huff_mask);
            // SAFETY: index < 2^max_len < table.len(); the 4-byte read ends inside the table.
            let entry = unsafe { _mm256_i32gather_epi32::<2>(table.cast(), index) };
            let sym = _mm256_and_si256(entry, byte);
            let len = _mm256_and_si256(_mm256_srli_epi32::<8>(entry), byte);
            (sym, len)
        }
        3 => {
            // As below, with z = trailing zeros + 1 clamped to 8 (for order k ≥ 2, 7 zeros
            // already make every value > 255) and length, rest mask and value offset per z
            // from three in-register tables.
            let low = _mm256_and_si256(w, _mm256_sub_epi32(_mm256_setzero_si256(), w));
            let exp = _mm256_srli_epi32::<23>(_mm256_castps_si256(_mm256_cvtepi32_ps(low)));
            let z = _mm256_min_epu32(_mm256_sub_epi32(exp, _mm256_set1_epi32(126)), _mm256_set1_epi32(8));
            let rest = _mm256_and_si256(_mm256_srlv_epi32(w, z), _mm256_permutevar8x32_epi32(r.eg_mask, z));
            let value = _mm256_add_epi32(rest, _mm256_permutevar8x32_epi32(r.eg_off, z));
            (value, _mm256_permutevar8x32_epi32(r.eg_len, z))
        }
        _ => {
            let one = _mm256_set1_epi32(1);
            // Trailing zeros + 1 from the exponent of the lowest set bit as a float: 2^t has
            // exponent field 127 + t. w = 0 gives field 0 and w = 2^31 (negative as i32)
            // field 0x100 + 158: both wrap or exceed the clamp to 16 (zeros clamped at 15).
            let low = _mm256_and_si256(w, _mm256_sub_epi32(_mm256_setzero_si256(), w));
            let exp = _mm256_srli_epi32::<23>(_mm256_castps_si256(_mm256_cvtepi32_ps(low)));
            let zeros1 = _mm256_min_epu32(_mm256_sub_epi32(exp, _mm256_set1_epi32(126)), _mm256_set1_epi32(16));
            // width = zeros + k; the code: zeros 0-bits, a 1, width bits `rest`.
            let width = _mm256_add_epi32(zeros1, r.eg_order_m1);
            let top = _mm256_sllv_epi32(one, width);
            let rest = _mm256_and_si256(_mm256_srlv_epi32(w, zeros1), _mm256_sub_epi32(top, one));
            // The value rest + 2^width − 2^k; `translate` maps it to the symbol after the loop.
            let value = _mm256_add_epi32(rest, _mm256_sub_epi32(top, r.eg_pow));
            let len = _mm256_add_epi32(zeros1, width);
            (value, _mm256_min_epu32(len, r.max_len))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translate_matches_table_for_every_max() {
        if !supported() {
            return;
        }
        let map: [u8; 256] = std::array::from_fn(|i| (i as u8).wrapping_mul(167).wrapping_add(13));
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for max in 0..=255u8 {
            let buf: Vec<u8> = (0..100)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % (u64::from(max) + 1)) as u8
                })
                .collect();
            let mut got = buf.clone();
            // SAFETY: AVX2 is available (checked above).
            unsafe { translate(&mut got, &map, max) };
            let want: Vec<u8> = buf.iter().map(|&b| map[usize::from(b)]).collect();
            assert_eq!(got, want, "max {max}");
        }
    }

    /// Simulates wide rounds: every start offset 0..8 and code lengths drawn from 1..=max_len
    /// (plus all-max_len): each step's view must hold max_len valid bits, and the schedule
    /// must not re-extract more often than a view of 32 bits requires.
    #[test]
    fn wide_schedule_keeps_max_len_bits_in_view() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for max_len in 1..=19u32 {
            let per_round = (window_bits(true) / max_len).min(MAX_PER_ROUND);
            if per_round < 3 {
                continue;
            }
            let sched = wide_schedule(max_len, per_round);
            assert_eq!(sched & 1, 1, "max_len {max_len}");
            assert_eq!(sched >> per_round, 0, "max_len {max_len}");
            for shift in 0..8u32 {
                for trial in 0..200 {
                    let mut sh = shift;
                    let mut valid = 0u32;
                    for s in 0..per_round {
                        if sched & (1 << s) != 0 {
                            valid = (64 - sh).min(32);
                        }
                        assert!(valid >= max_len, "max_len {max_len} shift {shift} step {s} sched {sched:b}");
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let len = if trial == 0 { max_len } else { 1 + (seed % u64::from(max_len)) as u32 };
                        valid -= len;
                        sh += len;
                    }
                }
            }
        }
        // QLC on e4m3 (11-bit codes, 5 per round): views before steps 0 and 2 and 4.
        assert_eq!(wide_schedule(11, 5), 0b10101);
        assert_eq!(wide_schedule(8, 6), 0b10001);
    }
}
