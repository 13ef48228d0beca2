//! Quad Length Codes (Agrawal et al., arXiv 2602.17849) and their 2-area "Dual Length" form.
//!
//! Symbols are ranked by frequency. A `p`-bit prefix (p = 3 for QLC, 1 for DLC) selects one of
//! 2^p *areas*; area i holds 2^k_i consecutive ranks and its codes are `prefix ‖ index(k_i)`.
//! On the wire (LSB-first) the prefix occupies the low `p` bits, the index the next `k_i` bits.
//! Fit: the non-decreasing widths k_0 ≤ … ≤ k_{2^p−1} ≤ 8 with Σ 2^k_i ≥ 256 that minimise
//! the expected length, found by exhaustive search (12,870 candidates for p = 3).
//!
//! Serialised table: `[p: u8][k_i: u8; 2^p][rank → symbol: u8; 256]`.

use super::{EncodeTable, SimdTables, SymbolDecoder};
use crate::error::{Error, Result};
use crate::histogram::{ranked_symbols, Histogram};

/// Prefix bits of Quad Length Codes (8 areas).
pub const QLC_PREFIX_BITS: u8 = 3;
/// Prefix bits of Dual Length Codes (2 areas).
pub const DLC_PREFIX_BITS: u8 = 1;
/// Widest area index: 2^8 ranks, the whole alphabet.
pub const MAX_AREA_WIDTH: u8 = 8;

/// A fitted area code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QlcTable {
    prefix_bits: u8,
    widths: Vec<u8>,
    rank_to_symbol: [u8; 256],
}

impl QlcTable {
    /// Fits the optimal widths for `hist` with `prefix_bits` (1 or 3) of area selector.
    pub fn fit(hist: &Histogram, prefix_bits: u8) -> Result<Self> {
        if prefix_bits != QLC_PREFIX_BITS && prefix_bits != DLC_PREFIX_BITS {
            return Err(Error::invalid(format!("area prefix must be 1 or 3 bits, got {prefix_bits}")));
        }
        let rank_to_symbol = ranked_symbols(hist);
        let mut cum = [0u64; 257];
        for r in 0..256 {
            cum[r + 1] = cum[r] + hist[usize::from(rank_to_symbol[r])];
        }
        let areas = 1usize << prefix_bits;
        let mut search = WidthSearch {
            cum: &cum,
            areas,
            prefix_bits: u64::from(prefix_bits),
            current: vec![0; areas],
            best: vec![MAX_AREA_WIDTH; areas],
            best_cost: u64::MAX,
        };
        search.run(0, 0, 0, 0);
        Ok(Self { prefix_bits, widths: search.best, rank_to_symbol })
    }

    /// Widths k_i of the areas.
    pub fn widths(&self) -> &[u8] {
        &self.widths
    }

    /// Prefix bits (3 for QLC, 1 for DLC).
    pub fn prefix_bits(&self) -> u8 {
        self.prefix_bits
    }

    /// The distinct code lengths in use for `hist` (QLC's optimum usually has four).
    pub fn distinct_lengths(&self, hist: &Histogram) -> usize {
        let enc = self.encode_table();
        let mut seen = [false; 64];
        for s in 0..256 {
            if hist[s] > 0 {
                seen[usize::from(enc.len[s])] = true;
            }
        }
        seen.iter().filter(|&&b| b).count()
    }

    pub fn encode_table(&self) -> EncodeTable {
        let mut t = EncodeTable { code: [0; 256], len: [0; 256] };
        let mut base = 0usize;
        for (area, &k) in self.widths.iter().enumerate() {
            let size = 1usize << k;
            for idx in 0..size {
                let rank = base + idx;
                if rank >= 256 {
                    break;
                }
                let sym = usize::from(self.rank_to_symbol[rank]);
                t.code[sym] = area as u32 | ((idx as u32) << self.prefix_bits);
                t.len[sym] = self.prefix_bits + k;
            }
            base += size;
        }
        t
    }

    pub fn serialize(&self, out: &mut Vec<u8>) {
        out.push(self.prefix_bits);
        out.extend_from_slice(&self.widths);
        out.extend_from_slice(&self.rank_to_symbol);
    }

    /// Parses and validates a serialised table (`expected_prefix_bits` fixes QLC vs DLC).
    pub fn parse(bytes: &[u8], expected_prefix_bits: u8) -> Result<Self> {
        let p = *bytes.first().ok_or_else(|| Error::format("empty QLC table"))?;
        if p != expected_prefix_bits {
            return Err(Error::format(format!("QLC table has {p} prefix bits, expected {expected_prefix_bits}")));
        }
        let areas = 1usize << p;
        if bytes.len() != 1 + areas + 256 {
            return Err(Error::format(format!("QLC table is {} bytes, expected {}", bytes.len(), 1 + areas + 256)));
        }
        let widths = bytes[1..1 + areas].to_vec();
        if widths.iter().any(|&k| k > MAX_AREA_WIDTH) {
            return Err(Error::format("QLC area width above 8"));
        }
        if widths.iter().map(|&k| 1usize << k).sum::<usize>() < 256 {
            return Err(Error::format("QLC areas do not cover the 256 ranks"));
        }
        let rank_to_symbol: [u8; 256] = bytes[1 + areas..].try_into().map_err(|_| Error::format("QLC rank table"))?;
        check_permutation(&rank_to_symbol)?;
        Ok(Self { prefix_bits: p, widths, rank_to_symbol })
    }

    pub fn decoder(&self) -> QlcDecoder {
        let areas = self.widths.len();
        let mut area_info = [0u32; 8];
        let mut lut = Vec::new();
        for (area, &k) in self.widths.iter().enumerate() {
            area_info[area] = lut.len() as u32 | (u32::from(k) << 16);
            for _ in 0..(1usize << k) {
                let rank = lut.len();
                // Ranks past 255 are never written by an encoder: flag them.
                lut.push(if rank < 256 { u16::from(self.rank_to_symbol[rank]) } else { INVALID_ENTRY });
            }
        }
        // Padding for the SIMD kernels' 4-byte gathers (never indexed by a decode).
        lut.push(INVALID_ENTRY);
        QlcDecoder {
            prefix_bits: u32::from(self.prefix_bits),
            prefix_mask: (areas - 1) as u64,
            max_len: u32::from(self.prefix_bits) + u32::from(self.widths.iter().copied().max().unwrap_or(0)),
            area_info,
            lut,
        }
    }
}

const INVALID_ENTRY: u16 = 0x100;

pub(crate) fn check_permutation(table: &[u8; 256]) -> Result<()> {
    let mut seen = [false; 256];
    for &s in table {
        if std::mem::replace(&mut seen[usize::from(s)], true) {
            return Err(Error::format("rank table is not a permutation of the 256 byte values"));
        }
    }
    Ok(())
}

struct WidthSearch<'a> {
    cum: &'a [u64; 257],
    areas: usize,
    prefix_bits: u64,
    current: Vec<u8>,
    best: Vec<u8>,
    best_cost: u64,
}

impl WidthSearch<'_> {
    /// Depth-first over non-decreasing widths; `base` is the first rank of area `area`.
    fn run(&mut self, area: usize, min_width: u8, base: usize, cost: u64) {
        if cost >= self.best_cost {
            return;
        }
        if base >= 256 {
            // Remaining areas are empty; any width keeps the sequence valid.
            for width in &mut self.current[area..] {
                *width = min_width;
            }
            self.best_cost = cost;
            self.best.clone_from(&self.current);
            return;
        }
        if area == self.areas {
            return;
        }
        let remaining = self.areas - area;
        for k in min_width..=MAX_AREA_WIDTH {
            // Even if every remaining area took width k... they must still reach 256 at width 8.
            if base + (remaining - 1) * 256 + (1 << k) < 256 {
                continue;
            }
            let end = (base + (1usize << k)).min(256);
            let area_cost = (self.prefix_bits + u64::from(k)) * (self.cum[end] - self.cum[base]);
            self.current[area] = k;
            self.run(area + 1, k, end, cost + area_cost);
        }
    }
}

/// Branch-free QLC/DLC symbol decoder.
#[derive(Debug, Clone)]
pub struct QlcDecoder {
    prefix_bits: u32,
    prefix_mask: u64,
    max_len: u32,
    /// Per area: lut base (low 16 bits) | width << 16.
    area_info: [u32; 8],
    lut: Vec<u16>,
}

impl SymbolDecoder for QlcDecoder {
    fn max_code_len(&self) -> u32 {
        self.max_len
    }

    #[inline(always)]
    fn decode(&self, bits: u64) -> (u8, u32, u32) {
        let info = self.area_info[(bits & self.prefix_mask) as usize];
        let width = info >> 16;
        let index = ((bits >> self.prefix_bits) as u32) & ((1u32 << width) - 1);
        let entry = self.lut[((info & 0xffff) + index) as usize];
        (entry as u8, self.prefix_bits + width, u32::from(entry >> 8))
    }

    fn simd_tables(&self) -> Option<SimdTables<'_>> {
        Some(SimdTables::Qlc {
            prefix_bits: self.prefix_bits,
            max_len: self.max_len,
            area_info: &self.area_info,
            lut: &self.lut,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::histogram;

    fn mean_len(t: &QlcTable, h: &Histogram) -> f64 {
        let n: u64 = h.iter().sum();
        t.encode_table().coded_bits(h).unwrap() as f64 / n as f64
    }

    #[test]
    fn uniform_data_costs_eleven_or_less() {
        let data: Vec<u8> = (0..=255u8).collect();
        let h = histogram(&data);
        let t = QlcTable::fit(&h, 3).unwrap();
        // 8 areas of 32 ranks: 3 + 5 = 8 bits for every symbol.
        assert_eq!(mean_len(&t, &h), 8.0);
    }

    #[test]
    fn skewed_data_beats_eight_bits() {
        let mut data = vec![0u8; 1000];
        data.extend(std::iter::repeat_n(1u8, 500));
        data.extend(0..=255u8);
        let h = histogram(&data);
        let t = QlcTable::fit(&h, 3).unwrap();
        assert!(mean_len(&t, &h) < 4.0);
        let widths = t.widths();
        assert!(widths.windows(2).all(|w| w[0] <= w[1]));
        assert!(widths.iter().map(|&k| 1usize << k).sum::<usize>() >= 256);
    }

    #[test]
    fn exhaustive_search_matches_brute_force() {
        // Brute force over all non-decreasing 8-tuples for a random-ish histogram.
        let mut h = [0u64; 256];
        for (s, c) in h.iter_mut().enumerate() {
            *c = ((s as u64 * 2654435761) % 1000) * ((s % 7) as u64 + 1);
        }
        let t = QlcTable::fit(&h, 3).unwrap();
        let best = t.encode_table().coded_bits(&h).unwrap();
        let ranks = ranked_symbols(&h);
        let mut brute = u64::MAX;
        let mut ks = [0u8; 8];
        fn rec(i: usize, min: u8, ks: &mut [u8; 8], h: &Histogram, ranks: &[u8; 256], brute: &mut u64) {
            if i == 8 {
                if ks.iter().map(|&k| 1usize << k).sum::<usize>() < 256 {
                    return;
                }
                let mut base = 0usize;
                let mut cost = 0u64;
                for &k in ks.iter() {
                    for r in base..(base + (1 << k)).min(256) {
                        cost += (3 + u64::from(k)) * h[usize::from(ranks[r])];
                    }
                    base += 1 << k;
                }
                *brute = (*brute).min(cost);
                return;
            }
            for k in min..=8 {
                ks[i] = k;
                rec(i + 1, k, ks, h, ranks, brute);
            }
        }
        rec(0, 0, &mut ks, &h, &ranks, &mut brute);
        assert_eq!(best, brute);
    }

    #[test]
    fn table_round_trips_and_rejects_garbage() {
        let h = histogram(b"hello world, hello tensors");
        for p in [1, 3] {
            let t = QlcTable::fit(&h, p).unwrap();
            let mut bytes = Vec::new();
            t.serialize(&mut bytes);
            assert_eq!(QlcTable::parse(&bytes, p).unwrap(), t);
            let mut bad = bytes.clone();
            bad[1] = 9;
            assert!(QlcTable::parse(&bad, p).is_err());
            let mut dup = bytes.clone();
            let last = dup.len() - 1;
            dup[last] = dup[last - 1];
            assert!(QlcTable::parse(&dup, p).is_err());
            assert!(QlcTable::parse(&bytes[..bytes.len() - 1], p).is_err());
        }
        assert!(QlcTable::fit(&h, 2).is_err());
    }

    #[test]
    fn decoder_inverts_encoder() {
        let h = histogram(b"abracadabra alakazam");
        for p in [1, 3] {
            let t = QlcTable::fit(&h, p).unwrap();
            let enc = t.encode_table();
            let dec = t.decoder();
            for s in 0..256usize {
                let (sym, len, bad) = dec.decode(u64::from(enc.code[s]) | (0xdead << enc.len[s]));
                assert_eq!((sym as usize, len, bad), (s, u32::from(enc.len[s]), 0));
            }
        }
    }
}
