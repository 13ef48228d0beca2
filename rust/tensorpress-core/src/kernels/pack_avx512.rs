//! Lane-parallel bit packing with AVX-512 VBMI: the encoder's counterpart of the SIMD decode
//! kernels, selected at run time ([`crate::bits::put_lanes`]); [`crate::bits::put_strided`]
//! stays the reference and produces the same bytes (differential tests enforce it).
//!
//! Eight lanes share one zmm register of u64 accumulators (8, 16 or 32 lanes: 1, 2 or 4
//! registers). Per 128 input bytes: each 64-byte half is looked up in the code-length and
//! code-byte tables with two `vpermi2b` and a blend per table (no gathers); a masked `vpermb`
//! then spreads 8 consecutive symbols — 8 consecutive lanes of one row — into u64 slots. `K`
//! rows of each lane are merged with variable shifts (4 codes when every code is ≤ 14 bits,
//! else 2), added to the accumulators, and every lane's 8-byte window is stored with one
//! scatter into that lane's own region of a scratch buffer. Whole bytes advance the lane's
//! position, as in the scalar writer, so each lane's bytes are exactly the reference's.

use std::arch::x86_64::*;

/// Input bytes per step: 16 vectors of 8 symbols.
pub const BLOCK: usize = 128;
/// Longest code the packer accepts (three code bytes, `K` = 2 keeps 7 + 2·24 < 64 bits).
pub const MAX_CODE_LEN: u32 = 24;

/// Whether this CPU runs the packer.
pub fn supported() -> bool {
    super::avx512::supported()
}

/// The encode table split into four byte tables, one `vpermi2b` pair each.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct ByteTables {
    /// Code length (0: the symbol has no code).
    pub len: [u8; 256],
    /// Code bits 0–7, 8–15 and 16–23.
    pub code: [[u8; 256]; 3],
}

impl ByteTables {
    /// Splits `code | len << 32` entries (len ≤ [`MAX_CODE_LEN`]).
    pub fn new(table: &[u64; 256]) -> Self {
        let mut t = ByteTables { len: [0; 256], code: [[0; 256]; 3] };
        for (s, &e) in table.iter().enumerate() {
            t.len[s] = (e >> 32) as u8;
            for (b, bytes) in t.code.iter_mut().enumerate() {
                bytes[s] = (e >> (8 * b)) as u8;
            }
        }
        t
    }
}

/// Where each lane stands after the SIMD blocks: accumulator, pending bits (< 8) and bytes
/// written to its region.
#[derive(Debug, Clone, Copy)]
pub struct LaneState {
    pub acc: [u64; 32],
    pub bits: [u64; 32],
    pub pos: [u64; 32],
}

/// `vpermb` indices spreading symbols 8j..8j+8 of a 64-byte vector into u64 slots: byte 0 of
/// slot i takes byte 8j+i of the first table source, byte 1 the same byte of the second
/// (index + 64), byte 2 again the first (read from the third code table).
const fn spread_indices() -> [[u8; 64]; 8] {
    let mut idx = [[0u8; 64]; 8];
    let mut j = 0;
    while j < 8 {
        let mut i = 0;
        while i < 8 {
            let src = (8 * j + i) as u8;
            idx[j][8 * i] = src;
            idx[j][8 * i + 1] = src + 64;
            idx[j][8 * i + 2] = src;
            i += 1;
        }
        j += 1;
    }
    idx
}

#[repr(C, align(64))]
struct Aligned([[u8; 64]; 8]);
static SPREAD: Aligned = Aligned(spread_indices());

/// Byte 0 of every u64 slot, bytes 0–1, byte 2.
const SLOT_BYTE0: u64 = 0x0101_0101_0101_0101;
const SLOT_BYTES01: u64 = 0x0303_0303_0303_0303;
const SLOT_BYTE2: u64 = 0x0404_0404_0404_0404;

/// Looks up the 64 bytes of `s` in a 256-entry byte table held in four registers.
macro_rules! lookup {
    ($t:expr, $s:expr, $high:expr) => {
        _mm512_mask_blend_epi8(
            $high,
            _mm512_permutex2var_epi8($t[0], $s, $t[1]),
            _mm512_permutex2var_epi8($t[2], $s, $t[3]),
        )
    };
}

/// Packs the first `blocks` · [`BLOCK`] symbols of `symbols` into `G` · 8 lanes (symbol i in
/// lane i mod 8G), lane l writing from `dst + l · region`. Returns the lane states and whether
/// every symbol had a code.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VBMI; `blocks · BLOCK ≤ symbols.len()`; every lane
/// region must hold `blocks · BLOCK / (8G) · max_len / 8 + 8` bytes, where max_len bounds the
/// table's code lengths; `K · max_len + 7 < 64`; `WIDE` must be set if some code is longer
/// than 16 bits; `G · K` divides 16.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub unsafe fn pack<const G: usize, const K: usize, const WIDE: bool>(
    symbols: &[u8],
    blocks: usize,
    tables: &ByteTables,
    dst: *mut u8,
    region: usize,
) -> (LaneState, bool) {
    let load4 = |t: &[u8; 256]| {
        // SAFETY: 64-byte reads at offsets 0..=192 of a 256-byte table.
        [0, 64, 128, 192].map(|at| unsafe { _mm512_loadu_si512(t.as_ptr().add(at).cast()) })
    };
    let len_t = load4(&tables.len);
    let c0_t = load4(&tables.code[0]);
    let c1_t = load4(&tables.code[1]);
    let c2_t = load4(&tables.code[2]);
    // SAFETY: aligned 64-byte reads of the rows of a 64-byte-aligned 8 × 64 table.
    let spread: [__m512i; 8] = std::array::from_fn(|j| unsafe { _mm512_load_si512(SPREAD.0[j].as_ptr().cast()) });
    let seven = _mm512_set1_epi64(7);
    let base: [__m512i; G] = std::array::from_fn(|g| {
        let r = region as i64;
        let l = 8 * g as i64;
        _mm512_setr_epi64(
            l * r,
            (l + 1) * r,
            (l + 2) * r,
            (l + 3) * r,
            (l + 4) * r,
            (l + 5) * r,
            (l + 6) * r,
            (l + 7) * r,
        )
    });
    let mut acc = [_mm512_setzero_si512(); G];
    let mut bits = [_mm512_setzero_si512(); G];
    let mut pos = [_mm512_setzero_si512(); G];
    let mut missing: u64 = 0;
    for b in 0..blocks {
        // Lookups of both halves: lengths and code bytes per symbol position.
        let mut lens = [_mm512_setzero_si512(); 2];
        let mut lo = [_mm512_setzero_si512(); 2];
        let mut mid = [_mm512_setzero_si512(); 2];
        let mut top = [_mm512_setzero_si512(); 2];
        for h in 0..2 {
            // SAFETY: b < blocks, so the 64 bytes lie within blocks · BLOCK ≤ symbols.len().
            let s = unsafe { _mm512_loadu_si512(symbols.as_ptr().add(b * BLOCK + 64 * h).cast()) };
            let high = _mm512_movepi8_mask(s);
            lens[h] = lookup!(len_t, s, high);
            missing |= _mm512_testn_epi8_mask(lens[h], lens[h]);
            lo[h] = lookup!(c0_t, s, high);
            mid[h] = lookup!(c1_t, s, high);
            if WIDE {
                top[h] = lookup!(c2_t, s, high);
            }
        }
        // Vector v = 8h + j holds row v / G of lane group v % G.
        for g in 0..G {
            for f in 0..16 / (G * K) {
                let mut merged = _mm512_setzero_si512();
                let mut merged_len = _mm512_setzero_si512();
                for k in 0..K {
                    let v = g + G * (f * K + k);
                    let (h, j) = (v / 8, v % 8);
                    let mut code = _mm512_maskz_permutex2var_epi8(SLOT_BYTES01, lo[h], spread[j], mid[h]);
                    if WIDE {
                        code = _mm512_or_si512(code, _mm512_maskz_permutexvar_epi8(SLOT_BYTE2, spread[j], top[h]));
                    }
                    let len = _mm512_maskz_permutexvar_epi8(SLOT_BYTE0, spread[j], lens[h]);
                    merged = _mm512_or_si512(merged, _mm512_sllv_epi64(code, merged_len));
                    merged_len = _mm512_add_epi64(merged_len, len);
                }
                acc[g] = _mm512_or_si512(acc[g], _mm512_sllv_epi64(merged, bits[g]));
                bits[g] = _mm512_add_epi64(bits[g], merged_len);
                // SAFETY: lane l's window [pos, pos + 8) lies inside its region (see above).
                unsafe { _mm512_i64scatter_epi64::<1>(dst.cast(), _mm512_add_epi64(base[g], pos[g]), acc[g]) };
                let whole = _mm512_srli_epi64::<3>(bits[g]);
                pos[g] = _mm512_add_epi64(pos[g], whole);
                acc[g] = _mm512_srlv_epi64(acc[g], _mm512_slli_epi64::<3>(whole));
                bits[g] = _mm512_and_si512(bits[g], seven);
            }
        }
    }
    let mut state = LaneState { acc: [0; 32], bits: [0; 32], pos: [0; 32] };
    for g in 0..G {
        // SAFETY: 8 u64 stores inside 32-entry arrays (g < G ≤ 4).
        unsafe {
            _mm512_storeu_si512(state.acc.as_mut_ptr().add(8 * g).cast(), acc[g]);
            _mm512_storeu_si512(state.bits.as_mut_ptr().add(8 * g).cast(), bits[g]);
            _mm512_storeu_si512(state.pos.as_mut_ptr().add(8 * g).cast(), pos[g]);
        }
    }
    (state, missing == 0)
}
