//! Canonical Huffman codes limited to [`MAX_HUFFMAN_LEN`] bits, so one lookup in a table of at
//! most 2^12 entries decodes a symbol (as zstd's huff0 does).
//!
//! Codes are canonical (assigned in order of (length, symbol), MSB-first) and written to the
//! wire bit-reversed, so the LSB-first reader indexes its table with the next `max_len` bits.
//! Serialised table (stream version 2): the 256 code lengths (0 = symbol absent), each coded
//! against the previous symbol's (the first against 0) in an LSB-first bit string: `0` = same
//! length, `1 0 s` = one longer (s = 0) or shorter (s = 1), `1 1 l₀…l₃` = the length itself in
//! 4 bits; zero padding to a whole byte. Neighbouring byte values of a tensor (neighbouring
//! magnitudes of a float) have similar frequencies, so a table takes 40–60 bytes. Version 1
//! stored 128 bytes: the length of symbol 2i in the low nibble of byte i, of 2i+1 in the high.

use super::code_lengths::{huffman_depths, package_merge, Leaves};
use super::{EncodeTable, SimdTables, SymbolDecoder};
use crate::bits::BitWriter;
use crate::error::{Error, Result};
use crate::histogram::Histogram;
use std::sync::OnceLock;

/// Longest code the encoder emits and the decoder accepts.
pub const MAX_HUFFMAN_LEN: u8 = 12;
/// Serialised size of a Huffman table in stream version 1.
pub const HUFFMAN_TABLE_BYTES_V1: usize = 128;

/// Each byte with its bits in reverse order.
const REVERSED_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).reverse_bits();
        i += 1;
    }
    t
};

/// Symbols in order of (length, symbol), and where each length starts in that order.
type ByLength = ([u8; 256], [usize; MAX_HUFFMAN_LEN as usize + 2]);

/// Code lengths per symbol of a length-limited canonical Huffman code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HuffmanTable {
    lengths: [u8; 256],
}

impl HuffmanTable {
    /// Fits code lengths to `hist`, limited to `max_len` bits (1..=12).
    pub fn fit(hist: &Histogram, max_len: u8) -> Result<Self> {
        if !(1..=MAX_HUFFMAN_LEN).contains(&max_len) {
            return Err(Error::invalid(format!("Huffman length limit must be 1..=12, got {max_len}")));
        }
        let leaves = Leaves::of(hist);
        let n = leaves.len();
        if n > 1 << max_len {
            return Err(Error::invalid(format!("{n} symbols do not fit in codes of at most {max_len} bits")));
        }
        let mut lengths = [0u8; 256];
        match n {
            0 => {}
            1 => lengths[usize::from(leaves.symbols()[0])] = 1,
            _ => {
                let depths = huffman_depths(leaves.counts());
                if depths[..n].iter().all(|&d| d <= u32::from(max_len)) {
                    for (&s, &d) in leaves.symbols().iter().zip(&depths) {
                        lengths[usize::from(s)] = d as u8;
                    }
                } else {
                    // The limit binds: the optimal limited code, not a repaired Huffman one.
                    let limited = package_merge(leaves.counts(), max_len);
                    for (&s, &l) in leaves.symbols().iter().zip(&limited) {
                        lengths[usize::from(s)] = l;
                    }
                }
            }
        }
        Ok(Self { lengths })
    }

    /// Code length of each symbol (0 = absent).
    pub fn lengths(&self) -> &[u8; 256] {
        &self.lengths
    }

    /// The symbols in order of (length, symbol) — a counting sort, no allocation, since a decoder
    /// is built per own-table chunk — and where each length's symbols start in that order
    /// (length `l`: `start[l]..start[l + 1]`; absent symbols, length 0, come first).
    fn by_length(&self) -> ByLength {
        let mut start = [0usize; MAX_HUFFMAN_LEN as usize + 2];
        for &len in &self.lengths {
            start[usize::from(len) + 1] += 1;
        }
        for len in 1..start.len() {
            start[len] += start[len - 1];
        }
        let mut order = [0u8; 256];
        let mut next = start;
        for (s, &len) in self.lengths.iter().enumerate() {
            order[next[usize::from(len)]] = s as u8;
            next[usize::from(len)] += 1;
        }
        (order, start)
    }

    /// Each symbol's code as written (0 for absent symbols): canonical, i.e. increasing MSB-first
    /// values in the (length, symbol) order of [`Self::by_length`], then bit-reversed.
    fn wire_codes(&self, (order, start): &ByLength) -> [u32; 256] {
        let mut codes = [0u32; 256];
        let mut code = 0u32;
        let mut prev_len = 0;
        for len in 1..=usize::from(MAX_HUFFMAN_LEN) {
            for &s in &order[start[len]..start[len + 1]] {
                code <<= len - prev_len;
                prev_len = len;
                // Codes are at most 12 bits: two byte reversals by table (x86 has no bit-reverse
                // instruction, and a decoder is built per own-table chunk).
                let reversed = u32::from(REVERSED_BYTE[(code & 0xff) as usize]) << 8
                    | u32::from(REVERSED_BYTE[(code >> 8 & 0xff) as usize]);
                codes[usize::from(s)] = reversed >> (16 - len);
                code += 1;
            }
        }
        codes
    }

    pub fn encode_table(&self) -> EncodeTable {
        EncodeTable { code: self.wire_codes(&self.by_length()), len: self.lengths }
    }

    /// Appends the delta-coded table (module docs).
    pub fn serialize(&self, out: &mut Vec<u8>) {
        let mut bits = BitWriter::with_capacity_bits(6 * 256);
        let mut prev = 0u8;
        for &len in &self.lengths {
            match i16::from(len) - i16::from(prev) {
                0 => bits.put(0b0, 1),
                1 => bits.put(0b001, 3),
                -1 => bits.put(0b101, 3),
                _ => bits.put(0b11 | u32::from(len) << 2, 6),
            }
            prev = len;
        }
        out.extend_from_slice(&bits.finish());
    }

    /// Parses the delta-coded table of stream version 2: every length ≤ 12, the bit string used
    /// to its last byte with zero padding, the Kraft inequality.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<u8> {
            if at + n > 8 * bytes.len() {
                return Err(Error::format("Huffman table truncated"));
            }
            // The n ≤ 4 bits at `at` lie in the two bytes from `at / 8`.
            let low = u16::from(bytes[at / 8]) | u16::from(bytes.get(at / 8 + 1).copied().unwrap_or(0)) << 8;
            let v = (low >> (at % 8)) as u8 & ((1u8 << n) - 1);
            at += n;
            Ok(v)
        };
        let mut lengths = [0u8; 256];
        let mut prev = 0u8;
        for len in lengths.iter_mut() {
            *len = match take(1)? {
                0 => prev,
                _ => match take(1)? {
                    0 if take(1)? == 0 => prev + 1,
                    0 => prev.checked_sub(1).ok_or_else(|| Error::format("Huffman code length below 0"))?,
                    _ => take(4)?,
                },
            };
            if *len > MAX_HUFFMAN_LEN {
                return Err(Error::format("Huffman code length above 12"));
            }
            prev = *len;
        }
        Self::checked_padding(bytes, at)?;
        Self::checked(lengths)
    }

    /// The bit string of `bytes` ends in its last byte after `used` bits, padded with zeros.
    fn checked_padding(bytes: &[u8], used: usize) -> Result<()> {
        if used.div_ceil(8) != bytes.len() {
            return Err(Error::format(format!(
                "Huffman table is {} bytes, its lengths take {}",
                bytes.len(),
                used.div_ceil(8)
            )));
        }
        if !used.is_multiple_of(8) && bytes[used / 8] >> (used % 8) != 0 {
            return Err(Error::format("Huffman table padding bits are not zero"));
        }
        Ok(())
    }

    /// Parses the 128-byte nibble table of stream version 1.
    pub fn parse_nibbles(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != HUFFMAN_TABLE_BYTES_V1 {
            return Err(Error::format(format!("Huffman table is {} bytes, expected 128", bytes.len())));
        }
        let mut lengths = [0u8; 256];
        for (i, &b) in bytes.iter().enumerate() {
            lengths[2 * i] = b & 0x0f;
            lengths[2 * i + 1] = b >> 4;
        }
        if lengths.iter().any(|&l| l > MAX_HUFFMAN_LEN) {
            return Err(Error::format("Huffman code length above 12"));
        }
        Self::checked(lengths)
    }

    fn checked(lengths: [u8; 256]) -> Result<Self> {
        let kraft: u32 = lengths.iter().filter(|&&l| l > 0).map(|&l| 1u32 << (MAX_HUFFMAN_LEN - l)).sum();
        if kraft > 1 << MAX_HUFFMAN_LEN {
            return Err(Error::format("Huffman code lengths violate the Kraft inequality"));
        }
        Ok(Self { lengths })
    }

    pub fn decoder(&self) -> HuffmanDecoder {
        let max_len = u32::from(self.lengths.iter().copied().max().unwrap_or(0));
        let by_length = self.by_length();
        let codes = self.wire_codes(&by_length);
        // Entries left at 0 (length 0) are codes no encoder writes: flagged as invalid.
        // One padding entry past 2^max_len for the SIMD kernels' 4-byte gathers.
        let size = 1usize << max_len;
        let mut table = vec![0u16; size + 1];
        // Built by doubling, as every chunk with its own table builds one: the table for codes
        // of at most `len` bits, indexed by the next `len` window bits, is the one for `len − 1`
        // bits twice over (the new top bit does not matter to shorter codes), plus the codes of
        // exactly `len` bits at their one index each. A copy per length instead of a store per
        // entry of every short code.
        let (order, start) = &by_length;
        for len in 1..=max_len as usize {
            let half = 1usize << (len - 1);
            table.copy_within(..half, half);
            for &s in &order[start[len]..start[len + 1]] {
                table[codes[usize::from(s)] as usize] = u16::from(s) | (len as u16) << 8;
            }
        }
        // How often two codes fit in one lookup, taking 2^−length as each symbol's frequency
        // (what a Huffman code implies): Σ over length pairs with l₁ + l₂ ≤ max_len.
        let count = |len: usize| (start[len + 1] - start[len]) as f64;
        let mut pair_fit = 0.0;
        for l1 in 1..=max_len as usize {
            for l2 in 1..=max_len as usize - l1 {
                pair_fit += count(l1) * count(l2) / f64::from(1u32 << (l1 + l2));
            }
        }
        HuffmanDecoder { mask: (1u64 << max_len) - 1, max_len, table, pair_fit, pairs: OnceLock::new() }
    }
}

/// Smallest chunk (decoded bytes) worth building a decoder's pair table for: the table has
/// 2^max_len entries, built in about as long as 16 KiB take to decode.
pub const PAIR_MIN_CHUNK: usize = 64 << 10;
/// Smallest share of lookups that must decode two symbols for the pair kernel to run: where a
/// register group of 8 lanes has a lane whose pair does not fit, it pays a second lookup.
pub const PAIR_MIN_FIT: f64 = 0.95;

/// Bit 31 of a pair entry: the second symbol does not fit (or the first code is invalid).
pub const PAIR_SPLIT: u32 = 1 << 31;

/// Builds the pair table from a single-symbol table (`single[i]` = symbol | length << 8 for the
/// next `max_len` bits `i`, length 0 = invalid). Entry `i`, for window bits `i`:
/// - bits 0-7: the first symbol; bits 8-15: the second (0 when it does not fit);
/// - bits 16-23: the first code's length (0: invalid code);
/// - bits 24-31: both codes' length when the second fits in the `max_len` bits, else
///   [`PAIR_SPLIT`] | the first code's length.
pub fn pair_table(single: &[u16], max_len: u32) -> Vec<u32> {
    let size = 1usize << max_len;
    let single = &single[..size];
    let mut pairs = vec![0u32; size];
    for (i, (pair, &first)) in pairs.iter_mut().zip(single).enumerate() {
        let len1 = u32::from(first >> 8);
        // Bits past the window's first code; their top `len1` bits read as zeros, so the entry
        // there is the second code's exactly when that code has at most `max_len − len1` bits.
        let second = single[i >> len1];
        let len2 = u32::from(second >> 8);
        let fits = len1 != 0 && len2 != 0 && len1 + len2 <= max_len;
        let low = u32::from(first & 0xff) | len1 << 16;
        *pair = if fits {
            low | u32::from(second & 0xff) << 8 | (len1 + len2) << 24
        } else {
            low | PAIR_SPLIT | len1 << 24
        };
    }
    pairs
}

/// Single-lookup Huffman decoder.
#[derive(Debug)]
pub struct HuffmanDecoder {
    mask: u64,
    max_len: u32,
    /// symbol | length << 8; length 0 = invalid code.
    table: Vec<u16>,
    /// Share of lookups that would decode two symbols (see [`PAIR_MIN_FIT`]).
    pair_fit: f64,
    /// Two-symbol entries, built on first use by a chunk that pays for them.
    pairs: OnceLock<Vec<u32>>,
}

impl HuffmanDecoder {
    /// The single-symbol table: `table[bits & (2^max_len − 1)]` = symbol | length << 8.
    pub fn table(&self) -> &[u16] {
        &self.table
    }
}

impl SymbolDecoder for HuffmanDecoder {
    fn max_code_len(&self) -> u32 {
        self.max_len
    }

    #[inline(always)]
    fn decode(&self, bits: u64) -> (u8, u32, u32) {
        let entry = self.table[(bits & self.mask) as usize];
        let len = u32::from(entry >> 8);
        (entry as u8, len, u32::from(len == 0))
    }

    fn simd_tables(&self) -> Option<SimdTables<'_>> {
        Some(SimdTables::Huffman { max_len: self.max_len, table: &self.table })
    }

    fn pair_table(&self, chunk_len: usize) -> Option<&[u32]> {
        if !cfg!(target_arch = "x86_64") || chunk_len < PAIR_MIN_CHUNK || self.pair_fit < PAIR_MIN_FIT {
            return None;
        }
        Some(self.pairs.get_or_init(|| pair_table(&self.table, self.max_len)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::code_lengths::tests::{heap_depths, reference_package_merge};
    use super::*;
    use crate::histogram::{entropy_bits, histogram};

    /// xorshift64: the tests' deterministic random counts.
    fn next_random(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    fn kraft_ok(t: &HuffmanTable) -> bool {
        t.lengths().iter().filter(|&&l| l > 0).map(|&l| 1u32 << (12 - l)).sum::<u32>() <= 4096
    }

    #[test]
    fn near_entropy_on_skewed_data() {
        let mut data = Vec::new();
        for s in 0..40u8 {
            data.extend(std::iter::repeat_n(s, 1 + (40 - usize::from(s)).pow(3)));
        }
        let h = histogram(&data);
        let t = HuffmanTable::fit(&h, 12).unwrap();
        assert!(kraft_ok(&t));
        let bits = t.encode_table().coded_bits(&h).unwrap() as f64 / data.len() as f64;
        let ent = entropy_bits(&h);
        assert!(bits >= ent && bits < ent * 1.03, "{bits} vs {ent}");
    }

    fn cost(h: &Histogram, lengths: &[u8; 256]) -> u64 {
        h.iter().zip(lengths).map(|(&c, &l)| c * u64::from(l)).sum()
    }

    #[test]
    fn limited_codes_are_optimal() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for case in 0..400 {
            let mut h = [0u64; 256];
            let symbols = 2 + case % 200;
            for c in h.iter_mut().take(symbols) {
                let r = next_random(&mut x);
                // Geometric-ish counts: deep unrestricted trees, so the limit binds.
                *c = 1 + ((r % 1_000_000) >> (r % 23));
            }
            for limit in [8u8, 10, 12] {
                if symbols > 1 << limit {
                    continue;
                }
                let t = HuffmanTable::fit(&h, limit).unwrap();
                let present: Vec<usize> = (0..256).filter(|&s| h[s] > 0).collect();
                assert!(t.lengths().iter().all(|&l| l <= limit), "case {case}");
                assert!(present.iter().all(|&s| t.lengths()[s] > 0), "case {case}");
                // Complete (Kraft sum exactly 1) and as cheap as the textbook algorithm's.
                let kraft: u64 = present.iter().map(|&s| 1u64 << (12 - t.lengths()[s])).sum();
                assert_eq!(kraft, 1 << 12, "case {case} limit {limit}");
                let leaves = Leaves::of(&h);
                let textbook = reference_package_merge(leaves.counts(), limit);
                let textbook_cost: u64 = leaves.counts().iter().zip(&textbook).map(|(&c, &l)| c * u64::from(l)).sum();
                assert_eq!(cost(&h, t.lengths()), textbook_cost, "case {case}");
                // Never worse than the unrestricted Huffman code where that fits the limit.
                let depths = &heap_depths(leaves.counts());
                if depths.iter().all(|&d| d <= u32::from(limit)) {
                    let huff: u64 = leaves.counts().iter().zip(depths).map(|(&c, &d)| c * u64::from(d)).sum();
                    assert_eq!(cost(&h, t.lengths()), huff, "case {case}");
                }
            }
        }
    }

    /// The pair table is offered for short codes on large chunks only.
    #[test]
    fn pair_table_only_where_pairs_fit() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut exponents: Histogram = [0; 256];
        let mut uniform: Histogram = [0; 256];
        for _ in 0..200_000 {
            let r = next_random(&mut x);
            exponents[(118 + (r % 4096).trailing_zeros() * 2 + ((r >> 30) & 1) as u32) as usize] += 1;
            uniform[(r >> 32) as u8 as usize] += 1;
        }
        let short = HuffmanTable::fit(&exponents, MAX_HUFFMAN_LEN).unwrap().decoder();
        let expected = cfg!(target_arch = "x86_64");
        assert_eq!(short.pair_table(PAIR_MIN_CHUNK).is_some(), expected);
        assert!(short.pair_table(PAIR_MIN_CHUNK - 1).is_none());
        let long = HuffmanTable::fit(&uniform, MAX_HUFFMAN_LEN).unwrap().decoder();
        assert!(long.pair_table(1 << 20).is_none());
    }

    #[test]
    fn too_many_symbols_for_the_limit_is_an_error() {
        let all: Vec<u8> = (0..=255).collect();
        assert!(HuffmanTable::fit(&histogram(&all), 7).is_err());
        assert!(HuffmanTable::fit(&histogram(&all), 8).is_ok());
    }

    #[test]
    fn length_limit_holds_on_fibonacci_weights() {
        // Fibonacci counts force depth n-1 without a limit.
        let mut h = [0u64; 256];
        let (mut a, mut b) = (1u64, 1u64);
        for c in h.iter_mut().take(40) {
            *c = a;
            (a, b) = (b, a + b);
        }
        for limit in [8u8, 11, 12] {
            let t = HuffmanTable::fit(&h, limit).unwrap();
            assert!(t.lengths().iter().all(|&l| l <= limit));
            assert!(t.lengths()[..40].iter().all(|&l| l > 0));
            assert!(kraft_ok(&t));
        }
    }

    #[test]
    fn degenerate_alphabets() {
        assert_eq!(HuffmanTable::fit(&histogram(&[]), 12).unwrap().lengths().iter().sum::<u8>(), 0);
        let one = HuffmanTable::fit(&histogram(&[9, 9, 9]), 12).unwrap();
        assert_eq!(one.lengths()[9], 1);
        let all: Vec<u8> = (0..=255).collect();
        let t = HuffmanTable::fit(&histogram(&all), 12).unwrap();
        assert!(t.lengths().iter().all(|&l| l == 8));
    }

    #[test]
    fn decoder_inverts_encoder_and_table_round_trips() {
        let h = histogram(b"the quick brown fox jumps over the lazy dog again and again");
        let t = HuffmanTable::fit(&h, 12).unwrap();
        let mut bytes = Vec::new();
        t.serialize(&mut bytes);
        assert_eq!(HuffmanTable::parse(&bytes).unwrap(), t);
        let enc = t.encode_table();
        let dec = t.decoder();
        for s in 0..256usize {
            if enc.len[s] > 0 {
                let (sym, len, bad) = dec.decode(u64::from(enc.code[s]) | (0xfff << enc.len[s]));
                assert_eq!((sym as usize, len, bad), (s, u32::from(enc.len[s]), 0));
            }
        }
        let mut bad = bytes.clone();
        bad[0] = 0x11; // two 1-bit codes plus the rest overflow Kraft
        assert!(HuffmanTable::parse(&bad).is_err());
        assert!(HuffmanTable::parse(&[0xdd; 128]).is_err());
        // Version 1's nibble form still reads.
        let nibbles: Vec<u8> = t.lengths().chunks_exact(2).map(|p| p[0] | p[1] << 4).collect();
        assert_eq!(HuffmanTable::parse_nibbles(&nibbles).unwrap(), t);
        assert!(HuffmanTable::parse_nibbles(&[0xdd; 128]).is_err());
    }

    #[test]
    fn delta_coded_tables_are_small_and_strict() {
        let h = histogram(&(0..4096u32).map(|i| (i * i % 251) as u8).collect::<Vec<_>>());
        let t = HuffmanTable::fit(&h, 12).unwrap();
        let mut bytes = Vec::new();
        t.serialize(&mut bytes);
        assert!(bytes.len() < 128, "{} bytes", bytes.len());
        assert_eq!(HuffmanTable::parse(&bytes).unwrap(), t);
        let err = |b: &[u8]| HuffmanTable::parse(b).unwrap_err().message().to_string();
        assert!(err(&bytes[..bytes.len() - 1]).contains("truncated"));
        assert!(err(&[bytes.as_slice(), &[0]].concat()).contains("its lengths take"));
        // 256 × "same as before" (all absent) is 32 zero bytes; a set padding bit is refused.
        assert_eq!(HuffmanTable::parse(&[0; 32]).unwrap().lengths(), &[0; 256]);
        // First symbol: literal 15 (1 1 1111) is above the limit; "one shorter" than 0 is below 0.
        assert!(err(&[0b0011_1111, 0, 0, 0]).contains("above 12"));
        assert!(err(&[0b101]).contains("below 0"));
        let mut empty = Vec::new();
        HuffmanTable::fit(&[0; 256], 12).unwrap().serialize(&mut empty);
        assert_eq!(empty, vec![0; 32]);
    }
}
