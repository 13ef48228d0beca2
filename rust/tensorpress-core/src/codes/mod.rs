//! The three code families. Each fits a table from a histogram, produces an LSB-first
//! per-symbol encode table, serialises its table into the stream header, and builds a
//! [`SymbolDecoder`] the kernels are generic over.

mod code_lengths;
pub mod exp_golomb;
pub mod huffman;
pub mod qlc;

use crate::histogram::Histogram;

/// Per-symbol codes, LSB-first (the first bit on the wire is bit 0 of `code`).
/// `len == 0` marks a symbol the table cannot encode.
#[derive(Debug, Clone)]
pub struct EncodeTable {
    pub code: [u32; 256],
    pub len: [u8; 256],
}

impl EncodeTable {
    /// Longest code the table uses.
    pub fn max_len(&self) -> u32 {
        self.len.iter().copied().max().map_or(0, u32::from)
    }

    /// Total bits needed to code data with histogram `hist`, or `None` if some present
    /// symbol has no code.
    pub fn coded_bits(&self, hist: &Histogram) -> Option<u64> {
        let mut bits = 0u64;
        for (s, &count) in hist.iter().enumerate() {
            if count > 0 {
                if self.len[s] == 0 {
                    return None;
                }
                bits += count * u64::from(self.len[s]);
            }
        }
        Some(bits)
    }
}

/// Decodes one symbol from the low bits of a 64-bit window. Implementations are branch-free:
/// instead of failing they report an invalid code through the third result (non-zero), which
/// the kernels OR together and check once per lane.
pub trait SymbolDecoder: Sync {
    /// Longest code in bits (bounds how many symbols one 56-bit refill can decode).
    fn max_code_len(&self) -> u32;
    /// Returns (symbol, code length, invalid flag).
    fn decode(&self, bits: u64) -> (u8, u32, u32);
    /// The decoder's tables as the SIMD kernels read them (`None`: no SIMD kernel).
    fn simd_tables(&self) -> Option<SimdTables<'_>> {
        None
    }
    /// Huffman only: the two-symbol table (`kernels::huffman_pairs`) where a chunk of
    /// `chunk_len` decoded bytes is worth it.
    fn pair_table(&self, _chunk_len: usize) -> Option<&[u32]> {
        None
    }
}

/// Read-only views of a decoder's tables for the SIMD kernels, which gather 32-bit words from
/// them: every `u16` table has at least one padding entry past its last index, so a 4-byte
/// read at any valid index stays inside the table.
#[derive(Debug, Clone, Copy)]
pub enum SimdTables<'a> {
    /// Area selector of `prefix_bits` bits; `area_info[a]` = lut base | width << 16 (areas past
    /// 2^prefix_bits unused); `lut[base + index]` = symbol, or ≥ 0x100 for an invalid rank.
    Qlc { prefix_bits: u32, max_len: u32, area_info: &'a [u32; 8], lut: &'a [u16] },
    /// `table[bits & (2^max_len − 1)]` = symbol | length << 8 (length 0: invalid code);
    /// `table.len() > 2^max_len`.
    Huffman { max_len: u32, table: &'a [u16] },
    /// Order k; `lut[value]` = symbol.
    ExpGolomb { order: u32, max_len: u32, lut: &'a [u32; 256] },
}
