//! Canonical Huffman codes limited to [`MAX_HUFFMAN_LEN`] bits, so one lookup in a table of at
//! most 2^12 entries decodes a symbol (as zstd's huff0 does).
//!
//! Codes are canonical (assigned in order of (length, symbol), MSB-first) and written to the
//! wire bit-reversed, so the LSB-first reader indexes its table with the next `max_len` bits.
//! Serialised table: 128 bytes, the 4-bit code length of symbol 2i in the low nibble of byte i
//! and of symbol 2i+1 in the high nibble; 0 = symbol absent.

use super::{EncodeTable, SimdTables, SymbolDecoder};
use crate::error::{Error, Result};
use crate::histogram::Histogram;
use std::cmp::Reverse;

/// Longest code the encoder emits and the decoder accepts.
pub const MAX_HUFFMAN_LEN: u8 = 12;
/// Serialised size of a Huffman table.
pub const HUFFMAN_TABLE_BYTES: usize = 128;

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
        let present: Vec<usize> = (0..256).filter(|&s| hist[s] > 0).collect();
        let mut lengths = [0u8; 256];
        match present.len() {
            0 => {}
            1 => lengths[present[0]] = 1,
            _ => {
                let depths = huffman_depths(hist, &present);
                for (&s, &d) in present.iter().zip(&depths) {
                    lengths[s] = d.min(u32::from(max_len)) as u8;
                }
                limit_lengths(&mut lengths, hist, &present, max_len);
            }
        }
        Ok(Self { lengths })
    }

    /// Code length of each symbol (0 = absent).
    pub fn lengths(&self) -> &[u8; 256] {
        &self.lengths
    }

    /// Canonical codes, MSB-first, per symbol.
    fn canonical_codes(&self) -> [u32; 256] {
        let mut order: Vec<usize> = (0..256).filter(|&s| self.lengths[s] > 0).collect();
        order.sort_by_key(|&s| (self.lengths[s], s));
        let mut codes = [0u32; 256];
        let mut code = 0u32;
        let mut prev_len = 0u8;
        for s in order {
            let len = self.lengths[s];
            code <<= len - prev_len;
            codes[s] = code;
            code += 1;
            prev_len = len;
        }
        codes
    }

    pub fn encode_table(&self) -> EncodeTable {
        let codes = self.canonical_codes();
        let mut t = EncodeTable { code: [0; 256], len: self.lengths };
        for ((code, &len), &canonical) in t.code.iter_mut().zip(&self.lengths).zip(&codes) {
            if len > 0 {
                *code = canonical.reverse_bits() >> (32 - u32::from(len));
            }
        }
        t
    }

    pub fn serialize(&self, out: &mut Vec<u8>) {
        for pair in self.lengths.chunks_exact(2) {
            out.push(pair[0] | (pair[1] << 4));
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != HUFFMAN_TABLE_BYTES {
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
        let kraft: u32 = lengths.iter().filter(|&&l| l > 0).map(|&l| 1u32 << (MAX_HUFFMAN_LEN - l)).sum();
        if kraft > 1 << MAX_HUFFMAN_LEN {
            return Err(Error::format("Huffman code lengths violate the Kraft inequality"));
        }
        Ok(Self { lengths })
    }

    pub fn decoder(&self) -> HuffmanDecoder {
        let max_len = u32::from(self.lengths.iter().copied().max().unwrap_or(0));
        let codes = self.encode_table();
        // Entries left at 0 (length 0) are codes no encoder writes: flagged as invalid.
        // One padding entry past 2^max_len for the SIMD kernels' 4-byte gathers.
        let size = 1usize << max_len;
        let mut table = vec![0u16; size + 1];
        for s in 0..256 {
            let len = u32::from(self.lengths[s]);
            if len == 0 {
                continue;
            }
            let entry = s as u16 | ((len as u16) << 8);
            let mut idx = codes.code[s] as usize;
            while idx < size {
                table[idx] = entry;
                idx += 1 << len;
            }
        }
        HuffmanDecoder { mask: (1u64 << max_len) - 1, max_len, table }
    }
}

/// Unrestricted Huffman code lengths (tree depths) for the present symbols.
///
/// Merges the two lightest nodes, ties broken by node index (leaves 0..n in symbol order, then
/// internal nodes in creation order). Merged weights never decrease, so the internal nodes
/// queue up already sorted and two queues (sorted leaves, internal nodes in creation order)
/// yield each step's minimum: the same merges as a binary heap, without its per-pop cost.
fn huffman_depths(hist: &Histogram, present: &[usize]) -> Vec<u32> {
    let n = present.len();
    let mut leaves: Vec<(u64, usize)> = present.iter().enumerate().map(|(i, &s)| (hist[s], i)).collect();
    leaves.sort_unstable();
    let mut internal: Vec<(u64, usize)> = Vec::with_capacity(n - 1);
    let (mut next_leaf, mut next_internal) = (0, 0);
    let mut parent = vec![usize::MAX; 2 * n - 1];
    for node in n..2 * n - 1 {
        let mut pair = [(0u64, 0usize); 2];
        for taken in &mut pair {
            let leaf = leaves.get(next_leaf).copied();
            let merged = internal.get(next_internal).copied();
            *taken = match (leaf, merged) {
                (Some(l), Some(m)) if m < l => {
                    next_internal += 1;
                    m
                }
                (Some(l), _) => {
                    next_leaf += 1;
                    l
                }
                (None, Some(m)) => {
                    next_internal += 1;
                    m
                }
                // n − 1 merges of 2n − 1 nodes never run out.
                (None, None) => unreachable!("Huffman merge ran out of nodes"),
            };
        }
        parent[pair[0].1] = node;
        parent[pair[1].1] = node;
        internal.push((pair[0].0 + pair[1].0, node));
    }
    // Parents always have larger indices, so one backward pass computes depths.
    let mut depth = vec![0u32; 2 * n - 1];
    for i in (0..2 * n - 2).rev() {
        depth[i] = depth[parent[i]] + 1;
    }
    depth.truncate(n);
    depth
}

/// Restores the Kraft inequality after clamping to `max_len`, lengthening the least frequent
/// codes that can still grow, then spends any slack shortening the most frequent codes.
fn limit_lengths(lengths: &mut [u8; 256], hist: &Histogram, present: &[usize], max_len: u8) {
    let unit = |l: u8| 1u64 << (max_len - l);
    let capacity = 1u64 << max_len;
    let mut kraft: u64 = present.iter().map(|&s| unit(lengths[s])).sum();
    // Least frequent first, longest first among equals.
    let mut by_rarity: Vec<usize> = present.to_vec();
    by_rarity.sort_by_key(|&s| (hist[s], Reverse(lengths[s]), s));
    while kraft > capacity {
        // Lengthen the rare symbol with the longest code still below the limit: it frees the
        // least Kraft budget per unit of cost, which converges without overshooting much.
        // The last symbol in rarity order maximising (length, Reverse(count)) — what
        // `max_by_key` picks — found with a plain scan: this loop runs once per lengthening
        // step, and the tuple-keyed iterator chain cost more than the rest of the fit.
        let mut pick: Option<(usize, u8, u64)> = None;
        for &s in &by_rarity {
            let (len, count) = (lengths[s], hist[s]);
            let better = match pick {
                None => true,
                Some((_, best_len, best_count)) => len > best_len || (len == best_len && count <= best_count),
            };
            if len < max_len && better {
                pick = Some((s, len, count));
            }
        }
        let Some((s, _, _)) = pick else { break };
        kraft -= unit(lengths[s]) - unit(lengths[s] + 1);
        lengths[s] += 1;
    }
    // Spend slack on the most frequent symbols.
    for &s in by_rarity.iter().rev() {
        while lengths[s] > 1 && kraft + unit(lengths[s]) <= capacity {
            kraft += unit(lengths[s]);
            lengths[s] -= 1;
        }
    }
}

/// Single-lookup Huffman decoder.
#[derive(Debug, Clone)]
pub struct HuffmanDecoder {
    mask: u64,
    max_len: u32,
    /// symbol | length << 8; length 0 = invalid code.
    table: Vec<u16>,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::{entropy_bits, histogram};

    fn kraft_ok(t: &HuffmanTable) -> bool {
        t.lengths().iter().filter(|&&l| l > 0).map(|&l| 1u32 << (12 - l)).sum::<u32>() <= 4096
    }

    /// The heap formulation the two-queue merge replaces: pop the two smallest (weight, node).
    fn heap_depths(hist: &Histogram, present: &[usize]) -> Vec<u32> {
        use std::collections::BinaryHeap;
        let n = present.len();
        let mut parent = vec![usize::MAX; 2 * n - 1];
        let mut heap: BinaryHeap<Reverse<(u64, usize)>> =
            present.iter().enumerate().map(|(i, &s)| Reverse((hist[s], i))).collect();
        let mut next = n;
        while heap.len() > 1 {
            let Reverse((w1, a)) = heap.pop().unwrap();
            let Reverse((w2, b)) = heap.pop().unwrap();
            parent[a] = next;
            parent[b] = next;
            heap.push(Reverse((w1 + w2, next)));
            next += 1;
        }
        let mut depth = vec![0u32; 2 * n - 1];
        for i in (0..2 * n - 2).rev() {
            depth[i] = depth[parent[i]] + 1;
        }
        depth.truncate(n);
        depth
    }

    #[test]
    fn two_queue_depths_equal_heap_depths() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for case in 0..2000 {
            let mut h = [0u64; 256];
            let symbols = 2 + case % 255;
            // Few distinct weights make ties (and tie-breaking) the common case.
            let spread = [2u64, 5, 40, 1 << 20][case % 4];
            for c in h.iter_mut().take(symbols) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *c = 1 + x % spread;
            }
            if case % 3 == 0 {
                h.swap(0, symbols / 2);
                h[symbols / 3] = 0;
            }
            let present: Vec<usize> = (0..256).filter(|&s| h[s] > 0).collect();
            if present.len() >= 2 {
                assert_eq!(huffman_depths(&h, &present), heap_depths(&h, &present), "case {case}");
            }
        }
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
    }
}
