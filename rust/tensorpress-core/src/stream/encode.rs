//! The encode side of the chunked stream: tables fitted to the input, chunks coded (with their
//! own table where that pays) and the header, index and checksums around them. The layout is
//! the parent module's.

use super::{
    chunk_buffers, CodeTable, Codec, EncodeOptions, CHUNK_INDEX_ENTRY_BYTES, DEFAULT_CHUNK_SIZE, FIXED_HEADER_BYTES,
    MAX_LANES, MAX_TABLE_BYTES, MODE_CODED, MODE_CONSTANT, MODE_OWN_TABLE, MODE_RAW, OWN_TABLE_MIN_SAVING_PERMILLE,
    STREAM_MAGIC, STREAM_VERSION,
};
use crate::bits::{put_lanes, BitWriter, MAX_STRIDED_CODE_LEN};
use crate::codes::EncodeTable;
use crate::error::{Error, Result};
use crate::histogram::{histogram, merge, Histogram};
use crate::kernels::Kernel;
use crate::threads::{map_pieces, workers};
use crate::varint::{put_lane_lengths, MAX_VARINT_BYTES};

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
    encode_parts(input, opts, false).map(|(_, parts)| parts.into_vec())
}

/// As [`encode`], but never larger than the raw stream of the same bytes
/// ([`raw_stream_bound`]): when the code table costs more than coding saves, the stream is
/// written with the raw codec. Returns the codec the stream uses.
pub fn encode_compact(input: &[u8], opts: &EncodeOptions) -> Result<(Codec, Vec<u8>)> {
    encode_parts(input, opts, true).map(|(codec, parts)| (codec, parts.into_vec()))
}

/// [`encode`], or [`encode_compact`] with `compact`, the stream left in its [`StreamParts`]
/// (where it was coded in pieces) for a caller that copies it once into its own buffer.
pub fn encode_parts(input: &[u8], opts: &EncodeOptions, compact: bool) -> Result<(Codec, StreamParts)> {
    let whole = |blob: Vec<u8>| StreamParts { head: blob, chunks: Vec::new() };
    opts.validate()?;
    if opts.codec == Codec::Raw {
        return encode_with_table(input, &CodeTable::Raw, opts).map(|blob| (Codec::Raw, whole(blob)));
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
            return Ok((table.codec(), whole(blob)));
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
            (bits.div_ceil(8) as usize).saturating_add(3 + MAX_TABLE_BYTES + (MAX_VARINT_BYTES + 1) * opts.lanes)
        });
        coded.min(1 + chunk.len())
    };
    let chunks_bound: usize = input.chunks(opts.chunk_size).zip(hists).map(coded_bound).sum();
    let mut out = chunk_buffers::take(header_len + chunks_bound);
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
    let mut out = chunk_buffer(chunk.len());
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
        Some(own) => encode_chunk_into(out, chunk, Some(&own.codes), lanes, Some(&own.bytes)),
        None => encode_chunk_into(out, chunk, codes, lanes, None),
    }
}

/// A chunk's own table, ready to code with: its codes and its serialised bytes.
struct OwnTable {
    codes: EncodeTable,
    bytes: Vec<u8>,
}

/// The chunk's own table, if coding the chunk with it (table included) saves enough over the
/// stream's table.
fn own_table(table: &CodeTable, codes: Option<&EncodeTable>, hist: &Histogram) -> Result<Option<OwnTable>> {
    let Some(shared_bits) = codes.and_then(|c| c.coded_bits(hist)) else { return Ok(None) };
    let own = CodeTable::fit(table.codec(), hist)?;
    let Some(own_codes) = own.encode_table() else { return Ok(None) };
    let Some(own_bits) = own_codes.coded_bits(hist) else { return Ok(None) };
    let mut bytes = Vec::with_capacity(MAX_TABLE_BYTES);
    own.serialize(&mut bytes);
    let own_total = own_bits + 8 * (2 + bytes.len() as u64);
    Ok((own_total * 1000 < shared_bits * (1000 - OWN_TABLE_MIN_SAVING_PERMILLE))
        .then_some(OwnTable { codes: own_codes, bytes }))
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
    .1
    .into_vec())
}

/// Bytes of the raw-codec stream of `n` bytes in chunks of `chunk_size` when no chunk is
/// constant: the fixed header, the header CRC, 8 index bytes and 1 mode byte per chunk, and the
/// bytes themselves. No encoder output exceeds it.
pub fn raw_stream_bound(n: usize, chunk_size: usize) -> usize {
    let chunks = n.div_ceil(chunk_size.max(1));
    FIXED_HEADER_BYTES + 4 + chunks * (CHUNK_INDEX_ENTRY_BYTES + 1) + n
}

/// A finished stream in pieces: `head` (fixed header, table, chunk index and header CRC), then
/// `chunks` in order. Written end to end they are the stream; a caller that owns the final
/// buffer (a Python `bytes`, a file) copies each byte once instead of twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamParts {
    pub head: Vec<u8>,
    pub chunks: Vec<Vec<u8>>,
}

impl StreamParts {
    /// Bytes of the whole stream.
    pub fn len(&self) -> usize {
        self.head.len() + self.chunks.iter().map(Vec::len).sum::<usize>()
    }

    /// Never true: a stream always has its header.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the stream into `out`, which must be exactly [`StreamParts::len`] bytes long.
    pub fn write_into(&self, out: &mut [u8]) {
        assert_eq!(out.len(), self.len(), "StreamParts::write_into needs a buffer of the stream's length");
        write_streams_into([self], out, Some(1));
    }

    /// The stream's pieces in order: the head, then each chunk.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.head.as_slice()).chain(self.chunks.iter().map(Vec::as_slice))
    }

    /// The stream as one buffer.
    pub fn into_vec(mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.head);
        out.reserve_exact(self.chunks.iter().map(Vec::len).sum());
        for chunk in &self.chunks {
            out.extend_from_slice(chunk);
        }
        out
    }
}

/// Below this many bytes [`write_streams_into`] copies on the calling thread: a pool hand-off
/// costs more than the copy.
pub const PARALLEL_WRITE_MIN_BYTES: usize = 1 << 20;

/// Writes `streams` end to end into `out` (exactly their total length), their pieces copied on
/// the shared pool. `out` is typically fresh memory (a Python `bytes`): its page faults alone
/// made a one-thread copy a third of a two-thread encode.
pub fn write_streams_into<'a>(
    streams: impl IntoIterator<Item = &'a StreamParts>,
    out: &mut [u8],
    threads: Option<usize>,
) {
    let mut copies: Vec<(&mut [u8], &[u8])> = Vec::new();
    let mut rest = out;
    for piece in streams.into_iter().flat_map(StreamParts::pieces) {
        let (dst, tail) = std::mem::take(&mut rest).split_at_mut(piece.len());
        copies.push((dst, piece));
        rest = tail;
    }
    assert!(rest.is_empty(), "write_streams_into needs a buffer of the streams' total length");
    let total: usize = copies.iter().map(|(_, src)| src.len()).sum();
    let threads = if total < PARALLEL_WRITE_MIN_BYTES { Some(1) } else { threads };
    map_pieces(copies, threads, |(dst, src)| dst.copy_from_slice(src));
}

impl Drop for StreamParts {
    /// The buffers go back to the pool for the next stream's chunks (or whole stream).
    fn drop(&mut self) {
        let head = std::mem::take(&mut self.head);
        chunk_buffers::recycle(std::mem::take(&mut self.chunks).into_iter().chain([head]));
    }
}

/// Finishes the stream, or (with `compact`) the raw-codec stream of the same bytes when the
/// table costs more than coding saves. `raw_chunk(i)` returns the decoded bytes of chunk `i`
/// (only called for coded chunks, only in that case).
pub(crate) fn finish_stream(
    input_len: usize,
    table: &CodeTable,
    opts: &EncodeOptions,
    mut chunks: Vec<Vec<u8>>,
    compact: bool,
    raw_chunk: impl Fn(usize) -> Vec<u8>,
) -> (Codec, StreamParts) {
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
        let head = stream_head(input_len, table.codec(), &table_bytes, opts, &chunks);
        return (table.codec(), StreamParts { head, chunks });
    }
    for (i, c) in chunks.iter_mut().enumerate() {
        if is_coded(c) {
            let mut raw = Vec::with_capacity(1 + opts.chunk_size);
            raw.push(MODE_RAW);
            raw.extend_from_slice(&raw_chunk(i));
            *c = raw;
        }
    }
    let head = stream_head(input_len, Codec::Raw, &[], opts, &chunks);
    (Codec::Raw, StreamParts { head, chunks })
}

/// Header, chunk index and header CRC: everything before the chunks.
fn stream_head(
    input_len: usize,
    codec: Codec,
    table_bytes: &[u8],
    opts: &EncodeOptions,
    chunks: &[Vec<u8>],
) -> Vec<u8> {
    let header_len = FIXED_HEADER_BYTES + table_bytes.len() + chunks.len() * CHUNK_INDEX_ENTRY_BYTES + 4;
    let mut out = Vec::with_capacity(header_len);
    out.resize(FIXED_HEADER_BYTES + table_bytes.len(), 0);
    write_header_prefix(&mut out, input_len, codec, table_bytes, opts);
    for chunk in chunks {
        out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(chunk).to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Appends the mode byte, then (mode 3) the chunk's own table, then room for the largest
/// lane-length table. Returns where the lane lengths start; [`close_lanes`] writes them.
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
    out.resize(jump_at + MAX_VARINT_BYTES * n_lanes, 0);
    jump_at
}

/// Writes the lane lengths at `jump_at` and moves the lanes, coded after the room
/// [`coded_chunk_prefix`] left, down to just after them (one copy of the chunk within the
/// buffer, a few percent of coding it).
fn close_lanes(out: &mut Vec<u8>, jump_at: usize, lane_lens: &[u32]) {
    let lanes_at = jump_at + MAX_VARINT_BYTES * lane_lens.len();
    let mut table = Vec::with_capacity(MAX_VARINT_BYTES * MAX_LANES);
    put_lane_lengths(&mut table, lane_lens);
    out[jump_at..jump_at + table.len()].copy_from_slice(&table);
    let end = out.len();
    out.copy_within(lanes_at..end, jump_at + table.len());
    out.truncate(end - (lanes_at - jump_at - table.len()));
}

/// A buffer for the stored form of a chunk of `len` bytes: mode byte, own table and its length,
/// the largest lane-length table, and at most the chunk's own bytes.
fn chunk_buffer(len: usize) -> Vec<u8> {
    chunk_buffers::take(len + 3 + MAX_TABLE_BYTES + MAX_VARINT_BYTES * MAX_LANES)
}

pub(crate) fn encode_chunk(
    chunk: &[u8],
    codes: Option<&EncodeTable>,
    n_lanes: usize,
    own_table: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let mut out = chunk_buffer(chunk.len());
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
        close_lanes(out, jump_at, &lane_lens[..n_lanes]);
    } else {
        let mut lane_lens = [0u32; MAX_LANES];
        for (lane, lane_len) in lane_lens.iter_mut().take(n_lanes).enumerate() {
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
            *lane_len = bytes.len() as u32;
            out.extend_from_slice(&bytes);
            if out.len() - start > chunk.len() + MAX_VARINT_BYTES * n_lanes {
                return raw(out);
            }
        }
        close_lanes(out, jump_at, &lane_lens[..n_lanes]);
    }
    // A coded chunk must be strictly smaller than its raw form (mode byte included).
    if out.len() - start > chunk.len() {
        return raw(out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::tests::sample;

    #[test]
    fn streams_written_on_the_pool_are_the_streams_end_to_end() {
        let small = sample(50_000);
        let large: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for (data, chunk_size) in [(&small, 4096), (&large, 1 << 17), (&large, 1 << 20)] {
            let opts = EncodeOptions { chunk_size, threads: Some(2), ..Default::default() };
            let (_, first) = encode_parts(data, &opts, false).unwrap();
            let (_, second) = encode_parts(&data[..data.len() / 3], &opts, true).unwrap();
            let mut want = first.clone().into_vec();
            want.extend(second.clone().into_vec());
            for threads in [None, Some(1), Some(2), Some(3)] {
                let mut out = vec![0xA5u8; want.len()];
                write_streams_into([&first, &second], &mut out, threads);
                assert_eq!(out, want, "chunk_size={chunk_size} threads={threads:?}");
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
                    let (codec_used, parts) = finish_stream(data.len(), &table, &opts, chunks, compact, |i| {
                        data[i * opts.chunk_size..data.len().min((i + 1) * opts.chunk_size)].to_vec()
                    });
                    let mut written = vec![0u8; parts.len()];
                    parts.write_into(&mut written);
                    let assembled = parts.into_vec();
                    assert_eq!(written, assembled);
                    let what = format!("{codec:?} lanes={lanes} compact={compact} n={}", data.len());
                    match encode_in_place(data, &table, codes.as_ref(), &hists, &opts, compact).unwrap() {
                        Some(blob) => assert!(blob == assembled && codec_used == codec, "{what}"),
                        None => assert!(compact && codec_used == Codec::Raw, "{what}"),
                    }
                }
            }
        }
    }
}
