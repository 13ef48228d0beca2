//! Portable fast kernel: all lanes advance together so their dependency chains overlap
//! (instruction-level parallelism across lanes, as in huff0's 4 streams). Each round refills
//! every lane once (an unaligned 8-byte load) and decodes `P` symbols from the 56+ valid bits,
//! `P = 56 / max_len` fixed at compile time so the per-lane loop unrolls. The bounds check is
//! one comparison per lane per round, not per symbol; table reads are unchecked after the
//! table sizes are validated once per chunk. The tail runs the checked reader.

use super::{check_lane_end, invalid_code};
use crate::bits::peek_bits_checked;
use crate::codes::{SimdTables, SymbolDecoder};
use crate::error::Result;
use crate::stream::MAX_LANES;

/// Bits guaranteed valid after an 8-byte load shifted by up to 7.
const REFILL_BITS: u32 = 56;

pub fn decode_lanes<D: SymbolDecoder>(dec: &D, lanes: &[&[u8]], out: &mut [u8]) -> Result<()> {
    let n_lanes = lanes.len();
    debug_assert!((1..=MAX_LANES).contains(&n_lanes));
    let mut pos = [0usize; MAX_LANES];
    let fast_path = dec.simd_tables().and_then(|t| run_tables(t, lanes, out, &mut pos));
    let (row, bad) = match fast_path {
        Some(done) => done,
        None => generic(dec, lanes, out, &mut pos),
    };
    if bad {
        // Re-run the reference: it reports the error exactly as it would alone.
        return super::scalar::decode_lanes(dec, lanes, out);
    }
    for (l, lane) in lanes.iter().enumerate() {
        let mut p = pos[l];
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

/// One codec's tables with their sizes validated, so the fast loop may index unchecked.
trait Step {
    /// (symbol, length, invalid) of the code in the low bits of `bits`; the same results as
    /// the codec's `SymbolDecoder::decode`.
    fn decode(&self, bits: u64) -> (u8, u32, u32);
}

/// `area[p] = (length, lut base, index mask)`; every base + mask < lut.len().
struct QlcStep<'a> {
    prefix_bits: u32,
    area: [(u32, u32, u32); 8],
    lut: &'a [u16],
}

impl Step for QlcStep<'_> {
    #[inline(always)]
    fn decode(&self, bits: u64) -> (u8, u32, u32) {
        let (len, base, mask) = self.area[(bits & 7) as usize];
        let index = ((bits >> self.prefix_bits) as u32) & mask;
        // SAFETY: index ≤ mask and base + mask < lut.len() (validated in `run_tables`).
        let entry = unsafe { *self.lut.get_unchecked((base + index) as usize) };
        (entry as u8, len, u32::from(entry >> 8))
    }
}

/// table.len() > mask.
struct HuffmanStep<'a> {
    mask: u64,
    table: &'a [u16],
}

impl Step for HuffmanStep<'_> {
    #[inline(always)]
    fn decode(&self, bits: u64) -> (u8, u32, u32) {
        // SAFETY: bits & mask ≤ mask < table.len() (validated in `run_tables`).
        let entry = unsafe { *self.table.get_unchecked((bits & self.mask) as usize) };
        let len = u32::from(entry >> 8);
        (entry as u8, len, u32::from(len == 0))
    }
}

struct ExpGolombStep<'a> {
    order: u32,
    lut: &'a [u32; 256],
}

impl Step for ExpGolombStep<'_> {
    #[inline(always)]
    fn decode(&self, bits: u64) -> (u8, u32, u32) {
        let zeros = bits.trailing_zeros().min(15);
        let width = zeros + self.order;
        let rest = ((bits >> (zeros + 1)) as u32) & ((1u32 << width) - 1);
        let value = rest + (1u32 << width) - (1u32 << self.order);
        (self.lut[(value & 0xff) as usize] as u8, 2 * zeros + self.order + 1, u32::from(value > 0xff))
    }
}

/// Runs `fast` with the step of `t` and a compile-time per-round count; `None` if the tables
/// fail validation.
fn run_tables(
    t: SimdTables<'_>,
    lanes: &[&[u8]],
    out: &mut [u8],
    pos: &mut [usize; MAX_LANES],
) -> Option<(usize, bool)> {
    fn by_round<T: Step>(
        step: &T,
        max_len: u32,
        lanes: &[&[u8]],
        out: &mut [u8],
        pos: &mut [usize; MAX_LANES],
    ) -> (usize, bool) {
        match (REFILL_BITS / max_len.max(1)).clamp(1, 8) {
            1 => fast::<T, 1>(step, lanes, out, pos),
            2 => fast::<T, 2>(step, lanes, out, pos),
            3 => fast::<T, 3>(step, lanes, out, pos),
            4 => fast::<T, 4>(step, lanes, out, pos),
            5 => fast::<T, 5>(step, lanes, out, pos),
            6 => fast::<T, 6>(step, lanes, out, pos),
            7 => fast::<T, 7>(step, lanes, out, pos),
            _ => fast::<T, 8>(step, lanes, out, pos),
        }
    }
    Some(match t {
        SimdTables::Qlc { prefix_bits, max_len, area_info, lut } => {
            if prefix_bits > 3 {
                return None;
            }
            let mut area = [(0u32, 0u32, 0u32); 8];
            for (p, a) in area.iter_mut().enumerate() {
                let info = area_info[p & ((1 << prefix_bits) - 1)];
                let width = info >> 16;
                if width > 16 {
                    return None;
                }
                let (base, mask) = (info & 0xffff, (1u32 << width) - 1);
                // The fast loop reads lut[base + index] with index ≤ mask unchecked.
                if (base + mask) as usize >= lut.len() || prefix_bits + width > max_len {
                    return None;
                }
                *a = (prefix_bits + width, base, mask);
            }
            let step = QlcStep { prefix_bits, area, lut };
            if max_len <= 11 && out.len() >= 64 << max_len {
                // Big enough to amortise a direct table: one lookup gives symbol and length, as
                // for Huffman (invalid ranks become length 0, which the Huffman step flags).
                let mut direct = [0u16; 1 << 11];
                for (bits, e) in direct.iter_mut().enumerate().take(1 << max_len) {
                    let (sym, len, invalid) = step.decode(bits as u64);
                    *e = if invalid == 0 { u16::from(sym) | (len as u16) << 8 } else { 0 };
                }
                by_round(&HuffmanStep { mask: (1u64 << max_len) - 1, table: &direct }, max_len, lanes, out, pos)
            } else {
                by_round(&step, max_len, lanes, out, pos)
            }
        }
        SimdTables::Huffman { max_len, table } => {
            if max_len > 16 || table.len() < (1usize << max_len) {
                return None;
            }
            by_round(&HuffmanStep { mask: (1u64 << max_len) - 1, table }, max_len, lanes, out, pos)
        }
        SimdTables::ExpGolomb { order, max_len, lut } => {
            by_round(&ExpGolombStep { order, lut }, max_len, lanes, out, pos)
        }
    })
}

/// Whole rounds of `P` rows while every lane has 8 readable bytes at its position. Returns
/// (rows decoded, invalid flag); `pos` receives each lane's bit position.
fn fast<T: Step, const P: usize>(
    t: &T,
    lanes: &[&[u8]],
    out: &mut [u8],
    pos: &mut [usize; MAX_LANES],
) -> (usize, bool) {
    let n_lanes = lanes.len();
    let full_rows = out.len() / n_lanes;
    let mut bad = 0u32;
    let mut row = 0usize;
    while row + P <= full_rows {
        if lanes.iter().zip(pos.iter()).any(|(lane, &p)| (p >> 3) + 8 > lane.len()) {
            break;
        }
        let rows = &mut out[row * n_lanes..(row + P) * n_lanes];
        // Four lanes at a time, symbol by symbol: their four dependency chains (window →
        // table load → length → shift) sit side by side in program order, so the core
        // overlaps them without looking far ahead (this loop decodes Huffman and QLC 25 % faster
        // than one lane at a time, benches/RESULTS.md §2).
        let mut l = 0;
        while l + 4 <= n_lanes {
            let mut bits = [0u64; 4];
            let mut used = [0u32; 4];
            for j in 0..4 {
                let at = pos[l + j] >> 3;
                // SAFETY: at + 8 ≤ lane.len() was checked for every lane at the top of the round.
                let word = unsafe { lanes[l + j].as_ptr().add(at).cast::<u64>().read_unaligned() };
                bits[j] = u64::from_le(word) >> (pos[l + j] & 7);
            }
            for r in 0..P {
                for j in 0..4 {
                    let (sym, len, invalid) = t.decode(bits[j]);
                    // As in the single-lane loop below.
                    bits[j] >>= len & 63;
                    used[j] += len;
                    bad |= invalid;
                    // SAFETY: r < P and l + j < n_lanes, so the index is < rows.len().
                    unsafe { *rows.get_unchecked_mut(r * n_lanes + l + j) = sym };
                }
            }
            for j in 0..4 {
                pos[l + j] += used[j] as usize;
            }
            l += 4;
        }
        // The lanes left over (lane counts not a multiple of 4). One generic helper for both
        // loops measured 4 % (Huffman) to 24 % (QLC) slower: the code generation differs.
        for (l, lane) in lanes.iter().enumerate().skip(l) {
            let at = pos[l] >> 3;
            // SAFETY: at + 8 ≤ lane.len() was checked for every lane at the top of the round.
            let word = unsafe { lane.as_ptr().add(at).cast::<u64>().read_unaligned() };
            let mut bits = u64::from_le(word) >> (pos[l] & 7);
            let mut used = 0u32;
            for r in 0..P {
                let (sym, len, invalid) = t.decode(bits);
                // A valid code is ≤ max_len bits and P · max_len ≤ 56, so the window never runs
                // dry; an invalid one only sets the flag (its output is discarded).
                // Every length is < 64 (≤ 39 even for invalid Exp-Golomb codes).
                bits >>= len & 63;
                used += len;
                bad |= invalid;
                // SAFETY: r < P and l < n_lanes, so r·n_lanes + l < P·n_lanes = rows.len().
                unsafe { *rows.get_unchecked_mut(r * n_lanes + l) = sym };
            }
            pos[l] += used as usize;
        }
        row += P;
    }
    (row, bad != 0)
}

/// The round loop for decoders without table views (dynamic per-round count).
fn generic<D: SymbolDecoder>(dec: &D, lanes: &[&[u8]], out: &mut [u8], pos: &mut [usize; MAX_LANES]) -> (usize, bool) {
    let n_lanes = lanes.len();
    let per_round = (REFILL_BITS / dec.max_code_len().max(1)).max(1) as usize;
    let full_rows = out.len() / n_lanes;
    let mut bad = 0u32;
    let mut row = 0usize;
    while row + per_round <= full_rows {
        if lanes.iter().zip(pos.iter()).any(|(lane, &p)| (p >> 3) + 8 > lane.len()) {
            break;
        }
        let rows = &mut out[row * n_lanes..(row + per_round) * n_lanes];
        for (l, lane) in lanes.iter().enumerate() {
            let at = pos[l] >> 3;
            let word: [u8; 8] = lane[at..at + 8].try_into().unwrap_or([0; 8]);
            let mut bits = u64::from_le_bytes(word) >> (pos[l] & 7);
            for r in 0..per_round {
                let (sym, len, invalid) = dec.decode(bits);
                bits = bits.checked_shr(len).unwrap_or(0);
                pos[l] += len as usize;
                bad |= invalid;
                rows[r * n_lanes + l] = sym;
            }
        }
        row += per_round;
    }
    (row, bad != 0)
}
