//! LSB-first bit I/O. A code of `len` bits is stored starting at the lowest unused bit of the
//! lowest unfinished byte; readers peek 64 bits little-endian and mask.

#[cfg(target_arch = "x86_64")]
use crate::kernels::pack_avx512 as pack;
use crate::kernels::Kernel;

/// Appends LSB-first codes to a byte buffer. Caller-sized: `with_capacity_bits` must be given
/// an upper bound of the bits that will be written.
#[derive(Debug)]
pub struct BitWriter {
    buf: Vec<u8>,
    byte_pos: usize,
    acc: u64,
    acc_bits: u32,
}

impl BitWriter {
    /// A writer able to hold `max_bits` bits without reallocating.
    pub fn with_capacity_bits(max_bits: usize) -> Self {
        // 8 spare bytes let `put` store the whole accumulator unconditionally.
        Self { buf: vec![0u8; max_bits / 8 + 16], byte_pos: 0, acc: 0, acc_bits: 0 }
    }

    /// Writes the low `len` bits of `code` (len ≤ 32, code has no bits above len).
    #[inline(always)]
    pub fn put(&mut self, code: u32, len: u32) {
        debug_assert!(len <= 32);
        self.acc |= u64::from(code) << self.acc_bits;
        self.acc_bits += len;
        // Branch-free flush: store 8 bytes, keep the partial byte.
        let whole = (self.acc_bits >> 3) as usize;
        self.buf[self.byte_pos..self.byte_pos + 8].copy_from_slice(&self.acc.to_le_bytes());
        self.byte_pos += whole;
        self.acc = if whole == 8 { 0 } else { self.acc >> (whole * 8) };
        self.acc_bits &= 7;
    }

    /// Number of bits written so far.
    pub fn bit_len(&self) -> usize {
        self.byte_pos * 8 + self.acc_bits as usize
    }

    /// Finishes the stream, padding the last byte with zero bits.
    pub fn finish(mut self) -> Vec<u8> {
        let len = self.byte_pos + usize::from(self.acc_bits > 0);
        self.buf[self.byte_pos] = self.acc as u8;
        self.buf.truncate(len);
        self.buf
    }
}

/// Longest code [`put_strided`] accepts.
pub const MAX_STRIDED_CODE_LEN: u32 = 24;

/// Appends, LSB-first, the codes of `symbols[start]`, `symbols[start + step]`, … to `out` and
/// zero-pads the last byte (the bytes `BitWriter` would produce). `table[s]` holds
/// `code | len << 32` with `len ≤ MAX_STRIDED_CODE_LEN` and no code bits above `len`.
/// Several codes are merged per 8-byte store (4 when every code is ≤ 14 bits, else 2), which
/// shortens the accumulator's dependency chain.
/// Returns `false` if some coded symbol has length 0 (no code); `out` then holds garbage past
/// its old length.
pub fn put_strided(out: &mut Vec<u8>, symbols: &[u8], start: usize, step: usize, table: &[u64; 256]) -> bool {
    assert!(step > 0);
    // Missing symbols get bit 31 set in the code field (never set by a code ≤ 24 bits), so
    // one OR per code detects them.
    let mut t = *table;
    let mut max_len = 0u64;
    for e in &mut t {
        max_len = max_len.max(*e >> 32);
        if *e >> 32 == 0 {
            *e = 1 << 31;
        }
    }
    assert!(max_len <= u64::from(MAX_STRIDED_CODE_LEN));
    if max_len <= 14 {
        put_strided_k::<4>(out, symbols, start, step, &t, max_len as usize)
    } else {
        put_strided_k::<2>(out, symbols, start, step, &t, max_len as usize)
    }
}

/// [`put_strided`] merging `K` codes per store; needs `7 + K · max_len < 64`.
fn put_strided_k<const K: usize>(
    out: &mut Vec<u8>,
    symbols: &[u8],
    start: usize,
    step: usize,
    t: &[u64; 256],
    max_len: usize,
) -> bool {
    let count = symbols.len().saturating_sub(start).div_ceil(step);
    let base = out.len();
    // ≤ max_len bits per code, plus the 8-byte window of the last store. (A missing symbol's
    // entry has length 0, so it never advances the position.)
    let cap = (count * max_len).div_ceil(8) + 16;
    out.reserve(cap);
    // SAFETY: `base` ≤ capacity; writes below stay within the reserved capacity.
    let ptr = unsafe { out.as_mut_ptr().add(base) };
    let (mut acc, mut bits, mut pos, mut flags) = (0u64, 0u32, 0usize, 0u64);
    let mut flush = |acc: &mut u64, bits: &mut u32| {
        // SAFETY: after k codes pos ≤ k·max_len / 8 and k ≤ count, so [pos, pos + 8) lies
        // within the `cap` bytes reserved past `base`.
        unsafe { ptr.add(pos).cast::<u64>().write_unaligned(acc.to_le()) };
        let whole = *bits >> 3;
        pos += whole as usize;
        // whole ≤ 63 / 8 = 7, so the shift stays below 64.
        *acc >>= whole * 8;
        *bits &= 7;
    };
    let mut i = start;
    for _ in 0..count / K {
        let mut merged = 0u64;
        let mut merged_len = 0u32;
        for k in 0..K {
            // SAFETY: i + k·step ≤ start + (count − 1)·step < symbols.len(), as the group is
            // one of the count / K whole groups.
            let e = t[usize::from(unsafe { *symbols.get_unchecked(i + k * step) })];
            flags |= e;
            merged |= (e & 0xffff_ffff) << merged_len;
            merged_len += (e >> 32) as u32;
        }
        acc |= merged << bits;
        bits += merged_len;
        flush(&mut acc, &mut bits);
        i += K * step;
    }
    while i < symbols.len() {
        let e = t[usize::from(symbols[i])];
        flags |= e;
        acc |= (e & 0xffff_ffff) << bits;
        bits += (e >> 32) as u32;
        flush(&mut acc, &mut bits);
        i += step;
    }
    // SAFETY: pos < cap (see `flush`); every byte below pos was written by a store
    // (each store covers 8 bytes from pos and pos advances by at most 7).
    unsafe {
        ptr.add(pos).write(acc as u8);
        out.set_len(base + pos + usize::from(bits > 0));
    }
    flags & (1 << 31) == 0
}

/// Appends the bitstreams of all `n_lanes` lanes of `symbols` (symbol i in lane i mod
/// `n_lanes`) to `out`, lane 0 first, each exactly as [`put_strided`] writes it, and stores
/// each lane's byte length in `lane_lens[..n_lanes]`. `table` as for [`put_strided`].
///
/// `kernel` picks the writer: [`Kernel::Avx512Vbmi`] (and [`Kernel::Auto`] where the CPU has
/// AVX-512 VBMI) runs the lane-parallel packer for 8, 16 or 32 lanes; every other choice, and
/// lane counts the packer does not take, run the scalar reference. Output never depends on it.
/// Returns `false` if some symbol has no code (`out` then holds garbage past its old length).
pub fn put_lanes(
    kernel: Kernel,
    out: &mut Vec<u8>,
    symbols: &[u8],
    n_lanes: usize,
    table: &[u64; 256],
    lane_lens: &mut [u32],
) -> bool {
    assert!((1..=32).contains(&n_lanes) && lane_lens.len() >= n_lanes);
    #[cfg(target_arch = "x86_64")]
    if matches!(kernel, Kernel::Auto | Kernel::Avx512Vbmi)
        && matches!(n_lanes, 8 | 16 | 32)
        && symbols.len() >= pack::BLOCK
        && pack::supported()
    {
        return put_lanes_packed(out, symbols, n_lanes, table, lane_lens);
    }
    let _ = kernel;
    for (lane, len) in lane_lens.iter_mut().enumerate().take(n_lanes) {
        let at = out.len();
        if !put_strided(out, symbols, lane, n_lanes, table) {
            return false;
        }
        *len = (out.len() - at) as u32;
    }
    true
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// Lane regions of the packer, reused across chunks (no page faults per chunk).
    static PACK_SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest packer scratch a thread keeps between calls (default chunks need about 400 KiB;
/// 16 MiB chunks of 24-bit codes would pin 48 MiB per pool thread).
#[cfg(target_arch = "x86_64")]
const KEPT_SCRATCH_BYTES: usize = 4 << 20;

/// [`put_lanes`] through the AVX-512 packer: whole blocks in SIMD, each lane's rest (fewer
/// than 128 / `n_lanes` symbols) continued from its state with the scalar step.
#[cfg(target_arch = "x86_64")]
fn put_lanes_packed(
    out: &mut Vec<u8>,
    symbols: &[u8],
    n_lanes: usize,
    table: &[u64; 256],
    lane_lens: &mut [u32],
) -> bool {
    let max_len = table.iter().map(|e| e >> 32).max().unwrap_or(0);
    assert!(max_len <= u64::from(pack::MAX_CODE_LEN));
    let max_len = max_len as usize;
    let blocks = symbols.len() / pack::BLOCK;
    let per_lane = symbols.len().div_ceil(n_lanes);
    let region = (per_lane * max_len).div_ceil(8) + 16;
    let tables = pack::ByteTables::new(table);
    PACK_SCRATCH.with_borrow_mut(|scratch| {
        // Used as raw capacity (length 0): no zeroing, and only the bytes the packer wrote are
        // ever read back.
        if scratch.capacity() < region * n_lanes {
            *scratch = Vec::with_capacity(region * n_lanes);
        }
        let dst = scratch.as_mut_ptr();
        // SAFETY: the CPU was checked; blocks · BLOCK ≤ symbols.len(); each lane region holds
        // its per_lane · max_len bits plus 16 bytes; (G, K, WIDE) follow from max_len as
        // `pack` requires.
        let (mut state, mut ok) = unsafe {
            // n_lanes is 8, 16 or 32 (checked by the caller).
            match (n_lanes / 8, max_len) {
                (1, 0..=14) => pack::pack::<1, 4, false>(symbols, blocks, &tables, dst, region),
                (1, 15..=16) => pack::pack::<1, 2, false>(symbols, blocks, &tables, dst, region),
                (1, _) => pack::pack::<1, 2, true>(symbols, blocks, &tables, dst, region),
                (2, 0..=14) => pack::pack::<2, 4, false>(symbols, blocks, &tables, dst, region),
                (2, 15..=16) => pack::pack::<2, 2, false>(symbols, blocks, &tables, dst, region),
                (2, _) => pack::pack::<2, 2, true>(symbols, blocks, &tables, dst, region),
                (4, 0..=14) => pack::pack::<4, 4, false>(symbols, blocks, &tables, dst, region),
                (4, 15..=16) => pack::pack::<4, 2, false>(symbols, blocks, &tables, dst, region),
                _ => pack::pack::<4, 2, true>(symbols, blocks, &tables, dst, region),
            }
        };
        for lane in 0..n_lanes {
            let (mut acc, mut bits, mut pos) = (state.acc[lane], state.bits[lane] as u32, state.pos[lane] as usize);
            // SAFETY: the lane's region starts inside the scratch buffer.
            let lane_dst = unsafe { dst.add(lane * region) };
            for &s in symbols.iter().skip(blocks * pack::BLOCK + lane).step_by(n_lanes) {
                let e = table[usize::from(s)];
                ok &= e >> 32 != 0;
                acc |= (e & 0xffff_ffff) << bits;
                bits += (e >> 32) as u32;
                // SAFETY: pos ≤ (bits written so far) / 8 ≤ region − 16.
                unsafe { lane_dst.add(pos).cast::<u64>().write_unaligned(acc.to_le()) };
                let whole = bits >> 3;
                pos += whole as usize;
                // bits ≤ 7 + 24, so whole ≤ 3 and the shift stays below 64.
                acc >>= whole * 8;
                bits &= 7;
            }
            // SAFETY: as above.
            unsafe { lane_dst.add(pos).write(acc as u8) };
            state.pos[lane] = (pos + usize::from(bits > 0)) as u64;
        }
        if ok {
            for (lane, len) in lane_lens.iter_mut().enumerate().take(n_lanes) {
                let n = state.pos[lane] as usize;
                // SAFETY: the packer and the tail wrote every byte of [0, n) of the lane's
                // region (each 8-byte store starts where the previous one's whole bytes end,
                // and the last byte is written explicitly); n < region.
                out.extend_from_slice(unsafe { std::slice::from_raw_parts(dst.add(lane * region), n) });
                *len = n as u32;
            }
        }
        if scratch.capacity() > KEPT_SCRATCH_BYTES {
            *scratch = Vec::new();
        }
        ok
    })
}

/// Reads 64 bits starting at bit `pos` of `data`, with zero bits past the end. Safe for any
/// `pos`; used by the scalar reference and by the checked tails of fast kernels.
#[inline(always)]
pub fn peek_bits_checked(data: &[u8], pos: usize) -> u64 {
    let byte = pos >> 3;
    let word = if byte + 8 <= data.len() {
        u64::from_le_bytes(data[byte..byte + 8].try_into().unwrap_or([0; 8]))
    } else {
        let mut tmp = [0u8; 8];
        if byte < data.len() {
            tmp[..data.len() - byte].copy_from_slice(&data[byte..]);
        }
        u64::from_le_bytes(tmp)
    };
    word >> (pos & 7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let codes: Vec<(u32, u32)> = (0..1000u32).map(|i| (i % 31, 5 + (i % 13))).collect();
        let total: usize = codes.iter().map(|c| c.1 as usize).sum();
        let mut w = BitWriter::with_capacity_bits(total);
        for &(c, l) in &codes {
            w.put(c & ((1 << l) - 1), l);
        }
        assert_eq!(w.bit_len(), total);
        let data = w.finish();
        assert_eq!(data.len(), total.div_ceil(8));
        let mut pos = 0;
        for &(c, l) in &codes {
            let v = peek_bits_checked(&data, pos) & ((1u64 << l) - 1);
            assert_eq!(v as u32, c & ((1 << l) - 1));
            pos += l as usize;
        }
    }

    #[test]
    fn put_strided_matches_bit_writer() {
        let symbols: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut table = [0u64; 256];
        for (s, e) in table.iter_mut().enumerate() {
            let len = 1 + (s as u64 * 13) % 24;
            *e = ((s as u64 * 0x9e37) & ((1 << len) - 1)) | len << 32;
        }
        for (start, step) in [(0, 1), (0, 8), (3, 8), (31, 32), (4999, 1), (6000, 3)] {
            let mut w = BitWriter::with_capacity_bits(symbols.len() * 24);
            for &s in symbols.iter().skip(start).step_by(step) {
                let e = table[usize::from(s)];
                w.put(e as u32, (e >> 32) as u32);
            }
            let mut out = vec![0xaa];
            assert!(put_strided(&mut out, &symbols, start, step, &table));
            assert_eq!(&out[1..], &w.finish()[..], "{start} {step}");
        }
        table[usize::from(symbols[2])] = 0;
        assert!(!put_strided(&mut Vec::new(), &symbols, 0, 1, &table));
    }

    /// Every kernel's `put_lanes` writes the reference's bytes (one `put_strided` per lane), for
    /// code lengths on both sides of each packer variant's limits, lane counts the packer takes
    /// and those it leaves to the reference, and lengths around its 128-byte blocks.
    #[test]
    fn put_lanes_matches_reference_on_every_kernel() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut kernels = Kernel::available();
        kernels.push(Kernel::Auto);
        for max_len in [1u64, 5, 12, 14, 15, 16, 17, 24] {
            let mut table = [0u64; 256];
            for (s, e) in table.iter_mut().enumerate() {
                let len = if s == 7 { max_len } else { 1 + next() % max_len };
                *e = (next() & ((1 << len) - 1)) | len << 32;
            }
            let symbols: Vec<u8> = (0..5000).map(|_| (next() % 97) as u8 ^ ((next() % 2) as u8 * 0x80)).collect();
            for n_lanes in [1usize, 3, 8, 16, 24, 32] {
                for n in [0usize, 1, 127, 128, 129, 1000, 4099] {
                    let mut reference = vec![0x55];
                    let mut lens = Vec::new();
                    for lane in 0..n_lanes {
                        let at = reference.len();
                        assert!(put_strided(&mut reference, &symbols[..n], lane, n_lanes, &table));
                        lens.push((reference.len() - at) as u32);
                    }
                    for &kernel in &kernels {
                        let mut out = vec![0x55];
                        let mut got = [0u32; 32];
                        assert!(put_lanes(kernel, &mut out, &symbols[..n], n_lanes, &table, &mut got));
                        let what = format!("{kernel:?} max_len={max_len} lanes={n_lanes} n={n}");
                        assert_eq!(out, reference, "{what}");
                        assert_eq!(&got[..n_lanes], &lens[..], "{what}");
                    }
                }
            }
            // A symbol without a code fails on every kernel, wherever it sits.
            for at in [0usize, 200, 4990] {
                let mut holes = table;
                holes[usize::from(symbols[at])] = 0;
                for &kernel in &kernels {
                    assert!(!put_lanes(kernel, &mut Vec::new(), &symbols, 32, &holes, &mut [0; 32]), "{kernel:?} {at}");
                }
            }
        }
    }

    #[test]
    fn peek_past_end_is_zero() {
        assert_eq!(peek_bits_checked(&[0xff], 8), 0);
        assert_eq!(peek_bits_checked(&[], 1000), 0);
        assert_eq!(peek_bits_checked(&[0xf0], 4), 0x0f);
    }
}
