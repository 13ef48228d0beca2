//! What each codec would achieve on some bytes, without encoding them.

use crate::histogram::{entropy_bits, Histogram};
use crate::stream::{CodeTable, Codec};

/// Mean code length of one codec on a histogram.
#[derive(Debug, Clone)]
pub struct CodecStats {
    pub codec: Codec,
    /// Bits per symbol of the code alone (tables and chunk headers excluded).
    pub mean_code_len: f64,
    /// (8 − mean length) / 8.
    pub saving: f64,
    /// Free-form parameters (QLC widths, Exp-Golomb order, Huffman max length).
    pub params: String,
    /// Bytes of the serialised code table (stream version 2).
    pub table_bytes: usize,
}

/// Entropy and every codec's mean code length.
#[derive(Debug, Clone)]
pub struct Stats {
    pub symbols: u64,
    pub entropy_bits: f64,
    pub codecs: Vec<CodecStats>,
}

pub fn stats(hist: &Histogram) -> Stats {
    let codecs = Codec::ALL
        .into_iter()
        .filter(|&c| c != Codec::Raw)
        .filter_map(|codec| {
            let table = CodeTable::fit(codec, hist).ok()?;
            let mean = table.mean_code_len(hist);
            let params = match &table {
                CodeTable::Qlc(t) | CodeTable::Dlc(t) => {
                    format!("widths={:?} distinct_lengths={}", t.widths(), t.distinct_lengths(hist))
                }
                CodeTable::Huffman(t) => format!("max_len={}", t.lengths().iter().max().unwrap_or(&0)),
                CodeTable::ExpGolomb(t) | CodeTable::ExpGolombRank(t) => format!("k={}", t.order()),
                CodeTable::Raw => String::new(),
            };
            let mut table_bytes = Vec::new();
            table.serialize(&mut table_bytes);
            let table_bytes = table_bytes.len();
            Some(CodecStats { codec, mean_code_len: mean, saving: (8.0 - mean) / 8.0, params, table_bytes })
        })
        .collect();
    Stats { symbols: hist.iter().sum(), entropy_bits: entropy_bits(hist), codecs }
}
