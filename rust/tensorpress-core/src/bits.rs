//! LSB-first bit I/O. A code of `len` bits is stored starting at the lowest unused bit of the
//! lowest unfinished byte; readers peek 64 bits little-endian and mask.

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

    #[test]
    fn peek_past_end_is_zero() {
        assert_eq!(peek_bits_checked(&[0xff], 8), 0);
        assert_eq!(peek_bits_checked(&[], 1000), 0);
        assert_eq!(peek_bits_checked(&[0xf0], 4), 0x0f);
    }
}
