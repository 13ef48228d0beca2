//! Fused tensor paths: byte-plane split + encode and decode + merge in one pass per chunk,
//! straight from / into the caller's element buffer, chunk-parallel on the shared pool.
//!
//! Bit-identical to splitting the whole tensor into planes ([`Transform::split`]), coding each
//! plane as its own stream ([`crate::stream::encode`]) and merging the decoded planes back
//! ([`Transform::merge`]); only the intermediate full-size planes are gone.

mod encode;

pub use encode::{encode_planes, encode_planes_many, encode_planes_parts, EncodeJob, PlaneCodecs};

use crate::error::{Error, Result};
use crate::kernels::Kernel;
use crate::memory::populate;
use crate::planes::{Transform, MAX_ELEMENT_BYTES};
use crate::stream::{
    boxed_decoder, check_chunk, chunk_view, decode_chunk_checked, parse_header, ChunkDecoder, DecodeOptions,
    StoredChunk, StreamInfo,
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

/// Outputs at least this large are populated up front and merged with non-temporal stores
/// ([`Transform::merge_streaming`]); a smaller one may well be read soon, and the few lines a
/// plain store reads first cost nothing.
pub const STREAMING_MIN_BYTES: usize = 64 << 10;

/// A tensor whose headers passed every check.
struct Checked<'a> {
    blobs: Vec<&'a [u8]>,
    transform: Transform,
    infos: Vec<StreamInfo>,
    decoders: Vec<Box<dyn ChunkDecoder>>,
    count: usize,
    /// Merged with non-temporal stores.
    streaming: bool,
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
    let streaming = out_len >= STREAMING_MIN_BYTES && transform.has_streaming_merge();
    Ok(Checked { blobs, transform, infos, decoders, count, streaming })
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
    // Fresh pages are faulted in by every worker before the streaming merges write them
    // (crate::memory explains why); mapped ones are left alone.
    let streamed = tensors.iter().zip(outs.iter_mut()).filter(|(t, _)| t.streaming).map(|(_, o)| &mut **o);
    populate(streamed.collect(), opts.threads);
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
        // Raw chunks read straight from the stream, their checksums checked after the merge
        // (from cache); before any other error is reported, so a damaged chunk is still a
        // checksum error first.
        let mut unchecked: [Option<StoredChunk<'_>>; MAX_ELEMENT_BYTES] = [None; MAX_ELEMENT_BYTES];
        let check_raw = |unchecked: &[Option<StoredChunk<'_>>]| -> Result<()> {
            for (k, stored) in unchecked.iter().enumerate() {
                if let Some(stored) = stored {
                    check_chunk(*stored, i).map_err(|e| in_plane(k, &e))?;
                }
            }
            Ok(())
        };
        for (k, (info, slot)) in infos.iter().zip(scratch.iter_mut()).enumerate() {
            let (at, stored_len, crc) = info.chunks[i];
            let stored = StoredChunk::in_stream(tensor.blobs[k], at, stored_len, crc)?;
            match chunk_view(&*tensor.decoders[k], info.format(), stored, i, slot, kernel) {
                Ok((view, raw)) => {
                    views[k] = view;
                    unchecked[k] = raw.then_some(stored);
                }
                Err(e) => {
                    check_raw(&unchecked)?;
                    return Err(in_plane(k, &e));
                }
            }
        }
        let last = i + 1 == infos[0].chunks.len();
        if tensor.transform == Transform::Nibbles && tensor.count % 2 == 1 && last && views[0][len - 1] >> 4 != 0 {
            check_raw(&unchecked)?;
            return Err(Error::corrupt("the padding nibble of an odd-length int4 tensor is not zero"));
        }
        if tensor.streaming {
            tensor.transform.merge_streaming(&views[..infos.len()], dst);
        } else {
            tensor.transform.merge(&views[..infos.len()], dst);
        }
        check_raw(&unchecked)
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
