//! Exp-Golomb codes of order k, on byte values or on frequency ranks.
//!
//! Value v is coded as x = v + 2^k with N = bit_length(x): z = N − k − 1 zero bits, a one bit,
//! then the low N − 1 bits of x, all LSB-first. Code length 2z + k + 1 ≤ 17 for bytes.
//! With ranks, v is the symbol's frequency rank, so the code adapts to the distribution.
//!
//! Serialised table: `[k: u8]` (raw values) or `[k: u8][rank → symbol: u8; 256]` (ranks).

use super::qlc::check_permutation;
use super::{EncodeTable, SimdTables, SymbolDecoder};
use crate::error::{Error, Result};
use crate::histogram::{ranked_symbols, Histogram};

/// Largest order the encoder considers (k = 8 is a fixed 9-bit code).
pub const MAX_EXP_GOLOMB_ORDER: u8 = 8;

/// A fitted Exp-Golomb code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpGolombTable {
    order: u8,
    /// `None` codes byte values directly; `Some` codes frequency ranks.
    rank_to_symbol: Option<[u8; 256]>,
}

/// Code length of value `v` at order `k`.
pub fn code_len(v: u32, k: u8) -> u32 {
    let x = v + (1 << k);
    let n = 32 - x.leading_zeros();
    2 * n - u32::from(k) - 1
}

impl ExpGolombTable {
    /// Picks the order minimising the coded size of `hist`.
    pub fn fit(hist: &Histogram, by_rank: bool) -> Self {
        let rank_to_symbol = by_rank.then(|| ranked_symbols(hist));
        let value_of = |t: &Self| t.symbol_values();
        let mut best = Self { order: 0, rank_to_symbol };
        let mut best_bits = u64::MAX;
        for order in 0..=MAX_EXP_GOLOMB_ORDER {
            let candidate = Self { order, rank_to_symbol };
            let values = value_of(&candidate);
            let bits: u64 = (0..256).map(|s| hist[s] * u64::from(code_len(u32::from(values[s]), order))).sum();
            if bits < best_bits {
                best_bits = bits;
                best = candidate;
            }
        }
        best
    }

    /// The order k.
    pub fn order(&self) -> u8 {
        self.order
    }

    /// The value coded for each symbol (itself, or its rank).
    fn symbol_values(&self) -> [u8; 256] {
        let mut values = [0u8; 256];
        for (v, out) in values.iter_mut().enumerate() {
            *out = v as u8;
        }
        if let Some(ranks) = &self.rank_to_symbol {
            for (rank, &s) in ranks.iter().enumerate() {
                values[usize::from(s)] = rank as u8;
            }
        }
        values
    }

    pub fn encode_table(&self) -> EncodeTable {
        let values = self.symbol_values();
        let k = u32::from(self.order);
        let mut t = EncodeTable { code: [0; 256], len: [0; 256] };
        for (s, &value) in values.iter().enumerate() {
            let x = u32::from(value) + (1 << k);
            let n = 32 - x.leading_zeros();
            let zeros = n - k - 1;
            let rest = x - (1 << (n - 1));
            t.code[s] = ((rest << 1) | 1) << zeros;
            t.len[s] = (2 * zeros + k + 1) as u8;
        }
        t
    }

    pub fn serialize(&self, out: &mut Vec<u8>) {
        out.push(self.order);
        if let Some(ranks) = &self.rank_to_symbol {
            out.extend_from_slice(ranks);
        }
    }

    pub fn parse(bytes: &[u8], by_rank: bool) -> Result<Self> {
        let expected = if by_rank { 257 } else { 1 };
        if bytes.len() != expected {
            return Err(Error::format(format!("Exp-Golomb table is {} bytes, expected {expected}", bytes.len())));
        }
        let order = bytes[0];
        if order > MAX_EXP_GOLOMB_ORDER {
            return Err(Error::format(format!("Exp-Golomb order {order} above 8")));
        }
        let rank_to_symbol = if by_rank {
            let ranks: [u8; 256] = bytes[1..].try_into().map_err(|_| Error::format("Exp-Golomb rank table"))?;
            check_permutation(&ranks)?;
            Some(ranks)
        } else {
            None
        };
        Ok(Self { order, rank_to_symbol })
    }

    pub fn decoder(&self) -> ExpGolombDecoder {
        let mut lut = [0u8; 256];
        match &self.rank_to_symbol {
            Some(ranks) => lut = *ranks,
            None => {
                for (v, out) in lut.iter_mut().enumerate() {
                    *out = v as u8;
                }
            }
        }
        let k = u32::from(self.order);
        let max_len = (0..256).map(|v| code_len(v, self.order)).max().unwrap_or(1);
        let lut32 = lut.map(u32::from);
        ExpGolombDecoder { order: k, max_len, lut, lut32 }
    }
}

/// Branch-free Exp-Golomb decoder (count trailing zeros, then one masked read).
#[derive(Debug, Clone)]
pub struct ExpGolombDecoder {
    order: u32,
    max_len: u32,
    lut: [u8; 256],
    /// `lut` widened for the SIMD kernels' 32-bit gathers.
    lut32: [u32; 256],
}

/// Longest zero run of a valid byte code; longer runs are clamped so shifts stay in range.
const MAX_ZERO_RUN: u32 = 15;

impl SymbolDecoder for ExpGolombDecoder {
    fn max_code_len(&self) -> u32 {
        self.max_len
    }

    #[inline(always)]
    fn decode(&self, bits: u64) -> (u8, u32, u32) {
        let zeros = bits.trailing_zeros().min(MAX_ZERO_RUN);
        let width = zeros + self.order;
        let rest = ((bits >> (zeros + 1)) as u32) & ((1u32 << width) - 1);
        let value = rest + (1u32 << width) - (1u32 << self.order);
        (self.lut[(value & 0xff) as usize], 2 * zeros + self.order + 1, u32::from(value > 0xff))
    }

    fn simd_tables(&self) -> Option<SimdTables<'_>> {
        Some(SimdTables::ExpGolomb { order: self.order, max_len: self.max_len, lut: &self.lut32 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::histogram;

    #[test]
    fn lengths_match_definition() {
        assert_eq!(code_len(0, 0), 1);
        assert_eq!(code_len(1, 0), 3);
        assert_eq!(code_len(255, 0), 17);
        assert_eq!(code_len(255, 8), 9);
        assert_eq!(code_len(0, 3), 4);
    }

    #[test]
    fn every_order_decodes_every_value() {
        for by_rank in [false, true] {
            let h = histogram(b"exp golomb codes adapt to ranks");
            for order in 0..=8 {
                let mut t = ExpGolombTable::fit(&h, by_rank);
                t.order = order;
                let enc = t.encode_table();
                let dec = t.decoder();
                for s in 0..256usize {
                    let (sym, len, bad) = dec.decode(u64::from(enc.code[s]) | (0xabcd << enc.len[s]));
                    assert_eq!((sym as usize, len, bad), (s, u32::from(enc.len[s]), 0), "k={order}");
                }
            }
        }
    }

    #[test]
    fn rejects_overlong_zero_runs() {
        let t = ExpGolombTable::fit(&histogram(b"x"), false);
        assert_eq!(t.decoder().decode(0).2, 1);
        assert_eq!(t.decoder().decode(1 << 12).2, 1);
    }

    #[test]
    fn fit_prefers_ranks_on_skewed_high_symbols() {
        let data: Vec<u8> = (0..1000u32).map(|i| if i % 10 == 0 { 200 } else { 250 }).collect();
        let h = histogram(&data);
        let raw = ExpGolombTable::fit(&h, false).encode_table().coded_bits(&h).unwrap();
        let ranked = ExpGolombTable::fit(&h, true).encode_table().coded_bits(&h).unwrap();
        assert!(ranked < raw / 4);
        let mut bytes = Vec::new();
        ExpGolombTable::fit(&h, true).serialize(&mut bytes);
        assert!(ExpGolombTable::parse(&bytes, true).is_ok());
        assert!(ExpGolombTable::parse(&bytes, false).is_err());
        assert!(ExpGolombTable::parse(&[9], false).is_err());
    }
}
