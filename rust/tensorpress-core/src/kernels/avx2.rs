//! AVX2 kernel: eight lanes per 256-bit register, one `u32` bit position per lane.
//!
//! A round gathers a 32-bit window per lane (`vpgatherdd` at byte `pos / 8`, then a variable
//! shift by `pos % 8`: at least 25 valid bits) and decodes `S` symbols from it, where
//! `S · max_len ≤ 25`. Per symbol:
//! - QLC/DLC: the 3-bit (1-bit) area prefix selects the area's length and rank base with
//!   `vpermd` (an in-register table of 8 entries, no memory access at all); the index bits are
//!   masked with a second `vpermd`; the loop stores the *rank*.
//! - Huffman: one gather from the `u16` table indexed by the low `max_len` bits.
//! - Exp-Golomb: trailing zeros by isolating the lowest set bit and reading the exponent of
//!   its float conversion (AVX2 has no `tzcnt`), then variable shifts; the loop stores the value.
//!
//! Ranks and values are mapped to symbols afterwards by [`translate`], a 256-entry byte table
//! applied 32 bytes at a time with 16 `vpshufb`s (skipped for Exp-Golomb on raw values, where
//! the map is the identity): gathers cost ~14 cycles each on the development VM, the
//! translation about two instructions per byte.
//!
//! Lane counts that are multiples of 8 up to 32 run 1, 2 or 4 independent register groups
//! (more groups hide the gather latency); other lane counts use the portable kernel. Before
//! each batch of rounds the kernel computes, in scalar code, how many rounds every lane can run
//! without reading past its end; the rounds themselves carry no bounds checks. Invalid codes
//! set a flag that is checked once per chunk; any error (flag, tail or lane end) re-runs the
//! scalar reference so errors are exactly the reference's.

use super::{check_lane_end, interleaved, invalid_code, scalar};
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
/// Largest lane length (bytes) whose bit positions fit the kernel's `u32`/`i32` arithmetic.
const MAX_LANE_BYTES: usize = 1 << 26;

/// Whether this CPU runs the kernel.
pub fn supported() -> bool {
    is_x86_feature_detected!("avx2")
}

/// Decodes `lanes` into `out`; falls back to the portable kernel where AVX2 does not apply.
pub fn decode_lanes<D: SymbolDecoder>(dec: &D, lanes: &[&[u8]], out: &mut [u8]) -> Result<()> {
    let groups = lanes.len() / 8;
    let Some(tables) = dec.simd_tables() else { return interleaved::decode_lanes(dec, lanes, out) };
    if !supported() || !lanes.len().is_multiple_of(8) || !matches!(groups, 1 | 2 | 4) {
        return interleaved::decode_lanes(dec, lanes, out);
    }
    let Some(layout) = Layout::of(lanes) else { return interleaved::decode_lanes(dec, lanes, out) };
    if matches!(tables, SimdTables::Qlc { lut, .. } if lut.len() < 256) {
        // Not a table `QlcTable::decoder` builds (its ranks cover 0..256).
        return interleaved::decode_lanes(dec, lanes, out);
    }
    let max_len = match tables {
        SimdTables::Qlc { max_len, .. }
        | SimdTables::Huffman { max_len, .. }
        | SimdTables::ExpGolomb { max_len, .. } => max_len.max(1),
    };
    // Measured (benches/RESULTS.md §2): 64-bit windows (two gathers, 3–5 symbols per refill)
    // win with one register group, where the refill latency is on the critical path, and for
    // Exp-Golomb (long codes); 32-bit windows (one gather, 1–3 symbols) win otherwise.
    let wide = groups == 1 || matches!(tables, SimdTables::ExpGolomb { .. });
    let per_round = window_bits(wide) / max_len;
    if max_len > 25 || per_round < 1 || (wide && per_round < 3) {
        // No decoder of this crate has such long codes; keep the kernel's window invariant.
        return interleaved::decode_lanes(dec, lanes, out);
    }
    // SAFETY: AVX2 is available (checked above); `layout` was built from `lanes` and `out` is
    // the caller's buffer; S · max_len ≤ window_bits(WIDE) by the choice of `per_round`
    // (S ≤ per_round); `fast` upholds the bounds argument documented on it.
    let (rows, pos, bad) = unsafe {
        macro_rules! by_shape {
            ($c:literal) => {
                match (groups, wide, per_round.min(5)) {
                    (1, _, 3) => fast::<$c, 1, 3, true>(&tables, &layout, lanes, out, max_len),
                    (1, _, 4) => fast::<$c, 1, 4, true>(&tables, &layout, lanes, out, max_len),
                    (1, _, _) => fast::<$c, 1, 5, true>(&tables, &layout, lanes, out, max_len),
                    (2, true, 3) => fast::<$c, 2, 3, true>(&tables, &layout, lanes, out, max_len),
                    (2, true, 4) => fast::<$c, 2, 4, true>(&tables, &layout, lanes, out, max_len),
                    (2, true, _) => fast::<$c, 2, 5, true>(&tables, &layout, lanes, out, max_len),
                    (2, false, 1) => fast::<$c, 2, 1, false>(&tables, &layout, lanes, out, max_len),
                    (2, false, 2) => fast::<$c, 2, 2, false>(&tables, &layout, lanes, out, max_len),
                    (2, false, _) => fast::<$c, 2, 3, false>(&tables, &layout, lanes, out, max_len),
                    (_, true, 3) => fast::<$c, 4, 3, true>(&tables, &layout, lanes, out, max_len),
                    (_, true, 4) => fast::<$c, 4, 4, true>(&tables, &layout, lanes, out, max_len),
                    (_, true, _) => fast::<$c, 4, 5, true>(&tables, &layout, lanes, out, max_len),
                    (_, false, 1) => fast::<$c, 4, 1, false>(&tables, &layout, lanes, out, max_len),
                    (_, false, 2) => fast::<$c, 4, 2, false>(&tables, &layout, lanes, out, max_len),
                    (_, false, _) => fast::<$c, 4, 3, false>(&tables, &layout, lanes, out, max_len),
                }
            };
        }
        match tables {
            SimdTables::Qlc { .. } => by_shape!(0),
            SimdTables::Huffman { .. } => by_shape!(1),
            SimdTables::ExpGolomb { .. } => by_shape!(2),
        }
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
            // SAFETY: AVX2 is available (checked above).
            unsafe { translate(&mut out[..rows * lanes.len()], &map) };
        }
    }
    if bad || tail(dec, lanes, out, rows, &pos).is_err() {
        // Re-run the reference: it names the failing lane exactly as it would alone.
        return scalar::decode_lanes(dec, lanes, out);
    }
    Ok(())
}

/// Checked tail: rows from `row` on, each lane from its bit position, then the end check.
fn tail<D: SymbolDecoder>(dec: &D, lanes: &[&[u8]], out: &mut [u8], row: usize, pos: &[u32; 32]) -> Result<()> {
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
struct Layout {
    base: *const u8,
    /// Byte offset of each lane from `base`.
    offset: [i32; 32],
}

impl Layout {
    fn of(lanes: &[&[u8]]) -> Option<Self> {
        let base = lanes.first()?.as_ptr();
        let mut offset = [0i32; 32];
        for (o, lane) in offset.iter_mut().zip(lanes) {
            if lane.len() > MAX_LANE_BYTES {
                return None;
            }
            let d = (lane.as_ptr() as isize).wrapping_sub(base as isize);
            // Every gathered address is `base + offset + byte` with byte < lane length.
            if d.unsigned_abs() > (i32::MAX as usize) - MAX_LANE_BYTES {
                return None;
            }
            *o = d as i32;
        }
        Some(Self { base, offset })
    }
}

/// Per-codec constants held in registers for the whole chunk.
#[derive(Clone, Copy)]
struct Regs {
    /// QLC: per prefix value (low 3 bits of the window), length | lut base << 16.
    qlc_info: __m256i,
    /// QLC: per prefix value, the index mask (2^width − 1).
    qlc_mask: __m256i,
    /// QLC: prefix bits as a shift count; Exp-Golomb: unused.
    prefix: __m128i,
    /// Huffman: 2^max_len − 1.
    huff_mask: __m256i,
    /// Exp-Golomb order k and 2^k.
    eg_order: __m256i,
    eg_pow: __m256i,
    max_len: __m256i,
}

/// The fast part: decodes whole rows while every lane provably has bytes left for the round's
/// window gather. Returns (rows decoded, each lane's bit position, invalid-code flag).
///
/// # Safety
/// AVX2 must be available. `layout` must describe `lanes`. `C` must name the variant of
/// `tables` (0 QLC, 1 Huffman, 2 Exp-Golomb). `tables` must come from a decoder
/// whose symbols are at most `max_len` bits, with `G · 8 == lanes.len()` and
/// `S · max_len ≤ window_bits(WIDE)`, `max_len ≤ 25`.
#[target_feature(enable = "avx2")]
unsafe fn fast<const C: u8, const G: usize, const S: usize, const WIDE: bool>(
    tables: &SimdTables<'_>,
    layout: &Layout,
    lanes: &[&[u8]],
    out: &mut [u8],
    max_len: u32,
) -> (usize, [u32; 32], bool) {
    let n_lanes = G * 8;
    let full_rows = out.len() / n_lanes;
    let mut regs = Regs {
        qlc_info: _mm256_setzero_si256(),
        qlc_mask: _mm256_setzero_si256(),
        prefix: _mm_setzero_si128(),
        huff_mask: _mm256_setzero_si256(),
        eg_order: _mm256_setzero_si256(),
        eg_pow: _mm256_setzero_si256(),
        max_len: _mm256_set1_epi32(max_len as i32),
    };
    // Table base pointer for the symbol gather.
    let sym_table: *const u8 = match *tables {
        SimdTables::Qlc { prefix_bits, area_info, lut, .. } => {
            let areas = 1usize << prefix_bits;
            let mut info = [0i32; 8];
            let mut mask = [0i32; 8];
            for p in 0..8 {
                let a = area_info[p & (areas - 1)];
                let width = a >> 16;
                info[p] = ((prefix_bits + width) | ((a & 0xffff) << 16)) as i32;
                mask[p] = ((1u32 << width) - 1) as i32;
            }
            // SAFETY: unaligned loads of two local 8 × i32 arrays.
            unsafe {
                regs.qlc_info = _mm256_loadu_si256(info.as_ptr().cast());
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
            regs.eg_order = _mm256_set1_epi32(order as i32);
            regs.eg_pow = _mm256_set1_epi32(1 << order);
            lut.as_ptr().cast()
        }
    };

    let mut pos = [_mm256_setzero_si256(); G];
    let mut off = [_mm256_setzero_si256(); G];
    for (g, o) in off.iter_mut().enumerate() {
        // SAFETY: 8 i32s at 8g..8g+8 of a 32-element array (G ≤ 4).
        *o = unsafe { _mm256_loadu_si256(layout.offset.as_ptr().add(8 * g).cast()) };
    }
    let mut bad = _mm256_setzero_si256();
    let seven = _mm256_set1_epi32(7);
    let four = _mm256_set1_epi32(4);
    let thirty_two = _mm256_set1_epi32(32);
    let mut pos_arr = [0u32; 32];
    let mut row = 0usize;
    // Bits one round may advance a lane (lengths are clamped to max_len).
    let advance = (S as u64) * u64::from(max_len);
    let out_ptr = out.as_mut_ptr();

    loop {
        // How many rounds every lane can run: round j reads bytes [p_j/8, p_j/8 + 4) with
        // p_j ≤ p_0 + j·advance, in bounds while p_0 + j·advance ≤ 8·(len − window bytes).
        let window_bytes: u64 = if WIDE { 8 } else { 4 };
        let mut rounds = ((full_rows - row) / S) as u64;
        for (l, lane) in lanes.iter().enumerate() {
            let limit = (lane.len() as u64).saturating_sub(window_bytes) * 8;
            let p = u64::from(pos_arr[l]);
            if (lane.len() as u64) < window_bytes || p > limit {
                rounds = 0;
                break;
            }
            rounds = rounds.min((limit - p) / advance + 1);
        }
        if rounds == 0 {
            break;
        }
        for _ in 0..rounds {
            // Per lane a 64-bit window as two 32-bit halves: `w` holds the next 32 bits, `hi`
            // the following ones; consuming `len` bits is a funnel shift of the pair.
            let mut w = [_mm256_setzero_si256(); G];
            let mut hi = [_mm256_setzero_si256(); G];
            for g in 0..G {
                let byte = _mm256_add_epi32(off[g], _mm256_srli_epi32::<3>(pos[g]));
                let shift = _mm256_and_si256(pos[g], seven);
                if WIDE {
                    // SAFETY: by the round count above every lane l satisfies
                    // pos/8 + 8 ≤ lanes[l].len(), so the 8 bytes at base + offset[l] + pos/8
                    // lie inside lanes[l] (Layout::of: base + offset[l] = lanes[l].as_ptr()).
                    let (lo_raw, hi_raw) = unsafe {
                        (
                            _mm256_i32gather_epi32::<1>(layout.base.cast(), byte),
                            _mm256_i32gather_epi32::<1>(layout.base.cast(), _mm256_add_epi32(byte, four)),
                        )
                    };
                    // sllv by 32 (shift 0) gives 0, as the funnel shift needs.
                    w[g] = _mm256_or_si256(
                        _mm256_srlv_epi32(lo_raw, shift),
                        _mm256_sllv_epi32(hi_raw, _mm256_sub_epi32(thirty_two, shift)),
                    );
                    hi[g] = _mm256_srlv_epi32(hi_raw, shift);
                } else {
                    // SAFETY: as above with pos/8 + 4 ≤ lanes[l].len() and 4 bytes.
                    let raw = unsafe { _mm256_i32gather_epi32::<1>(layout.base.cast(), byte) };
                    w[g] = _mm256_srlv_epi32(raw, shift);
                }
            }
            for s in 0..S {
                let mut syms = [_mm256_setzero_si256(); G];
                for g in 0..G {
                    // SAFETY: AVX2 is enabled here; `sym_table` is the table of variant `C`
                    // (caller contract), and `step` only gathers indices it holds.
                    let (sym, len, b) = unsafe { step::<C>(&regs, sym_table, w[g]) };
                    if WIDE {
                        w[g] = _mm256_or_si256(
                            _mm256_srlv_epi32(w[g], len),
                            _mm256_sllv_epi32(hi[g], _mm256_sub_epi32(thirty_two, len)),
                        );
                        hi[g] = _mm256_srlv_epi32(hi[g], len);
                    } else {
                        w[g] = _mm256_srlv_epi32(w[g], len);
                    }
                    pos[g] = _mm256_add_epi32(pos[g], len);
                    bad = _mm256_or_si256(bad, b);
                    syms[g] = sym;
                }
                let at = (row + s) * n_lanes;
                for (g, &sym) in syms.iter().enumerate() {
                    // SAFETY: row + s < full_rows (round count), so the 8 bytes at
                    // (row + s)·n_lanes + 8g lie inside `out`.
                    unsafe { _mm_storel_epi64(out_ptr.add(at + 8 * g).cast(), pack8(sym)) };
                }
            }
            row += S;
        }
        for (g, &p) in pos.iter().enumerate() {
            // SAFETY: 8 u32s into pos_arr[8g..8g + 8] of 32.
            unsafe { _mm256_storeu_si256(pos_arr.as_mut_ptr().add(8 * g).cast(), p) };
        }
    }
    (row, pos_arr, _mm256_testz_si256(bad, bad) == 0)
}

/// Replaces every byte b of `buf` by `map[b]`, 32 bytes at a time: the 256-entry table is
/// 16 `vpshufb` tables of 16 entries, selected by the high nibble.
#[target_feature(enable = "avx2")]
fn translate(buf: &mut [u8], map: &[u8; 256]) {
    let mut tables = [_mm256_setzero_si256(); 16];
    for (t, part) in tables.iter_mut().zip(map.chunks_exact(16)) {
        let mut v = [0u8; 32];
        v[..16].copy_from_slice(part);
        v[16..].copy_from_slice(part);
        // SAFETY: unaligned load of a local 32-byte array.
        *t = unsafe { _mm256_loadu_si256(v.as_ptr().cast()) };
    }
    let nibble = _mm256_set1_epi8(0x0f);
    let mut blocks = buf.chunks_exact_mut(32);
    for block in &mut blocks {
        // SAFETY: `block` is exactly 32 bytes.
        let r = unsafe { _mm256_loadu_si256(block.as_ptr().cast()) };
        let lo = _mm256_and_si256(r, nibble);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(r), nibble);
        let mut acc = _mm256_setzero_si256();
        for (h, t) in tables.iter().enumerate() {
            let hit = _mm256_cmpeq_epi8(hi, _mm256_set1_epi8(h as i8));
            acc = _mm256_or_si256(acc, _mm256_and_si256(hit, _mm256_shuffle_epi8(*t, lo)));
        }
        // SAFETY: as for the load.
        unsafe { _mm256_storeu_si256(block.as_mut_ptr().cast(), acc) };
    }
    for b in blocks.into_remainder() {
        *b = map[usize::from(*b)];
    }
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

/// Decodes one code per lane from window `w`: (output byte, length ≤ max_len, invalid mask).
/// The output byte is the symbol for Huffman, the rank (QLC) or value (Exp-Golomb) otherwise,
/// which `translate` maps to the symbol.
///
/// # Safety
/// AVX2 must be available; for Huffman (`C` = 1) `table` must be the Huffman table of the
/// same `SimdTables`: the gather reads 4 bytes at `table[w & mask]`, mask < table.len() − 1.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn step<const C: u8>(r: &Regs, table: *const u8, w: __m256i) -> (__m256i, __m256i, __m256i) {
    let byte = _mm256_set1_epi32(0xff);
    match C {
        0 => {
            // vpermd reads only the low 3 bits of each index: the area prefix.
            let info = _mm256_permutevar8x32_epi32(r.qlc_info, w);
            let mask = _mm256_permutevar8x32_epi32(r.qlc_mask, w);
            let index = _mm256_and_si256(_mm256_srl_epi32(w, r.prefix), mask);
            // The rank; `translate` maps ranks to symbols after the loop (ranks past 255 are
            // codes no encoder writes).
            let rank = _mm256_add_epi32(_mm256_srli_epi32::<16>(info), index);
            (rank, _mm256_and_si256(info, byte), _mm256_cmpgt_epi32(rank, byte))
        }
        1 => {
            let index = _mm256_and_si256(w, r.huff_mask);
            // SAFETY: index < 2^max_len < table.len(); the 4-byte read ends inside the table.
            let entry = unsafe { _mm256_i32gather_epi32::<2>(table.cast(), index) };
            let sym = _mm256_and_si256(entry, byte);
            let len = _mm256_and_si256(_mm256_srli_epi32::<8>(entry), byte);
            (sym, len, _mm256_cmpeq_epi32(len, _mm256_setzero_si256()))
        }
        _ => {
            let one = _mm256_set1_epi32(1);
            // Trailing zeros: exponent of the lowest set bit as a float (w = 0 → huge → 15).
            let low = _mm256_and_si256(w, _mm256_sub_epi32(_mm256_setzero_si256(), w));
            let exp = _mm256_srli_epi32::<23>(_mm256_castps_si256(_mm256_cvtepi32_ps(low)));
            let zeros = _mm256_sub_epi32(_mm256_and_si256(exp, byte), _mm256_set1_epi32(127));
            let zeros = _mm256_min_epu32(zeros, _mm256_set1_epi32(15));
            let width = _mm256_add_epi32(zeros, r.eg_order);
            let top = _mm256_sllv_epi32(one, width);
            let rest = _mm256_and_si256(_mm256_srlv_epi32(w, _mm256_add_epi32(zeros, one)), _mm256_sub_epi32(top, one));
            let value = _mm256_sub_epi32(_mm256_add_epi32(rest, top), r.eg_pow);
            let invalid = _mm256_cmpgt_epi32(value, byte);
            // The value; `translate` maps it to the symbol after the loop.
            let sym = value;
            let len = _mm256_add_epi32(_mm256_add_epi32(zeros, zeros), _mm256_add_epi32(r.eg_order, one));
            (sym, _mm256_min_epu32(len, r.max_len), invalid)
        }
    }
}
