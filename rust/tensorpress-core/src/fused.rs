//! Fused tensor paths: byte-plane split + encode and decode + merge in one pass per chunk,
//! straight from / into the caller's element buffer, chunk-parallel on the shared pool.
//!
//! Bit-identical to splitting the whole tensor into planes ([`Transform::split`]), coding each
//! plane as its own stream ([`crate::stream::encode`]) and merging the decoded planes back
//! ([`Transform::merge`]); only the intermediate full-size planes are gone.

use crate::codes::EncodeTable;
use crate::error::{Error, Result};
use crate::histogram::{entropy_bits, histogram, merge, Histogram};
use crate::kernels::Kernel;
use crate::planes::{Transform, MAX_ELEMENT_BYTES};
use crate::stream::{
    boxed_decoder, chunk_view, decode_chunk_checked, encode_chunk_fitted, finish_stream, parse_header,
    raw_stream_bound, ChunkDecoder, CodeTable, Codec, DecodeOptions, EncodeOptions, StoredChunk, StreamInfo,
    StreamParts, CHUNK_INDEX_ENTRY_BYTES, FIXED_HEADER_BYTES,
};
use crate::threads::{map_pieces, try_for_each_piece, validate_threads};
use std::cell::RefCell;

thread_local! {
    /// Per-worker plane buffers, reused across chunks and calls: a fresh chunk-sized
    /// allocation per chunk would page-fault on every call.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `planes` zero-initialised scratch planes of `len` bytes each.
fn with_scratch<R>(planes: usize, len: usize, f: impl FnOnce(&mut [&mut [u8]]) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < planes * len {
            buf.resize(planes * len, 0);
        }
        let mut views: Vec<&mut [u8]> = buf[..planes * len].chunks_mut(len.max(1)).collect();
        views.resize_with(planes, Default::default);
        f(&mut views)
    })
}

/// Decodes the plane streams of one tensor (`blobs`, in plane order) and merges them into
/// `out`, the caller's buffer of exactly the tensor's bytes. Every stream's header and declared
/// size is checked against `out` before anything is written.
pub fn decode_planes_into(blobs: &[&[u8]], transform: Transform, out: &mut [u8], opts: &DecodeOptions) -> Result<()> {
    decode_many(vec![TensorJob { blobs: blobs.to_vec(), transform, out }], opts)
}

/// One tensor for [`decode_many`]: its plane streams (in plane order), its transform, and the
/// caller's buffer of exactly its bytes.
#[derive(Debug)]
pub struct TensorJob<'a> {
    pub blobs: Vec<&'a [u8]>,
    pub transform: Transform,
    pub out: &'a mut [u8],
}

/// A tensor whose headers passed every check.
struct Checked<'a> {
    blobs: Vec<&'a [u8]>,
    transform: Transform,
    infos: Vec<StreamInfo>,
    decoders: Vec<Box<dyn ChunkDecoder>>,
    count: usize,
}

/// Parses every plane header and checks it against an output of `out_len` bytes.
fn check<'a>(blobs: Vec<&'a [u8]>, transform: Transform, out_len: usize) -> Result<Checked<'a>> {
    let count = transform.count_of(out_len)?;
    if blobs.len() != transform.planes() {
        return Err(Error::format(format!(
            "{} needs {} plane streams, got {}",
            transform.name(),
            transform.planes(),
            blobs.len()
        )));
    }
    let plane_len = transform.plane_len(count);
    let infos = blobs.iter().map(|b| parse_header(b)).collect::<Result<Vec<StreamInfo>>>()?;
    for (k, info) in infos.iter().enumerate() {
        if info.decoded_len > plane_len as u64 {
            return Err(Error::format(format!(
                "plane {k} decodes to {} bytes, more than the {plane_len} the tensor holds",
                info.decoded_len
            )));
        }
        if info.decoded_len != plane_len as u64 {
            return Err(Error::corrupt(format!("plane {k} holds {} bytes, expected {plane_len}", info.decoded_len)));
        }
    }
    let decoders = infos.iter().map(|i| boxed_decoder(&i.table)).collect();
    Ok(Checked { blobs, transform, infos, decoders, count })
}

/// Decodes many tensors at once: every chunk of every tensor is one work item on the shared
/// pool, so a model of many small tensors (one chunk each) still loads on every core. All
/// headers are checked against their outputs before anything is written.
pub fn decode_many(jobs: Vec<TensorJob<'_>>, opts: &DecodeOptions) -> Result<()> {
    validate_threads(opts.threads)?;
    let mut tensors = Vec::with_capacity(jobs.len());
    let mut outs = Vec::with_capacity(jobs.len());
    for job in jobs {
        let checked = check(job.blobs, job.transform, job.out.len())?;
        tensors.push(checked);
        outs.push(job.out);
    }
    // (tensor, chunk, output bytes of that chunk); planes cut into different chunk sizes are
    // decoded whole instead (`unaligned`).
    let mut units: Vec<(usize, usize, &mut [u8])> = Vec::new();
    let mut unaligned = Vec::new();
    for (t, (tensor, out)) in tensors.iter().zip(outs).enumerate() {
        if tensor.count == 0 {
            continue;
        }
        let chunk_size = tensor.infos[0].chunk_size;
        if tensor.infos.iter().any(|i| i.chunk_size != chunk_size) {
            unaligned.push((t, out));
            continue;
        }
        let out_chunk = match tensor.transform {
            Transform::Nibbles => 2 * chunk_size,
            t => chunk_size * t.element_bytes(),
        };
        units.extend(out.chunks_mut(out_chunk).enumerate().map(|(i, dst)| (t, i, dst)));
    }
    try_for_each_piece(units, opts.threads, |(t, i, dst)| decode_unit(&tensors[t], i, dst, opts.kernel))?;
    for (t, out) in unaligned {
        decode_unaligned(&tensors[t], out, opts)?;
    }
    Ok(())
}

/// Chunk `i` of every plane of one tensor, merged into `dst`.
fn decode_unit(tensor: &Checked<'_>, i: usize, dst: &mut [u8], kernel: Kernel) -> Result<()> {
    let infos = &tensor.infos;
    let len = infos[0].chunk_decoded_len(i);
    if tensor.transform == Transform::BytePlanes(1) {
        // The one plane is the tensor's bytes: decode in place.
        let (at, stored_len, crc) = infos[0].chunks[i];
        let stored = StoredChunk::in_stream(tensor.blobs[0], at, stored_len, crc)?;
        return decode_chunk_checked(&*tensor.decoders[0], infos[0].format(), stored, i, dst, kernel);
    }
    with_scratch(infos.len(), len, |scratch| {
        let mut views: [&[u8]; MAX_ELEMENT_BYTES] = [&[]; MAX_ELEMENT_BYTES];
        for (k, (info, slot)) in infos.iter().zip(scratch.iter_mut()).enumerate() {
            let (at, stored_len, crc) = info.chunks[i];
            let stored = StoredChunk::in_stream(tensor.blobs[k], at, stored_len, crc)?;
            views[k] = chunk_view(&*tensor.decoders[k], info.format(), stored, i, slot, kernel)
                .map_err(|e| in_plane(k, &e))?;
        }
        let last = i + 1 == infos[0].chunks.len();
        if tensor.transform == Transform::Nibbles && tensor.count % 2 == 1 && last && views[0][len - 1] >> 4 != 0 {
            return Err(Error::corrupt("the padding nibble of an odd-length int4 tensor is not zero"));
        }
        tensor.transform.merge(&views[..infos.len()], dst);
        Ok(())
    })
}

/// Prefixes an error's message with the plane it happened in, keeping its kind.
fn in_plane(k: usize, e: &Error) -> Error {
    let msg = format!("plane {k}: {}", e.message());
    match e {
        Error::Format(_) => Error::Format(msg),
        Error::Corrupt(_) => Error::Corrupt(msg),
        Error::Checksum(_) => Error::Checksum(msg),
        Error::InvalidArgument(_) => Error::InvalidArgument(msg),
    }
}

/// Plane streams cut into different chunk sizes (other encoders may do that): decode each plane
/// whole, then merge in parallel. Allocation is bounded by `out`'s size, checked by the caller.
fn decode_unaligned(tensor: &Checked<'_>, out: &mut [u8], opts: &DecodeOptions) -> Result<()> {
    let transform = tensor.transform;
    let planes = tensor.blobs.iter().map(|b| crate::stream::decode(b, opts)).collect::<Result<Vec<Vec<u8>>>>()?;
    if transform == Transform::Nibbles && out.len() % 2 == 1 && planes[0].last().is_some_and(|&b| b >> 4 != 0) {
        return Err(Error::corrupt("the padding nibble of an odd-length int4 tensor is not zero"));
    }
    let block = 1 << 16;
    let out_block = match transform {
        Transform::Nibbles => 2 * block,
        t => block * t.element_bytes(),
    };
    map_pieces(out.chunks_mut(out_block).enumerate().collect(), opts.threads, |(i, dst)| {
        let start = i * block;
        let views: Vec<&[u8]> = planes.iter().map(|p| &p[start.min(p.len())..]).collect();
        transform.merge(&views, dst);
    });
    Ok(())
}

/// Plane bytes per work item of [`split_into`]: big enough that a pool hand-off is noise.
const SPLIT_PIECE_BYTES: usize = 1 << 20;

/// Splits the elements in `input` into the caller's `planes` (one buffer per plane of
/// `transform`, each exactly the plane length), in pieces on the shared pool. The bytes equal
/// [`Transform::split`] of the whole input; sizes are checked before anything is written.
pub fn split_into(input: &[u8], transform: Transform, planes: &mut [&mut [u8]], threads: Option<usize>) -> Result<()> {
    split_in_pieces(input, transform, planes, threads, SPLIT_PIECE_BYTES)
}

fn split_in_pieces(
    input: &[u8],
    transform: Transform,
    planes: &mut [&mut [u8]],
    threads: Option<usize>,
    piece: usize,
) -> Result<()> {
    validate_threads(threads)?;
    let count = transform.count_of(input.len())?;
    let n = transform.plane_len(count);
    if planes.len() != transform.planes() {
        return Err(Error::invalid(format!(
            "{} has {} planes, got {} buffers",
            transform.name(),
            transform.planes(),
            planes.len()
        )));
    }
    if let Some(bad) = planes.iter().find(|p| p.len() != n) {
        return Err(Error::invalid(format!("a plane buffer holds {} bytes, the planes {n}", bad.len())));
    }
    let piece = piece.max(1);
    let mut pieces: Vec<(usize, Vec<&mut [u8]>)> = Vec::with_capacity(n.div_ceil(piece));
    let mut rests: Vec<&mut [u8]> = planes.iter_mut().map(|p| &mut **p).collect();
    let mut start = 0;
    while start < n {
        let len = piece.min(n - start);
        let mut heads = Vec::with_capacity(rests.len());
        for rest in &mut rests {
            let (head, tail) = std::mem::take(rest).split_at_mut(len);
            heads.push(head);
            *rest = tail;
        }
        pieces.push((start, heads));
        start += len;
    }
    try_for_each_piece(pieces, threads, |(start, mut heads)| {
        let end = start + heads[0].len();
        transform.split(&input[transform.source_range(start, end, count)], &mut heads);
        Ok(())
    })
}

/// Which codec each plane gets.
#[derive(Debug, Clone)]
pub enum PlaneCodecs {
    /// The same codec for every plane.
    Fixed(Codec),
    /// One codec per plane, in plane order (a planner's choice).
    PerPlane(Vec<Codec>),
    /// Per plane, the candidate with the smallest predicted stream, or raw unless it saves at
    /// least `min_saving_permille` thousandths of the raw stream.
    Auto { candidates: Vec<Codec>, min_saving_permille: u32 },
}

/// Predicted stream bytes of `n` symbols coded with `table` in chunks (header, table, index,
/// lane lengths and padding included).
fn predicted_size(table: &CodeTable, hist: &Histogram, n: usize, opts: &EncodeOptions) -> Option<u64> {
    let chunks = n.div_ceil(opts.chunk_size) as u64;
    let Some(codes) = table.encode_table() else { return Some(raw_stream_bound(n, opts.chunk_size) as u64) };
    let bits = codes.coded_bits(hist)?;
    let mut table_bytes = Vec::new();
    table.serialize(&mut table_bytes);
    // Per lane: its length (one or two varint bytes) and up to a byte of padding.
    let per_chunk = (CHUNK_INDEX_ENTRY_BYTES + 1 + 2 * opts.lanes) as u64;
    // Rounded down, as tensorpress's Python size model does, so both choose alike.
    Some((FIXED_HEADER_BYTES + 4 + table_bytes.len()) as u64 + chunks * per_chunk + bits / 8)
}

/// Planes of at least this many chunks are probed before they are counted in full.
const RAW_PROBE_MIN_CHUNKS: usize = 2;
/// A probe counts every this-many-th chunk, from the first.
const RAW_PROBE_STRIDE: usize = 8;
/// Bits per symbol a probed plane's entropy must clear the break-even point by before the plane
/// is stored raw uncounted: covers the sample's estimation error with a wide margin (a chunk of
/// 128 Ki symbols misestimates the entropy of its source by about 0.001 bit).
const RAW_PROBE_MARGIN_BITS: f64 = 0.02;

/// The chunk stride of a raw probe, where one pays: automatic codec choice, enough chunks.
fn raw_probe(codecs: &PlaneCodecs, n_chunks: usize) -> Option<usize> {
    let auto = matches!(codecs, PlaneCodecs::Auto { .. });
    (auto && n_chunks >= RAW_PROBE_MIN_CHUNKS).then_some(RAW_PROBE_STRIDE)
}

/// Whether no prefix code can save the required share on a plane of `n` symbols whose sampled
/// histogram is `sample`: every candidate codes at least `n` times the entropy, so a sampled
/// entropy clearly above the break-even point means the plane will be stored raw anyway.
fn surely_incompressible(codecs: &PlaneCodecs, sample: &Histogram, n: usize, opts: &EncodeOptions) -> bool {
    let PlaneCodecs::Auto { min_saving_permille, .. } = codecs else { return false };
    let raw_bits = 8.0 * raw_stream_bound(n, opts.chunk_size) as f64;
    let keep = 1.0 - f64::from((*min_saving_permille).min(1000)) / 1000.0;
    (entropy_bits(sample) - RAW_PROBE_MARGIN_BITS) * n as f64 > raw_bits * keep
}

fn choose_table(
    codecs: &PlaneCodecs,
    plane: usize,
    hist: &Histogram,
    n: usize,
    opts: &EncodeOptions,
) -> Result<CodeTable> {
    match codecs {
        PlaneCodecs::Fixed(c) => CodeTable::fit(*c, hist),
        PlaneCodecs::PerPlane(list) => CodeTable::fit(list[plane], hist),
        PlaneCodecs::Auto { candidates, min_saving_permille } => {
            if n == 0 {
                return Ok(CodeTable::Raw);
            }
            let raw = raw_stream_bound(n, opts.chunk_size) as u64;
            let mut best: Option<(u64, CodeTable)> = None;
            for &c in candidates {
                let table = CodeTable::fit(c, hist)?;
                if let Some(size) = predicted_size(&table, hist, n, opts) {
                    if best.as_ref().is_none_or(|(b, _)| size < *b) {
                        best = Some((size, table));
                    }
                }
            }
            Ok(match best {
                Some((size, table)) if size * 1000 <= raw * u64::from(1000 - (*min_saving_permille).min(1000)) => table,
                _ => CodeTable::Raw,
            })
        }
    }
}

/// Splits the elements in `input` into the planes of `transform` and codes each plane as a
/// stream, one pass per chunk (split into per-worker scratch, then code) with no full-size
/// intermediate planes. Each stream equals [`crate::stream::encode_compact`] of its plane: never
/// larger than the plane's raw stream. Returns (codec, stream) per plane; the codec is the
/// stream's own (raw when coding did not pay). `opts.codec` is ignored: `codecs` decides.
pub fn encode_planes(
    input: &[u8],
    transform: Transform,
    codecs: &PlaneCodecs,
    opts: &EncodeOptions,
) -> Result<Vec<(Codec, Vec<u8>)>> {
    Ok(encode_planes_parts(input, transform, codecs, opts)?.into_iter().map(|(c, p)| (c, p.into_vec())).collect())
}

/// [`encode_planes`], each stream left in its [`StreamParts`] for the caller to copy once into
/// its final buffer.
pub fn encode_planes_parts(
    input: &[u8],
    transform: Transform,
    codecs: &PlaneCodecs,
    opts: &EncodeOptions,
) -> Result<Vec<(Codec, StreamParts)>> {
    opts.validate()?;
    let count = transform.count_of(input.len())?;
    let n = transform.plane_len(count);
    let k_planes = transform.planes();
    if let PlaneCodecs::PerPlane(list) = codecs {
        if list.len() != k_planes {
            return Err(Error::invalid(format!(
                "{} codecs for the {} planes of {}",
                list.len(),
                k_planes,
                transform.name()
            )));
        }
    }
    let cs = opts.chunk_size;
    let n_chunks = n.div_ceil(cs);
    let split_chunk = |i: usize, scratch: &mut [&mut [u8]]| {
        let (start, end) = (i * cs, (i * cs + cs).min(n));
        transform.split(&input[transform.source_range(start, end, count)], scratch);
        end - start
    };
    {
        let chunk_hists = |chunks: Vec<usize>, counted: &[bool]| {
            let exponent_only = counted.first() == Some(&true) && counted[1..].iter().all(|c| !c);
            map_pieces(chunks, opts.threads, |i| {
                let (start, end) = (i * cs, (i * cs + cs).min(n));
                let source = &input[transform.source_range(start, end, count)];
                if let Some(exponents) = exponent_only.then(|| transform.exponent_histogram(source)).flatten() {
                    let mut hists = vec![[0; 256]; k_planes];
                    hists[0] = exponents;
                    return hists;
                }
                with_scratch(k_planes, cs, |scratch| {
                    let len = split_chunk(i, scratch);
                    let hist = |(p, &c): (&&mut [u8], &bool)| if c { histogram(&p[..len]) } else { [0; 256] };
                    scratch.iter().zip(counted).map(hist).collect::<Vec<Histogram>>()
                })
            })
        };
        // Pass 0: planes that a sample shows to be incoherent bytes (a float's low mantissa)
        // are stored raw without counting the rest of them: their histograms would cost as
        // much as coding the exponent plane.
        let every_plane = vec![true; k_planes];
        let probe = raw_probe(codecs, n_chunks);
        let mut hists: Vec<Vec<Histogram>> = vec![Vec::new(); n_chunks];
        let mut surely_raw = vec![false; k_planes];
        if let Some(stride) = probe {
            let sample: Vec<usize> = (0..n_chunks).step_by(stride).collect();
            for (i, h) in sample.iter().zip(chunk_hists(sample.clone(), &every_plane)) {
                hists[*i] = h;
            }
            for (k, raw) in surely_raw.iter_mut().enumerate() {
                let mut total = [0u64; 256];
                for &i in &sample {
                    merge(&mut total, &hists[i][k]);
                }
                *raw = surely_incompressible(codecs, &total, n, opts);
            }
        }
        // Pass 1: per chunk, per plane histograms (those a probe has not settled).
        let counted: Vec<bool> = surely_raw.iter().map(|r| !r).collect();
        let rest: Vec<usize> = (0..n_chunks).filter(|i| probe.is_none_or(|s| i % s != 0)).collect();
        for (i, h) in rest.iter().zip(chunk_hists(rest.clone(), &counted)) {
            hists[*i] = h;
        }
        let mut tables = Vec::with_capacity(k_planes);
        for k in 0..k_planes {
            if surely_raw[k] {
                tables.push(CodeTable::Raw);
                continue;
            }
            let mut total = [0u64; 256];
            for h in &hists {
                merge(&mut total, &h[k]);
            }
            tables.push(choose_table(codecs, k, &total, n, opts)?);
        }
        let codes: Vec<Option<EncodeTable>> = tables.iter().map(CodeTable::encode_table).collect();
        // Pass 2: per chunk, split again and code every plane.
        let coded: Vec<Vec<Vec<u8>>> = map_pieces((0..n_chunks).collect(), opts.threads, |i| {
            with_scratch(k_planes, cs, |scratch| {
                let len = split_chunk(i, scratch);
                (0..k_planes)
                    .map(|k| {
                        encode_chunk_fitted(&scratch[k][..len], &tables[k], codes[k].as_ref(), &hists[i][k], opts.lanes)
                    })
                    .collect::<Result<Vec<_>>>()
            })
        })
        .into_iter()
        .collect::<Result<_>>()?;
        let mut per_plane: Vec<Vec<Vec<u8>>> = (0..k_planes).map(|_| Vec::with_capacity(n_chunks)).collect();
        for chunk in coded {
            for (k, c) in chunk.into_iter().enumerate() {
                per_plane[k].push(c);
            }
        }
        let streams = per_plane
            .into_iter()
            .enumerate()
            .map(|(k, chunks)| {
                let raw_chunk = |i: usize| {
                    with_scratch(k_planes, cs, |scratch| {
                        let len = split_chunk(i, scratch);
                        scratch[k][..len].to_vec()
                    })
                };
                let stream_opts = EncodeOptions { codec: tables[k].codec(), ..*opts };
                finish_stream(n, &tables[k], &stream_opts, chunks, true, raw_chunk)
            })
            .collect();
        Ok(streams)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_in_pieces_equals_one_split() {
        let input: Vec<u8> = (0..4099u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
        for t in [Transform::Bf16Exponent, Transform::Fp32Exponent, Transform::Nibbles, Transform::BytePlanes(2)] {
            for len in [0, 1, 2, 3, 8, 4096] {
                let data = &input[..len - len % t.element_bytes()];
                let n = t.plane_len(t.count_of(data.len()).unwrap());
                let mut whole = vec![vec![0u8; n]; t.planes()];
                t.split(data, &mut whole.iter_mut().map(Vec::as_mut_slice).collect::<Vec<_>>());
                for (piece, threads) in [(1, Some(3)), (7, None), (64, Some(1)), (SPLIT_PIECE_BYTES, None)] {
                    let mut got = vec![vec![0xAAu8; n]; t.planes()];
                    let mut views: Vec<&mut [u8]> = got.iter_mut().map(Vec::as_mut_slice).collect();
                    split_in_pieces(data, t, &mut views, threads, piece).unwrap();
                    assert_eq!(got, whole, "{t:?} len {len} piece {piece}");
                }
            }
        }
    }

    #[test]
    fn split_into_refuses_wrong_buffers() {
        let data = [1u8, 2, 3, 4];
        let mut a = [0u8; 2];
        let mut b = [0u8; 3];
        let t = Transform::Bf16Exponent;
        assert!(split_into(&data, t, &mut [&mut a[..], &mut b[..]], None).is_err());
        assert!(split_into(&data, t, &mut [&mut a[..]], None).is_err());
        assert!(split_into(&data[..3], t, &mut [&mut a[..], &mut b[..2]], None).is_err());
        assert!(split_into(&data, t, &mut [&mut a[..], &mut b[..2]], Some(0)).is_err());
        split_into(&data, t, &mut [&mut a[..], &mut b[..2]], None).unwrap();
    }
}
