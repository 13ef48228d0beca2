//! The chunked stream: the bitstream contract every decoder honours (normative text in
//! docs/format.md, "Entropy stream").
//!
//! ```text
//! offset  size  field
//! 0       4     magic  89 54 50 45  ("\x89TPE")
//! 4       1     version (2 written; 1 still read)
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
//! 1 = coded with the stream's table: L lane lengths then the L lane bitstreams;
//! 3 = coded with the chunk's own table: table length t' (u16 LE), t' table bytes of the stream's
//! codec, then as mode 1. Symbol i of the chunk is in lane i mod L. Every lane is consumed to its
//! last byte (padding bits are zero). Version 2 stores the lane lengths as varints of their
//! differences ([`crate::varint`]) and Huffman tables as delta-coded lengths
//! ([`HuffmanTable::serialize`]); version 1 as u32 each and 128 nibble bytes.

use crate::codes::exp_golomb::ExpGolombTable;
use crate::codes::huffman::{HuffmanTable, MAX_HUFFMAN_LEN};
use crate::codes::qlc::{QlcTable, DLC_PREFIX_BITS, QLC_PREFIX_BITS};
use crate::codes::{EncodeTable, SymbolDecoder};
use crate::error::{Error, Result};
use crate::histogram::Histogram;
use crate::kernels::{decode_lanes, Kernel, Readable};
use crate::threads::{try_for_each_piece, validate_threads};

/// Stream magic; the leading 0x89 byte keeps it from reading as text.
pub const STREAM_MAGIC: [u8; 4] = [0x89, b'T', b'P', b'E'];
/// The stream version this code writes.
pub const STREAM_VERSION: u8 = 2;
/// The oldest stream version this code reads (version 1: u32 lane lengths, nibble Huffman
/// tables; otherwise the same layout).
pub const MIN_STREAM_VERSION: u8 = 1;
/// Fixed part of the header before the table.
pub const FIXED_HEADER_BYTES: usize = 24;
/// Most lanes a chunk may have.
pub const MAX_LANES: usize = 32;
/// Smallest and largest chunk sizes (decoded bytes).
pub const MIN_CHUNK_SIZE: usize = 1 << 10;
pub const MAX_CHUNK_SIZE: usize = 1 << 24;
/// Default chunk size: big enough to amortise a chunk's framing and own table (about 100 bytes
/// in version 2), small enough that each chunk's own table follows the data's local statistics,
/// spreads over threads and keeps random access cheap (sizes measured in benches/RESULTS.md §2).
pub const DEFAULT_CHUNK_SIZE: usize = 1 << 17;
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
pub(crate) const MODE_CODED: u8 = 1;
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

    fn parse(codec: Codec, bytes: &[u8], version: u8) -> Result<Self> {
        Ok(match codec {
            Codec::Raw if bytes.is_empty() => CodeTable::Raw,
            Codec::Raw => return Err(Error::format("raw stream carries a code table")),
            Codec::Qlc => CodeTable::Qlc(QlcTable::parse(bytes, QLC_PREFIX_BITS)?),
            Codec::Dlc => CodeTable::Dlc(QlcTable::parse(bytes, DLC_PREFIX_BITS)?),
            Codec::Huffman if version == 1 => CodeTable::Huffman(HuffmanTable::parse_nibbles(bytes)?),
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

// Fitting tables, coding chunks and assembling streams: the encode side, in its own file.
mod chunk_buffers;
mod encode;
pub use encode::{
    encode, encode_compact, encode_parts, encode_with_table, parallel_histogram, raw_stream_bound, write_streams_into,
    StreamParts, PARALLEL_WRITE_MIN_BYTES,
};
pub(crate) use encode::{encode_chunk_fitted, finish_stream};

/// A parsed, checksum-verified stream header.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub table: CodeTable,
    /// Stream version (1 or 2): how lane lengths and Huffman tables are stored.
    pub version: u8,
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

    /// What a chunk decoder needs to know of the stream besides the chunk's bytes.
    pub(crate) fn format(&self) -> ChunkFormat {
        ChunkFormat { codec: self.codec(), lanes: self.lanes, version: self.version }
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

/// A stored chunk where it lies in its stream: its bytes are `rest[..len]`; the kernels may let
/// a bit window run on into `rest[len..]` (the chunks after it), never past it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoredChunk<'a> {
    rest: &'a [u8],
    len: usize,
    crc: u32,
}

impl<'a> StoredChunk<'a> {
    /// The chunk at `blob[at..at + len]` with its index CRC.
    pub fn in_stream(blob: &'a [u8], at: usize, len: usize, crc: u32) -> Result<Self> {
        match blob.get(at..) {
            Some(rest) if rest.len() >= len => Ok(Self { rest, len, crc }),
            _ => Err(Error::format("chunk outside the stream")),
        }
    }

    pub fn bytes(&self) -> &'a [u8] {
        &self.rest[..self.len]
    }
}

/// The stream fields every chunk is framed by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkFormat {
    pub codec: Codec,
    pub lanes: usize,
    pub version: u8,
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
    let version = blob[4];
    if !(MIN_STREAM_VERSION..=STREAM_VERSION).contains(&version) {
        return Err(Error::format(format!(
            "stream version {version} is not supported (this build reads {MIN_STREAM_VERSION}..={STREAM_VERSION})"
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
    let table = CodeTable::parse(codec, &blob[FIXED_HEADER_BYTES..index_at], version)?;
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
    Ok(StreamInfo { table, version, lanes, decoded_len, chunk_size, chunks, header_len })
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
            decode_chunk_checked(dec, info.format(), StoredChunk::in_stream(blob, at, len, crc)?, i, dst, opts.kernel)
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
    let stored = StoredChunk::in_stream(blob, at, len, crc)?;
    with_decoder(&info.table, |dec| decode_chunk_checked(dec, info.format(), stored, index, out, kernel))
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
    fn decode_lanes(&self, kernel: Kernel, lanes: &[&[u8]], readable: &Readable<'_>, out: &mut [u8]) -> Result<()>;
}

struct RawOnly;
impl ChunkDecoder for RawOnly {
    fn decode_lanes(&self, _: Kernel, _: &[&[u8]], _: &Readable<'_>, _: &mut [u8]) -> Result<()> {
        Err(Error::corrupt("coded chunk in a raw stream"))
    }
}

struct Coded<D>(D);
impl<D: SymbolDecoder> ChunkDecoder for Coded<D> {
    fn decode_lanes(&self, kernel: Kernel, lanes: &[&[u8]], readable: &Readable<'_>, out: &mut [u8]) -> Result<()> {
        decode_lanes(kernel, &self.0, lanes, readable, out)
    }
}

pub(crate) fn decode_chunk_checked(
    dec: &dyn ChunkDecoder,
    format: ChunkFormat,
    stored: StoredChunk<'_>,
    index: usize,
    out: &mut [u8],
    kernel: Kernel,
) -> Result<()> {
    let decoded = decode_chunk_body(dec, format, stored, index, out, kernel);
    check_chunk(stored, index)?;
    decoded
}

/// The decoded bytes of a chunk: a raw chunk's body borrowed from the stream (no copy), any
/// other chunk decoded into `scratch[..len]` and its checksum checked. A raw chunk's checksum is
/// left to the caller ([`check_chunk`], `true` returned), to check after it has read the body:
/// the body is then in cache, where a check first would fetch it from memory alone.
pub(crate) fn chunk_view<'a>(
    dec: &dyn ChunkDecoder,
    format: ChunkFormat,
    stored: StoredChunk<'a>,
    index: usize,
    scratch: &'a mut [u8],
    kernel: Kernel,
) -> Result<(&'a [u8], bool)> {
    match stored.bytes().split_first() {
        Some((&MODE_RAW, body)) if body.len() == scratch.len() => Ok((body, true)),
        _ => decode_chunk_checked(dec, format, stored, index, scratch, kernel).map(|()| (&*scratch, false)),
    }
}

/// The chunk's checksum check. Decoders check it *after* decoding the chunk, whatever the
/// decode returned: the decode (compute-bound, its lanes read as parallel streams) hides the
/// latency of fetching the chunk from memory, and the checksum then reads it from cache; a
/// checksum pass first pays that latency alone (18 % of a 32 MiB QLC decode). The decode is
/// safe on any bytes (the kernels are tested and fuzzed behind recomputed checksums), and a
/// chunk that fails its checksum is a checksum error whatever its decode said, as before.
pub(crate) fn check_chunk(stored: StoredChunk<'_>, index: usize) -> Result<()> {
    if crc32c::crc32c(stored.bytes()) != stored.crc {
        return Err(Error::Checksum(format!("chunk {index} checksum does not match")));
    }
    Ok(())
}

/// Decodes a chunk (its checksum is checked by the caller, before or after).
fn decode_chunk_body(
    dec: &dyn ChunkDecoder,
    format: ChunkFormat,
    stored: StoredChunk<'_>,
    index: usize,
    out: &mut [u8],
    kernel: Kernel,
) -> Result<()> {
    let n_lanes = format.lanes;
    let corrupt = |what: &str| Error::corrupt(format!("chunk {index}: {what}"));
    // The lanes tile the chunk's end; the kernels may read on from their start to the stream's.
    let readable = |lanes: &[&[u8]]| {
        let total: usize = lanes.iter().map(|l| l.len()).sum();
        Readable::Region(&stored.rest[stored.len - total..])
    };
    let (&mode, body) = stored.bytes().split_first().ok_or_else(|| corrupt("empty"))?;
    match mode {
        MODE_RAW if body.len() == out.len() => out.copy_from_slice(body),
        MODE_CONSTANT if body.len() == 1 => out.fill(body[0]),
        MODE_CODED => {
            let lanes = split_lanes(body, n_lanes, format.version).map_err(|e| corrupt(e.message()))?;
            let lanes = &lanes[..n_lanes];
            dec.decode_lanes(kernel, lanes, &readable(lanes), out).map_err(|e| corrupt(e.message()))?;
        }
        MODE_OWN_TABLE => {
            if format.codec == Codec::Raw {
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
            let table =
                CodeTable::parse(format.codec, table_bytes, format.version).map_err(|e| corrupt(e.message()))?;
            let lanes = split_lanes(rest, n_lanes, format.version).map_err(|e| corrupt(e.message()))?;
            let lanes = &lanes[..n_lanes];
            with_decoder(&table, |own| own.decode_lanes(kernel, lanes, &readable(lanes), out))
                .map_err(|e| corrupt(e.message()))?;
        }
        MODE_RAW | MODE_CONSTANT => return Err(corrupt("stored length does not match the decoded length")),
        other => return Err(corrupt(&format!("unknown chunk mode {other}"))),
    }
    Ok(())
}

/// Splits a coded chunk body (lane lengths, then lanes) into its `n_lanes` lanes, which must
/// tile the body exactly.
pub(crate) fn split_lanes(body: &[u8], n_lanes: usize, version: u8) -> Result<[&[u8]; MAX_LANES]> {
    let mut lens = [0usize; MAX_LANES];
    let mut data = if version == 1 {
        let jump = 4 * n_lanes;
        if body.len() < jump {
            return Err(Error::corrupt("jump table truncated"));
        }
        for (l, len) in lens.iter_mut().take(n_lanes).enumerate() {
            *len = read_u32(body, 4 * l) as usize;
        }
        &body[jump..]
    } else {
        let used = crate::varint::read_lane_lengths(body, &mut lens[..n_lanes])?;
        &body[used..]
    };
    let mut lanes: [&[u8]; MAX_LANES] = [&[]; MAX_LANES];
    for (lane, &len) in lanes.iter_mut().zip(&lens).take(n_lanes) {
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

    /// Skewed pseudo-random bytes (also used by the encode side's tests).
    pub(super) fn sample(n: usize) -> Vec<u8> {
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
            let header_len = parse_header(&blob).unwrap().header_len;
            for i in (0..blob.len()).step_by(blob.len() / 97 + 1) {
                let mut bad = blob.clone();
                bad[i] ^= 0x10;
                for kernel in Kernel::available() {
                    let result = decode(&bad, &DecodeOptions { kernel, threads: Some(2) });
                    // A chunk is decoded before its checksum is checked, yet a flip in it is
                    // a checksum error whatever the decode made of it.
                    if i >= header_len {
                        assert!(matches!(result, Err(Error::Checksum(_))), "{codec:?} flip at {i}: {result:?}");
                    } else {
                        assert!(result.is_err(), "{codec:?} flip at {i}");
                    }
                }
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

    #[test]
    fn bad_options_are_rejected() {
        assert!(encode(b"x", &EncodeOptions { lanes: 0, ..Default::default() }).is_err());
        assert!(encode(b"x", &EncodeOptions { lanes: 33, ..Default::default() }).is_err());
        assert!(encode(b"x", &EncodeOptions { chunk_size: 10, ..Default::default() }).is_err());
        assert!(Codec::from_name("zip").is_err());
    }
}
