//! The chunked stream: the bitstream contract every decoder honours (normative text in
//! docs/format.md, "Entropy stream").
//!
//! ```text
//! offset  size  field
//! 0       4     magic  89 54 50 45  ("\x89TPE")
//! 4       1     version (1)
//! 5       1     codec id (0 raw, 1 QLC, 2 Huffman, 3 Exp-Golomb, 4 Exp-Golomb on ranks, 5 DLC)
//! 6       1     lanes L (1..=32)
//! 7       1     flags (reserved, must be 0)
//! 8       8     decoded length n (u64 LE)
//! 16      4     chunk size c (decoded bytes per chunk but the last; u32 LE)
//! 20      4     table length t (u32 LE)
//! 24      t     code table (codec-specific)
//! 24+t    8·m   chunk index, m = ceil(n / c): (stored length u32, CRC32C of the stored chunk u32)
//! ...     4     CRC32C of every header byte before it
//! ...           the m chunks, back to back; the stream ends exactly after the last one
//! ```
//! A chunk starts with a mode byte: 0 = raw bytes follow; 2 = one byte follows, repeated;
//! 1 = coded with the stream's table: L lane lengths (u32 LE) then the L lane bitstreams;
//! 3 = coded with the chunk's own table: table length t' (u16 LE), t' table bytes of the stream's
//! codec, then as mode 1. Symbol i of the chunk is in lane i mod L. Every lane is consumed to its
//! last byte (padding bits are zero).

use crate::bits::{put_lanes, BitWriter, MAX_STRIDED_CODE_LEN};
use crate::codes::exp_golomb::ExpGolombTable;
use crate::codes::huffman::{HuffmanTable, MAX_HUFFMAN_LEN};
use crate::codes::qlc::{QlcTable, DLC_PREFIX_BITS, QLC_PREFIX_BITS};
use crate::codes::{EncodeTable, SymbolDecoder};
use crate::error::{Error, Result};
use crate::histogram::{histogram, merge, Histogram};
use crate::kernels::{decode_lanes, Kernel};
use crate::threads::{map_pieces, try_for_each_piece, validate_threads, workers};

/// Stream magic; the leading 0x89 byte keeps it from reading as text.
pub const STREAM_MAGIC: [u8; 4] = [0x89, b'T', b'P', b'E'];
/// The stream version this code writes and reads.
pub const STREAM_VERSION: u8 = 1;
/// Fixed part of the header before the table.
pub const FIXED_HEADER_BYTES: usize = 24;
/// Most lanes a chunk may have.
pub const MAX_LANES: usize = 32;
/// Smallest and largest chunk sizes (decoded bytes).
pub const MIN_CHUNK_SIZE: usize = 1 << 10;
pub const MAX_CHUNK_SIZE: usize = 1 << 24;
/// Default chunk size: big enough to amortise the table-free chunk header, small enough to
/// spread over threads and to keep random access cheap.
pub const DEFAULT_CHUNK_SIZE: usize = 1 << 18;
/// Default lane count: enough independent chains to hide decode latency (32 lanes run four
/// AVX2 register groups, which overlap the window gathers; measured in benches/RESULTS.md §2).
pub const DEFAULT_LANES: usize = 32;
/// Largest code table any codec serialises.
pub const MAX_TABLE_BYTES: usize = 1 + 8 + 256;
/// Bytes per chunk index entry.
pub const CHUNK_INDEX_ENTRY_BYTES: usize = 8;
/// Largest decoded length a stream may declare (1 TiB): refuses absurd allocations outright.
pub const MAX_DECODED_LEN: u64 = 1 << 40;

const MODE_RAW: u8 = 0;
const MODE_CODED: u8 = 1;
const MODE_CONSTANT: u8 = 2;
const MODE_OWN_TABLE: u8 = 3;
/// A chunk gets its own table only if that saves at least this many thousandths of its coded
/// bits (table included): the decoder then builds one more table, so tiny gains don't pay.
pub const OWN_TABLE_MIN_SAVING_PERMILLE: u64 = 1;

/// The entropy codes a stream can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Every chunk stored (or run-length constant): no code table.
    Raw = 0,
    Qlc = 1,
    Huffman = 2,
    ExpGolomb = 3,
    ExpGolombRank = 4,
    Dlc = 5,
}

impl Codec {
    pub const ALL: [Codec; 6] =
        [Codec::Raw, Codec::Qlc, Codec::Huffman, Codec::ExpGolomb, Codec::ExpGolombRank, Codec::Dlc];

    pub fn name(self) -> &'static str {
        match self {
            Codec::Raw => "raw",
            Codec::Qlc => "qlc",
            Codec::Huffman => "huffman",
            Codec::ExpGolomb => "expgolomb",
            Codec::ExpGolombRank => "expgolomb-rank",
            Codec::Dlc => "dlc",
        }
    }

    pub fn from_name(name: &str) -> Result<Codec> {
        Codec::ALL.into_iter().find(|c| c.name() == name).ok_or_else(|| {
            Error::invalid(format!(
                "unknown codec {name:?}; choose one of raw, qlc, dlc, huffman, expgolomb, expgolomb-rank"
            ))
        })
    }

    fn from_id(id: u8) -> Result<Codec> {
        Codec::ALL.into_iter().find(|&c| c as u8 == id).ok_or_else(|| Error::format(format!("unknown codec id {id}")))
    }
}

/// A fitted code table of any codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeTable {
    Raw,
    Qlc(QlcTable),
    Dlc(QlcTable),
    Huffman(HuffmanTable),
    ExpGolomb(ExpGolombTable),
    ExpGolombRank(ExpGolombTable),
}

impl CodeTable {
    /// Fits `codec` to the byte histogram `hist`.
    pub fn fit(codec: Codec, hist: &Histogram) -> Result<Self> {
        Ok(match codec {
            Codec::Raw => CodeTable::Raw,
            Codec::Qlc => CodeTable::Qlc(QlcTable::fit(hist, QLC_PREFIX_BITS)?),
            Codec::Dlc => CodeTable::Dlc(QlcTable::fit(hist, DLC_PREFIX_BITS)?),
            Codec::Huffman => CodeTable::Huffman(HuffmanTable::fit(hist, MAX_HUFFMAN_LEN)?),
            Codec::ExpGolomb => CodeTable::ExpGolomb(ExpGolombTable::fit(hist, false)),
            Codec::ExpGolombRank => CodeTable::ExpGolombRank(ExpGolombTable::fit(hist, true)),
        })
    }

    pub fn codec(&self) -> Codec {
        match self {
            CodeTable::Raw => Codec::Raw,
            CodeTable::Qlc(_) => Codec::Qlc,
            CodeTable::Dlc(_) => Codec::Dlc,
            CodeTable::Huffman(_) => Codec::Huffman,
            CodeTable::ExpGolomb(_) => Codec::ExpGolomb,
            CodeTable::ExpGolombRank(_) => Codec::ExpGolombRank,
        }
    }

    /// Per-symbol codes (`None` for raw).
    pub fn encode_table(&self) -> Option<EncodeTable> {
        match self {
            CodeTable::Raw => None,
            CodeTable::Qlc(t) | CodeTable::Dlc(t) => Some(t.encode_table()),
            CodeTable::Huffman(t) => Some(t.encode_table()),
            CodeTable::ExpGolomb(t) | CodeTable::ExpGolombRank(t) => Some(t.encode_table()),
        }
    }

    /// Mean code length in bits per symbol for `hist` (8 for raw).
    pub fn mean_code_len(&self, hist: &Histogram) -> f64 {
        let n: u64 = hist.iter().sum();
        if n == 0 {
            return 0.0;
        }
        match self.encode_table() {
            None => 8.0,
            Some(t) => t.coded_bits(hist).map_or(f64::INFINITY, |b| b as f64 / n as f64),
        }
    }

    pub(crate) fn serialize(&self, out: &mut Vec<u8>) {
        match self {
            CodeTable::Raw => {}
            CodeTable::Qlc(t) | CodeTable::Dlc(t) => t.serialize(out),
            CodeTable::Huffman(t) => t.serialize(out),
            CodeTable::ExpGolomb(t) | CodeTable::ExpGolombRank(t) => t.serialize(out),
        }
    }

    fn parse(codec: Codec, bytes: &[u8]) -> Result<Self> {
        Ok(match codec {
            Codec::Raw if bytes.is_empty() => CodeTable::Raw,
            Codec::Raw => return Err(Error::format("raw stream carries a code table")),
            Codec::Qlc => CodeTable::Qlc(QlcTable::parse(bytes, QLC_PREFIX_BITS)?),
            Codec::Dlc => CodeTable::Dlc(QlcTable::parse(bytes, DLC_PREFIX_BITS)?),
            Codec::Huffman => CodeTable::Huffman(HuffmanTable::parse(bytes)?),
            Codec::ExpGolomb => CodeTable::ExpGolomb(ExpGolombTable::parse(bytes, false)?),
            Codec::ExpGolombRank => CodeTable::ExpGolombRank(ExpGolombTable::parse(bytes, true)?),
        })
    }
}

/// How to encode.
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions {
    pub codec: Codec,
    pub lanes: usize,
    pub chunk_size: usize,
    /// Worker threads; `None` = all cores.
    pub threads: Option<usize>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self { codec: Codec::Qlc, lanes: DEFAULT_LANES, chunk_size: DEFAULT_CHUNK_SIZE, threads: None }
    }
}

impl EncodeOptions {
    /// Checks lanes, chunk size and threads.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_LANES).contains(&self.lanes) {
            return Err(Error::invalid(format!("lanes must be 1..={MAX_LANES}, got {}", self.lanes)));
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(Error::invalid(format!(
                "chunk_size must be {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}, got {}",
                self.chunk_size
            )));
        }
        validate_threads(self.threads)
    }
}

/// How to decode.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeOptions {
    pub kernel: Kernel,
    /// Worker threads; `None` = all cores.
    pub threads: Option<usize>,
}

/// Histogram of `input`, computed over chunks in parallel.
pub fn parallel_histogram(input: &[u8], threads: Option<usize>) -> Histogram {
    let mut total = [0u64; 256];
    for h in map_pieces(input.chunks(DEFAULT_CHUNK_SIZE).collect(), threads, histogram) {
        merge(&mut total, &h);
    }
    total
}

/// Encodes `input` with a table fitted to it; a chunk whose own statistics differ enough from the
/// whole (rows of different scale in a weight matrix, say) carries its own table (mode 3). The
/// stream uses `opts.codec` even where its table costs more than coding saves (callers that
/// record the codec elsewhere rely on it); [`encode_compact`] does not.
pub fn encode(input: &[u8], opts: &EncodeOptions) -> Result<Vec<u8>> {
    encode_fitted(input, opts, false).map(|(_, blob)| blob)
}

/// As [`encode`], but never larger than the raw stream of the same bytes
/// ([`raw_stream_bound`]): when the code table costs more than coding saves, the stream is
/// written with the raw codec. Returns the codec the stream uses.
pub fn encode_compact(input: &[u8], opts: &EncodeOptions) -> Result<(Codec, Vec<u8>)> {
    encode_fitted(input, opts, true)
}

fn encode_fitted(input: &[u8], opts: &EncodeOptions, compact: bool) -> Result<(Codec, Vec<u8>)> {
    opts.validate()?;
    if opts.codec == Codec::Raw {
        return encode_with_table(input, &CodeTable::Raw, opts).map(|blob| (Codec::Raw, blob));
    }
    let hists: Vec<Histogram> = map_pieces(input.chunks(opts.chunk_size).collect(), opts.threads, histogram);
    let mut hist = [0u64; 256];
    for h in &hists {
        merge(&mut hist, h);
    }
    let table = CodeTable::fit(opts.codec, &hist)?;
    let codes = table.encode_table();
    // One chunk gains nothing from a second worker.
    if workers(opts.threads) == 1 || hists.len() == 1 {
        if let Some(blob) = encode_in_place(input, &table, codes.as_ref(), &hists, opts, compact)? {
            return Ok((table.codec(), blob));
        }
    }
    let pieces: Vec<_> = input.chunks(opts.chunk_size).zip(&hists).collect();
    let chunks = map_pieces(pieces, opts.threads, |(chunk, h)| {
        encode_chunk_fitted(chunk, &table, codes.as_ref(), h, opts.lanes)
    })
    .into_iter()
    .collect::<Result<Vec<_>>>()?;
    Ok(finish_stream(input.len(), &table, opts, chunks, compact, |i| {
        let start = i * opts.chunk_size;
        input[start..input.len().min(start + opts.chunk_size)].to_vec()
    }))
}

/// The stream written by one worker: the header's size is known before any chunk is coded, so
/// the chunks are coded straight into the output after room for it (no per-chunk buffers and
/// no assembly copy). The bytes equal [`finish_stream`]'s; `None` where `compact` must fall
/// back to the raw codec (the caller's general path writes that stream).
fn encode_in_place(
    input: &[u8],
    table: &CodeTable,
    codes: Option<&EncodeTable>,
    hists: &[Histogram],
    opts: &EncodeOptions,
    compact: bool,
) -> Result<Option<Vec<u8>>> {
    let mut table_bytes = Vec::with_capacity(MAX_TABLE_BYTES);
    table.serialize(&mut table_bytes);
    let n_chunks = hists.len();
    let index_at = FIXED_HEADER_BYTES + table_bytes.len();
    let header_len = index_at + n_chunks * CHUNK_INDEX_ENTRY_BYTES + 4;
    // Reserve what the chunks will take, not the raw bound: a buffer over the allocator's
    // mmap threshold (32 MiB in glibc) is mapped afresh, and page-faulted, on every call. A
    // chunk stores at most its bits under the stream's table plus prefix, table and lane
    // padding (an own table is only chosen when smaller), and never more than raw.
    let coded_bound = |(chunk, hist): (&[u8], &Histogram)| {
        let coded = codes.and_then(|c| c.coded_bits(hist)).map_or(usize::MAX, |bits| {
            (bits.div_ceil(8) as usize).saturating_add(3 + MAX_TABLE_BYTES + 5 * opts.lanes)
        });
        coded.min(1 + chunk.len())
    };
    let chunks_bound: usize = input.chunks(opts.chunk_size).zip(hists).map(coded_bound).sum();
    let mut out = Vec::with_capacity(header_len + chunks_bound);
    out.resize(header_len, 0);
    let mut saved = 0usize;
    // A lone chunk's histogram is the stream's: its own table would be the stream's table plus
    // its bytes, never smaller, so the trial fit is skipped (same bytes, one fit less).
    let try_own = n_chunks > 1;
    for (i, (chunk, hist)) in input.chunks(opts.chunk_size).zip(hists).enumerate() {
        let at = out.len();
        if try_own {
            encode_chunk_fitted_into(&mut out, chunk, table, codes, hist, opts.lanes)?;
        } else {
            encode_chunk_into(&mut out, chunk, codes, opts.lanes, None)?;
        }
        let stored = &out[at..];
        if matches!(stored[0], MODE_CODED | MODE_OWN_TABLE) {
            saved += 1 + chunk.len() - stored.len();
        }
        let entry = index_at + i * CHUNK_INDEX_ENTRY_BYTES;
        let (len, crc) = ((out.len() - at) as u32, crc32c::crc32c(stored));
        out[entry..entry + 4].copy_from_slice(&len.to_le_bytes());
        out[entry + 4..entry + 8].copy_from_slice(&crc.to_le_bytes());
    }
    if compact && !table_bytes.is_empty() && saved <= table_bytes.len() {
        return Ok(None);
    }
    write_header_prefix(&mut out[..index_at], input.len(), table.codec(), &table_bytes, opts);
    let crc_at = header_len - 4;
    let crc = crc32c::crc32c(&out[..crc_at]);
    out[crc_at..header_len].copy_from_slice(&crc.to_le_bytes());
    Ok(Some(out))
}

/// The fixed header and the code table, into `out` (exactly their length).
fn write_header_prefix(out: &mut [u8], input_len: usize, codec: Codec, table_bytes: &[u8], opts: &EncodeOptions) {
    out[..4].copy_from_slice(&STREAM_MAGIC);
    out[4..8].copy_from_slice(&[STREAM_VERSION, codec as u8, opts.lanes as u8, 0]);
    out[8..16].copy_from_slice(&(input_len as u64).to_le_bytes());
    out[16..20].copy_from_slice(&(opts.chunk_size as u32).to_le_bytes());
    out[20..24].copy_from_slice(&(table_bytes.len() as u32).to_le_bytes());
    out[FIXED_HEADER_BYTES..].copy_from_slice(table_bytes);
}

/// One chunk coded with the stream's table, or with its own when that saves enough
/// ([`OWN_TABLE_MIN_SAVING_PERMILLE`]); `hist` is the chunk's histogram.
pub(crate) fn encode_chunk_fitted(
    chunk: &[u8],
    table: &CodeTable,
    codes: Option<&EncodeTable>,
    hist: &Histogram,
    lanes: usize,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(chunk.len() + MAX_TABLE_BYTES + 64);
    encode_chunk_fitted_into(&mut out, chunk, table, codes, hist, lanes)?;
    Ok(out)
}

/// [`encode_chunk_fitted`], appending the stored chunk to `out`.
fn encode_chunk_fitted_into(
    out: &mut Vec<u8>,
    chunk: &[u8],
    table: &CodeTable,
    codes: Option<&EncodeTable>,
    hist: &Histogram,
    lanes: usize,
) -> Result<()> {
    match own_table(table, codes, hist)? {
        Some(own) => {
            let mut own_bytes = Vec::with_capacity(MAX_TABLE_BYTES);
            own.serialize(&mut own_bytes);
            encode_chunk_into(out, chunk, own.encode_table().as_ref(), lanes, Some(&own_bytes))
        }
        None => encode_chunk_into(out, chunk, codes, lanes, None),
    }
}

/// The chunk's own table, if coding the chunk with it (table included) saves enough over the
/// stream's table.
fn own_table(table: &CodeTable, codes: Option<&EncodeTable>, hist: &Histogram) -> Result<Option<CodeTable>> {
    let Some(shared_bits) = codes.and_then(|c| c.coded_bits(hist)) else { return Ok(None) };
    let own = CodeTable::fit(table.codec(), hist)?;
    let Some(own_bits) = own.encode_table().and_then(|c| c.coded_bits(hist)) else { return Ok(None) };
    let mut bytes = Vec::with_capacity(MAX_TABLE_BYTES);
    own.serialize(&mut bytes);
    let own_total = own_bits + 8 * (2 + bytes.len() as u64);
    Ok((own_total * 1000 < shared_bits * (1000 - OWN_TABLE_MIN_SAVING_PERMILLE)).then_some(own))
}

/// Encodes `input` with a given table (which must have a code for every byte present).
pub fn encode_with_table(input: &[u8], table: &CodeTable, opts: &EncodeOptions) -> Result<Vec<u8>> {
    opts.validate()?;
    let codes = table.encode_table();
    let chunks = map_pieces(input.chunks(opts.chunk_size).collect(), opts.threads, |chunk| {
        encode_chunk(chunk, codes.as_ref(), opts.lanes, None)
    })
    .into_iter()
    .collect::<Result<Vec<Vec<u8>>>>()?;
    Ok(finish_stream(input.len(), table, opts, chunks, false, |i| {
        let start = i * opts.chunk_size;
        input[start..input.len().min(start + opts.chunk_size)].to_vec()
    })
    .1)
}

/// Bytes of the raw-codec stream of `n` bytes in chunks of `chunk_size` when no chunk is
/// constant: the fixed header, the header CRC, 8 index bytes and 1 mode byte per chunk, and the
/// bytes themselves. No encoder output exceeds it.
pub fn raw_stream_bound(n: usize, chunk_size: usize) -> usize {
    let chunks = n.div_ceil(chunk_size.max(1));
    FIXED_HEADER_BYTES + 4 + chunks * (CHUNK_INDEX_ENTRY_BYTES + 1) + n
}

/// Assembles the stream, or (with `compact`) the raw-codec stream of the same bytes when the
/// table costs more than coding saves. `raw_chunk(i)` returns the decoded bytes of chunk `i`
/// (only called for coded chunks, only in that case).
pub(crate) fn finish_stream(
    input_len: usize,
    table: &CodeTable,
    opts: &EncodeOptions,
    mut chunks: Vec<Vec<u8>>,
    compact: bool,
    raw_chunk: impl Fn(usize) -> Vec<u8>,
) -> (Codec, Vec<u8>) {
    let mut table_bytes = Vec::with_capacity(MAX_TABLE_BYTES);
    table.serialize(&mut table_bytes);
    let is_coded = |c: &Vec<u8>| matches!(c.first(), Some(&MODE_CODED | &MODE_OWN_TABLE));
    let saved: usize = chunks
        .iter()
        .enumerate()
        .filter(|(_, c)| is_coded(c))
        .map(|(i, c)| (1 + (input_len - i * opts.chunk_size).min(opts.chunk_size)) - c.len())
        .sum();
    if !compact || table_bytes.is_empty() || saved > table_bytes.len() {
        return (table.codec(), assemble(input_len, table.codec(), &table_bytes, opts, &chunks));
    }
    for (i, c) in chunks.iter_mut().enumerate() {
        if is_coded(c) {
            let mut raw = Vec::with_capacity(1 + opts.chunk_size);
            raw.push(MODE_RAW);
            raw.extend_from_slice(&raw_chunk(i));
            *c = raw;
        }
    }
    (Codec::Raw, assemble(input_len, Codec::Raw, &[], opts, &chunks))
}

/// Header, chunk index and header CRC, then the chunks.
fn assemble(input_len: usize, codec: Codec, table_bytes: &[u8], opts: &EncodeOptions, chunks: &[Vec<u8>]) -> Vec<u8> {
    let header_len = FIXED_HEADER_BYTES + table_bytes.len() + chunks.len() * CHUNK_INDEX_ENTRY_BYTES + 4;
    let mut out = Vec::with_capacity(header_len + chunks.iter().map(Vec::len).sum::<usize>());
    out.resize(FIXED_HEADER_BYTES + table_bytes.len(), 0);
    write_header_prefix(&mut out, input_len, codec, table_bytes, opts);
    for chunk in chunks {
        out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(chunk).to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    for chunk in chunks {
        out.extend_from_slice(chunk);
    }
    out
}

/// Appends the mode byte, then (mode 3) the chunk's own table, then room for the lane
/// lengths. Returns where the lane lengths start.
fn coded_chunk_prefix(out: &mut Vec<u8>, own_table: Option<&[u8]>, n_lanes: usize) -> usize {
    match own_table {
        Some(t) => {
            out.push(MODE_OWN_TABLE);
            out.extend_from_slice(&(t.len() as u16).to_le_bytes());
            out.extend_from_slice(t);
        }
        None => out.push(MODE_CODED),
    }
    let jump_at = out.len();
    out.resize(jump_at + 4 * n_lanes, 0);
    jump_at
}

pub(crate) fn encode_chunk(
    chunk: &[u8],
    codes: Option<&EncodeTable>,
    n_lanes: usize,
    own_table: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(chunk.len() + MAX_TABLE_BYTES + 64);
    encode_chunk_into(&mut out, chunk, codes, n_lanes, own_table)?;
    Ok(out)
}

/// Appends the stored form of `chunk` to `out`: constant, raw, or coded with `codes` (which
/// must be strictly smaller than raw, mode byte included).
fn encode_chunk_into(
    out: &mut Vec<u8>,
    chunk: &[u8],
    codes: Option<&EncodeTable>,
    n_lanes: usize,
    own_table: Option<&[u8]>,
) -> Result<()> {
    if let Some(&first) = chunk.first() {
        if chunk.iter().all(|&b| b == first) {
            out.extend_from_slice(&[MODE_CONSTANT, first]);
            return Ok(());
        }
    }
    let start = out.len();
    let raw = |out: &mut Vec<u8>| {
        out.truncate(start);
        out.push(MODE_RAW);
        out.extend_from_slice(chunk);
        Ok(())
    };
    let Some(codes) = codes else { return raw(out) };
    let max_len = codes.max_len() as usize;
    let jump_at = coded_chunk_prefix(out, own_table, n_lanes);
    if max_len <= MAX_STRIDED_CODE_LEN as usize {
        let mut table = [0u64; 256];
        for (e, (&code, &len)) in table.iter_mut().zip(codes.code.iter().zip(&codes.len)) {
            *e = u64::from(code) | u64::from(len) << 32;
        }
        let mut lane_lens = [0u32; MAX_LANES];
        if !put_lanes(Kernel::Auto, out, chunk, n_lanes, &table, &mut lane_lens) {
            out.truncate(start);
            let sym = chunk.iter().find(|&&s| codes.len[usize::from(s)] == 0);
            return Err(Error::invalid(format!("code table has no code for byte {}", sym.copied().unwrap_or(0))));
        }
        for (lane, len) in lane_lens.iter().take(n_lanes).enumerate() {
            out[jump_at + 4 * lane..jump_at + 4 * lane + 4].copy_from_slice(&len.to_le_bytes());
        }
    } else {
        for lane in 0..n_lanes {
            let count = chunk.len().saturating_sub(lane).div_ceil(n_lanes);
            let mut writer = BitWriter::with_capacity_bits(count * max_len);
            for &sym in chunk.iter().skip(lane).step_by(n_lanes) {
                let len = codes.len[usize::from(sym)];
                if len == 0 {
                    out.truncate(start);
                    return Err(Error::invalid(format!("code table has no code for byte {sym}")));
                }
                writer.put(codes.code[usize::from(sym)], u32::from(len));
            }
            let bytes = writer.finish();
            out[jump_at + 4 * lane..jump_at + 4 * lane + 4].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
            if out.len() - start > chunk.len() {
                return raw(out);
            }
        }
    }
    // A coded chunk must be strictly smaller than its raw form (mode byte included).
    if out.len() - start > chunk.len() {
        return raw(out);
    }
    Ok(())
}

/// A parsed, checksum-verified stream header.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub table: CodeTable,
    pub lanes: usize,
    pub decoded_len: u64,
    pub chunk_size: usize,
    /// (offset in the stream, stored length, CRC32C) of each chunk.
    pub chunks: Vec<(usize, usize, u32)>,
    pub header_len: usize,
}

impl StreamInfo {
    pub fn codec(&self) -> Codec {
        self.table.codec()
    }

    /// Decoded length of chunk `index`.
    pub fn chunk_decoded_len(&self, index: usize) -> usize {
        let start = index as u64 * self.chunk_size as u64;
        (self.decoded_len - start).min(self.chunk_size as u64) as usize
    }

    /// Byte range of chunk `index` in the decoded output.
    pub fn chunk_range(&self, index: usize) -> std::ops::Range<usize> {
        let start = index * self.chunk_size;
        start..start + self.chunk_decoded_len(index)
    }
}

pub(crate) fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses and verifies the header. Every length is checked against the blob before use, so no
/// allocation exceeds what the blob itself can justify.
pub fn parse_header(blob: &[u8]) -> Result<StreamInfo> {
    if blob.len() < FIXED_HEADER_BYTES + 4 {
        return Err(Error::format(format!("stream is {} bytes, shorter than any header", blob.len())));
    }
    if blob[..4] != STREAM_MAGIC {
        return Err(Error::format("not a tensorpress entropy stream (bad magic)"));
    }
    if blob[4] != STREAM_VERSION {
        return Err(Error::format(format!(
            "stream version {} is not supported (this build reads {STREAM_VERSION})",
            blob[4]
        )));
    }
    let codec = Codec::from_id(blob[5])?;
    let lanes = usize::from(blob[6]);
    if !(1..=MAX_LANES).contains(&lanes) {
        return Err(Error::format(format!("lane count {lanes} outside 1..={MAX_LANES}")));
    }
    if blob[7] != 0 {
        return Err(Error::format(format!("reserved flags set: {:#04x}", blob[7])));
    }
    let decoded_len = u64::from_le_bytes(blob[8..16].try_into().map_err(|_| Error::format("header"))?);
    let chunk_size = read_u32(blob, 16) as usize;
    let table_len = read_u32(blob, 20) as usize;
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        return Err(Error::format(format!("chunk size {chunk_size} outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}")));
    }
    if table_len > MAX_TABLE_BYTES {
        return Err(Error::format(format!("code table of {table_len} bytes exceeds {MAX_TABLE_BYTES}")));
    }
    if decoded_len > MAX_DECODED_LEN {
        return Err(Error::format(format!("declared length {decoded_len} exceeds the limit {MAX_DECODED_LEN}")));
    }
    let n_chunks = decoded_len.div_ceil(chunk_size as u64);
    let index_at = FIXED_HEADER_BYTES + table_len;
    // Every chunk needs an index entry and at least 2 stored bytes: bound before allocating.
    let min_len = (index_at as u64) + n_chunks * (CHUNK_INDEX_ENTRY_BYTES as u64 + 2) + 4;
    if (blob.len() as u64) < min_len {
        return Err(Error::format(format!(
            "stream of {} bytes is too short for {n_chunks} chunks (truncated?)",
            blob.len()
        )));
    }
    let n_chunks = n_chunks as usize;
    let crc_at = index_at + n_chunks * CHUNK_INDEX_ENTRY_BYTES;
    let stored_crc = read_u32(blob, crc_at);
    if crc32c::crc32c(&blob[..crc_at]) != stored_crc {
        return Err(Error::Checksum("stream header checksum does not match".into()));
    }
    let table = CodeTable::parse(codec, &blob[FIXED_HEADER_BYTES..index_at])?;
    let header_len = crc_at + 4;
    let mut offset = header_len;
    let mut chunks = Vec::with_capacity(n_chunks);
    for i in 0..n_chunks {
        let entry = index_at + i * CHUNK_INDEX_ENTRY_BYTES;
        let len = read_u32(blob, entry) as usize;
        chunks.push((offset, len, read_u32(blob, entry + 4)));
        offset = offset.checked_add(len).ok_or_else(|| Error::format("chunk lengths overflow"))?;
    }
    if offset != blob.len() {
        return Err(Error::format(format!(
            "chunks end at byte {offset} but the stream has {} bytes (truncated or padded)",
            blob.len()
        )));
    }
    Ok(StreamInfo { table, lanes, decoded_len, chunk_size, chunks, header_len })
}

/// Decoded length declared by a stream (header verified).
pub fn decoded_len(blob: &[u8]) -> Result<u64> {
    parse_header(blob).map(|info| info.decoded_len)
}

/// Decodes a whole stream into caller-owned `out`, which must be exactly the decoded length.
pub fn decode_into(blob: &[u8], out: &mut [u8], opts: &DecodeOptions) -> Result<()> {
    validate_threads(opts.threads)?;
    let info = parse_header(blob)?;
    if out.len() as u64 != info.decoded_len {
        return Err(Error::invalid(format!(
            "output holds {} bytes, stream decodes to {}",
            out.len(),
            info.decoded_len
        )));
    }
    with_decoder(&info.table, |dec| {
        let pieces: Vec<_> = out.chunks_mut(info.chunk_size).zip(&info.chunks).enumerate().collect();
        try_for_each_piece(pieces, opts.threads, |(i, (dst, &(at, len, crc)))| {
            decode_chunk_checked(dec, info.codec(), &blob[at..at + len], crc, i, info.lanes, dst, opts.kernel)
        })
    })
}

/// Decodes a whole stream into a new vector.
pub fn decode(blob: &[u8], opts: &DecodeOptions) -> Result<Vec<u8>> {
    let n = decoded_len(blob)?;
    let mut out = vec![0u8; n as usize];
    decode_into(blob, &mut out, opts)?;
    Ok(out)
}

/// Decodes chunk `index` alone into `out` (exactly `info.chunk_decoded_len(index)` bytes).
pub fn decode_chunk_into(blob: &[u8], info: &StreamInfo, index: usize, out: &mut [u8], kernel: Kernel) -> Result<()> {
    let &(at, len, crc) = info
        .chunks
        .get(index)
        .ok_or_else(|| Error::invalid(format!("chunk {index} out of range ({} chunks)", info.chunks.len())))?;
    if out.len() != info.chunk_decoded_len(index) {
        return Err(Error::invalid("output size does not match the chunk"));
    }
    let stored = blob.get(at..at + len).ok_or_else(|| Error::format("chunk outside the stream"))?;
    with_decoder(&info.table, |dec| {
        decode_chunk_checked(dec, info.codec(), stored, crc, index, info.lanes, out, kernel)
    })
}

/// Runs `f` with the decoder of `table`, monomorphised per codec.
pub(crate) fn with_decoder<R>(table: &CodeTable, f: impl FnOnce(&dyn ChunkDecoder) -> R) -> R {
    match table {
        CodeTable::Raw => f(&RawOnly),
        CodeTable::Qlc(t) | CodeTable::Dlc(t) => f(&Coded(t.decoder())),
        CodeTable::Huffman(t) => f(&Coded(t.decoder())),
        CodeTable::ExpGolomb(t) | CodeTable::ExpGolombRank(t) => f(&Coded(t.decoder())),
    }
}

/// The decoder of `table` behind a pointer, for callers holding several at once (one virtual
/// call per chunk, as [`with_decoder`]).
pub(crate) fn boxed_decoder(table: &CodeTable) -> Box<dyn ChunkDecoder> {
    match table {
        CodeTable::Raw => Box::new(RawOnly),
        CodeTable::Qlc(t) | CodeTable::Dlc(t) => Box::new(Coded(t.decoder())),
        CodeTable::Huffman(t) => Box::new(Coded(t.decoder())),
        CodeTable::ExpGolomb(t) | CodeTable::ExpGolombRank(t) => Box::new(Coded(t.decoder())),
    }
}

/// Object-safe wrapper so the per-chunk loop is written once while lane decoding stays
/// monomorphic (one virtual call per chunk, none per symbol).
pub(crate) trait ChunkDecoder: Sync {
    fn decode_lanes(&self, kernel: Kernel, lanes: &[&[u8]], out: &mut [u8]) -> Result<()>;
}

struct RawOnly;
impl ChunkDecoder for RawOnly {
    fn decode_lanes(&self, _: Kernel, _: &[&[u8]], _: &mut [u8]) -> Result<()> {
        Err(Error::corrupt("coded chunk in a raw stream"))
    }
}

struct Coded<D>(D);
impl<D: SymbolDecoder> ChunkDecoder for Coded<D> {
    fn decode_lanes(&self, kernel: Kernel, lanes: &[&[u8]], out: &mut [u8]) -> Result<()> {
        decode_lanes(kernel, &self.0, lanes, out)
    }
}

#[allow(clippy::too_many_arguments)] // one call site per entry point; a struct would only rename them
pub(crate) fn decode_chunk_checked(
    dec: &dyn ChunkDecoder,
    codec: Codec,
    stored: &[u8],
    crc: u32,
    index: usize,
    n_lanes: usize,
    out: &mut [u8],
    kernel: Kernel,
) -> Result<()> {
    if crc32c::crc32c(stored) != crc {
        return Err(Error::Checksum(format!("chunk {index} checksum does not match")));
    }
    decode_chunk_body(dec, codec, stored, index, n_lanes, out, kernel)
}

/// The decoded bytes of a chunk whose checksum is verified here: a raw chunk's body borrowed
/// from the stream (no copy), any other chunk decoded into `scratch[..len]`.
#[allow(clippy::too_many_arguments)] // as decode_chunk_checked
pub(crate) fn chunk_view<'a>(
    dec: &dyn ChunkDecoder,
    codec: Codec,
    stored: &'a [u8],
    crc: u32,
    index: usize,
    n_lanes: usize,
    scratch: &'a mut [u8],
    kernel: Kernel,
) -> Result<&'a [u8]> {
    if crc32c::crc32c(stored) != crc {
        return Err(Error::Checksum(format!("chunk {index} checksum does not match")));
    }
    match stored.split_first() {
        Some((&MODE_RAW, body)) if body.len() == scratch.len() => Ok(body),
        _ => {
            decode_chunk_body(dec, codec, stored, index, n_lanes, scratch, kernel)?;
            Ok(scratch)
        }
    }
}

/// Decodes a chunk whose checksum the caller has verified.
fn decode_chunk_body(
    dec: &dyn ChunkDecoder,
    codec: Codec,
    stored: &[u8],
    index: usize,
    n_lanes: usize,
    out: &mut [u8],
    kernel: Kernel,
) -> Result<()> {
    let corrupt = |what: &str| Error::corrupt(format!("chunk {index}: {what}"));
    let (&mode, body) = stored.split_first().ok_or_else(|| corrupt("empty"))?;
    match mode {
        MODE_RAW if body.len() == out.len() => out.copy_from_slice(body),
        MODE_CONSTANT if body.len() == 1 => out.fill(body[0]),
        MODE_CODED => {
            let lanes = split_lanes(body, n_lanes).map_err(|e| corrupt(e.message()))?;
            dec.decode_lanes(kernel, &lanes[..n_lanes], out).map_err(|e| corrupt(e.message()))?;
        }
        MODE_OWN_TABLE => {
            if codec == Codec::Raw {
                return Err(corrupt("own-table chunk in a raw stream"));
            }
            let table_len = match body {
                [lo, hi, ..] => usize::from(u16::from_le_bytes([*lo, *hi])),
                _ => return Err(corrupt("own table length truncated")),
            };
            if table_len > MAX_TABLE_BYTES || body.len() < 2 + table_len {
                return Err(corrupt("own table truncated or too long"));
            }
            let (table_bytes, rest) = body[2..].split_at(table_len);
            let table = CodeTable::parse(codec, table_bytes).map_err(|e| corrupt(e.message()))?;
            let lanes = split_lanes(rest, n_lanes).map_err(|e| corrupt(e.message()))?;
            with_decoder(&table, |own| own.decode_lanes(kernel, &lanes[..n_lanes], out))
                .map_err(|e| corrupt(e.message()))?;
        }
        MODE_RAW | MODE_CONSTANT => return Err(corrupt("stored length does not match the decoded length")),
        other => return Err(corrupt(&format!("unknown chunk mode {other}"))),
    }
    Ok(())
}

/// Splits a coded chunk body (lane lengths, then lanes) into its `n_lanes` lanes, which must
/// tile the body exactly.
fn split_lanes(body: &[u8], n_lanes: usize) -> Result<[&[u8]; MAX_LANES]> {
    let jump = 4 * n_lanes;
    if body.len() < jump {
        return Err(Error::corrupt("jump table truncated"));
    }
    let (table, mut data) = body.split_at(jump);
    let mut lanes: [&[u8]; MAX_LANES] = [&[]; MAX_LANES];
    for (l, lane) in lanes.iter_mut().take(n_lanes).enumerate() {
        let len = read_u32(table, 4 * l) as usize;
        if len > data.len() {
            return Err(Error::corrupt("lane runs past the chunk"));
        }
        (*lane, data) = data.split_at(len);
    }
    if !data.is_empty() {
        return Err(Error::corrupt("bytes after the last lane"));
    }
    Ok(lanes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        let mut x = 0x12345678u32;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Skewed: small values far more common.
                f64::from(x % 1000).sqrt() as u8
            })
            .collect()
    }

    #[test]
    fn every_codec_and_kernel_round_trips() {
        for n in [0usize, 1, 7, 1000, 5000, 70_000] {
            let data = sample(n);
            for codec in Codec::ALL {
                for lanes in [1, 3, 8, 32] {
                    let opts = EncodeOptions { codec, lanes, chunk_size: 4096, threads: Some(2) };
                    let blob = encode(&data, &opts).unwrap();
                    for kernel in Kernel::available() {
                        let out = decode(&blob, &DecodeOptions { kernel, threads: Some(2) }).unwrap();
                        assert_eq!(out, data, "{codec:?} lanes={lanes} n={n} {kernel:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn constant_and_incompressible_chunks_take_their_modes() {
        let zeros = vec![0u8; 100_000];
        let blob = encode(&zeros, &EncodeOptions::default()).unwrap();
        assert!(blob.len() < 24 + 265 + 8 + 4 + 2 + 1);
        let noise: Vec<u8> = (0..50_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let blob = encode(&noise, &EncodeOptions::default()).unwrap();
        assert!(blob.len() < noise.len() + 400);
        assert_eq!(decode(&blob, &DecodeOptions::default()).unwrap(), noise);
    }

    #[test]
    fn random_chunk_access() {
        let data = sample(20_000);
        let blob = encode(&data, &EncodeOptions { chunk_size: 4096, ..Default::default() }).unwrap();
        let info = parse_header(&blob).unwrap();
        assert_eq!(info.chunks.len(), 5);
        let mut out = vec![0u8; info.chunk_decoded_len(4)];
        decode_chunk_into(&blob, &info, 4, &mut out, Kernel::Auto).unwrap();
        assert_eq!(out, &data[info.chunk_range(4)]);
        assert!(decode_chunk_into(&blob, &info, 5, &mut out, Kernel::Auto).is_err());
    }

    #[test]
    fn corruption_is_detected_not_panicked() {
        let data = sample(30_000);
        for codec in Codec::ALL {
            let blob = encode(&data, &EncodeOptions { codec, chunk_size: 8192, ..Default::default() }).unwrap();
            for cut in [0, 3, 10, 27, blob.len() / 2, blob.len() - 1] {
                assert!(decode(&blob[..cut], &DecodeOptions::default()).is_err());
            }
            for i in (0..blob.len()).step_by(blob.len() / 97 + 1) {
                let mut bad = blob.clone();
                bad[i] ^= 0x10;
                assert!(decode(&bad, &DecodeOptions::default()).is_err(), "{codec:?} flip at {i}");
            }
        }
    }

    /// Two halves with different statistics: the second half's chunks carry their own tables,
    /// which must make the stream smaller and still decode on every kernel.
    #[test]
    fn chunks_with_different_statistics_get_own_tables() {
        let mut data = sample(64 * 1024);
        data.extend(sample(64 * 1024).iter().map(|&b| b.wrapping_mul(3).wrapping_add(100)));
        for codec in [Codec::Qlc, Codec::Dlc, Codec::Huffman, Codec::ExpGolombRank] {
            let opts = EncodeOptions { codec, lanes: 8, chunk_size: 16 * 1024, threads: Some(2) };
            let blob = encode(&data, &opts).unwrap();
            let info = parse_header(&blob).unwrap();
            let own = info.chunks.iter().filter(|&&(at, _, _)| blob[at] == MODE_OWN_TABLE).count();
            assert!(own >= 4, "{codec:?}: {own} chunks with own tables");
            let single = encode_with_table(&data, &info.table, &opts).unwrap();
            assert!(blob.len() < single.len(), "{codec:?}: {} >= {}", blob.len(), single.len());
            for kernel in Kernel::available() {
                assert_eq!(decode(&blob, &DecodeOptions { kernel, threads: Some(2) }).unwrap(), data, "{kernel:?}");
            }
        }
    }

    /// The one-worker path codes chunks straight into the output; its bytes must equal the
    /// per-chunk buffers assembled by `finish_stream` (the multi-worker path), compact included.
    #[test]
    fn in_place_stream_equals_assembled_stream() {
        let mut mixed = sample(40_000);
        mixed.extend(sample(30_000).iter().map(|&b| b.wrapping_mul(3).wrapping_add(100)));
        mixed.extend(std::iter::repeat_n(7u8, 9000));
        let noise: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let tiny = sample(300);
        for data in [&mixed, &noise, &tiny] {
            for codec in Codec::ALL.into_iter().filter(|&c| c != Codec::Raw) {
                for (lanes, compact) in [(1, false), (8, true), (32, false), (32, true), (5, true)] {
                    let opts = EncodeOptions { codec, lanes, chunk_size: 4096, threads: Some(1) };
                    let hists: Vec<Histogram> = data.chunks(opts.chunk_size).map(histogram).collect();
                    let mut hist = [0u64; 256];
                    hists.iter().for_each(|h| merge(&mut hist, h));
                    let table = CodeTable::fit(codec, &hist).unwrap();
                    let codes = table.encode_table();
                    let chunks = data
                        .chunks(opts.chunk_size)
                        .zip(&hists)
                        .map(|(c, h)| encode_chunk_fitted(c, &table, codes.as_ref(), h, lanes).unwrap())
                        .collect();
                    let (codec_used, assembled) = finish_stream(data.len(), &table, &opts, chunks, compact, |i| {
                        data[i * opts.chunk_size..data.len().min((i + 1) * opts.chunk_size)].to_vec()
                    });
                    let what = format!("{codec:?} lanes={lanes} compact={compact} n={}", data.len());
                    match encode_in_place(data, &table, codes.as_ref(), &hists, &opts, compact).unwrap() {
                        Some(blob) => assert!(blob == assembled && codec_used == codec, "{what}"),
                        None => assert!(compact && codec_used == Codec::Raw, "{what}"),
                    }
                }
            }
        }
    }

    #[test]
    fn bad_options_are_rejected() {
        assert!(encode(b"x", &EncodeOptions { lanes: 0, ..Default::default() }).is_err());
        assert!(encode(b"x", &EncodeOptions { lanes: 33, ..Default::default() }).is_err());
        assert!(encode(b"x", &EncodeOptions { chunk_size: 10, ..Default::default() }).is_err());
        assert!(Codec::from_name("zip").is_err());
    }
}
