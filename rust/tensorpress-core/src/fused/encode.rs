//! The encode side of the fused paths: split + code per chunk, for one tensor or many at once
//! (every chunk of every tensor a work item on the shared pool).

use super::with_scratch;
use crate::codes::EncodeTable;
use crate::error::{Error, Result};
use crate::histogram::{entropy_bits, histogram, merge, Histogram};
use crate::planes::{Transform, MAX_ELEMENT_BYTES};
use crate::stream::{
    encode_chunk_fitted, finish_stream, raw_stream_bound, CodeTable, Codec, EncodeOptions, StreamParts,
    CHUNK_INDEX_ENTRY_BYTES, FIXED_HEADER_BYTES,
};
use crate::threads::{map_pieces, validate_threads};

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
    let job = EncodeJob { input, transform, codecs: codecs.clone(), opts: *opts };
    let mut streams = encode_planes_many(std::slice::from_ref(&job), opts.threads)?;
    Ok(streams.pop().unwrap_or_default())
}

/// One tensor of [`encode_planes_many`]: its elements, their transform, the plane codecs and
/// the stream options (`opts.threads` is ignored: the call's `threads` applies).
#[derive(Debug, Clone)]
pub struct EncodeJob<'a> {
    pub input: &'a [u8],
    pub transform: Transform,
    pub codecs: PlaneCodecs,
    pub opts: EncodeOptions,
}

/// [`encode_planes_parts`] of many tensors in one call: each pass (probe, histograms, coding)
/// runs over the chunks of every tensor together on the shared pool, so a model of many small
/// tensors (one or two chunks each) is coded on every core without a thread per tensor.
/// Streams are exactly those of one call per tensor. The first error fails the call.
pub fn encode_planes_many(jobs: &[EncodeJob<'_>], threads: Option<usize>) -> Result<Vec<Vec<(Codec, StreamParts)>>> {
    validate_threads(threads)?;
    let planned = jobs.iter().map(Planned::of).collect::<Result<Vec<_>>>()?;
    let mut hists: Vec<Vec<Vec<Histogram>>> = planned.iter().map(|p| vec![Vec::new(); p.n_chunks]).collect();
    // Pass 0: planes that a sample shows to be incoherent bytes (a float's low mantissa) are
    // stored raw without counting the rest of them: their histograms would cost as much as
    // coding the exponent plane.
    let probes: Vec<Option<usize>> = planned.iter().map(|p| raw_probe(&p.job.codecs, p.n_chunks)).collect();
    let every: Vec<Vec<bool>> = planned.iter().map(|p| vec![true; p.k_planes]).collect();
    let sampled: Vec<(usize, usize)> = units(&planned, |j, i| probes[j].is_some_and(|s| i % s == 0));
    for (&(j, i), h) in
        sampled.iter().zip(map_pieces(sampled.clone(), threads, |(j, i)| planned[j].hists(i, &every[j])))
    {
        hists[j][i] = h;
    }
    let mut counted = Vec::with_capacity(planned.len());
    for (j, p) in planned.iter().enumerate() {
        let mut counts = vec![true; p.k_planes];
        if let Some(stride) = probes[j] {
            for (k, count) in counts.iter_mut().enumerate() {
                let mut total = [0u64; 256];
                for i in (0..p.n_chunks).step_by(stride) {
                    merge(&mut total, &hists[j][i][k]);
                }
                *count = !surely_incompressible(&p.job.codecs, &total, p.n, &p.job.opts);
            }
        }
        counted.push(counts);
    }
    // Pass 1: per chunk, per plane histograms (those a probe has not settled).
    let rest = units(&planned, |j, i| probes[j].is_none_or(|s| i % s != 0));
    for (&(j, i), h) in rest.iter().zip(map_pieces(rest.clone(), threads, |(j, i)| planned[j].hists(i, &counted[j]))) {
        hists[j][i] = h;
    }
    let mut tables: Vec<Vec<CodeTable>> = Vec::with_capacity(planned.len());
    for (j, p) in planned.iter().enumerate() {
        let mut per_plane = Vec::with_capacity(p.k_planes);
        for k in 0..p.k_planes {
            if !counted[j][k] {
                per_plane.push(CodeTable::Raw);
                continue;
            }
            let mut total = [0u64; 256];
            for h in &hists[j] {
                merge(&mut total, &h[k]);
            }
            per_plane.push(choose_table(&p.job.codecs, k, &total, p.n, &p.job.opts)?);
        }
        tables.push(per_plane);
    }
    let codes: Vec<Vec<Option<EncodeTable>>> =
        tables.iter().map(|t| t.iter().map(CodeTable::encode_table).collect()).collect();
    // Pass 2: per chunk, split again and code every plane.
    let all = units(&planned, |_, _| true);
    let coded = map_pieces(all.clone(), threads, |(j, i)| planned[j].code(i, &tables[j], &codes[j], &hists[j][i]));
    let mut per_plane: Vec<Vec<Vec<Vec<u8>>>> =
        planned.iter().map(|p| (0..p.k_planes).map(|_| Vec::with_capacity(p.n_chunks)).collect()).collect();
    for (&(j, _), chunk) in all.iter().zip(coded) {
        for (k, c) in chunk?.into_iter().enumerate() {
            per_plane[j][k].push(c);
        }
    }
    Ok(planned
        .iter()
        .zip(per_plane)
        .zip(&tables)
        .map(|((p, planes), tables)| {
            planes
                .into_iter()
                .enumerate()
                .map(|(k, chunks)| {
                    let raw_chunk = |i: usize| p.with_planes(i, |planes| planes[k].to_vec());
                    let stream_opts = EncodeOptions { codec: tables[k].codec(), ..p.job.opts };
                    finish_stream(p.n, &tables[k], &stream_opts, chunks, true, raw_chunk)
                })
                .collect()
        })
        .collect())
}

/// (job, chunk) pairs in job-then-chunk order where `keep` holds.
fn units(planned: &[Planned<'_>], keep: impl Fn(usize, usize) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (j, p) in planned.iter().enumerate() {
        out.extend((0..p.n_chunks).filter(|&i| keep(j, i)).map(|i| (j, i)));
    }
    out
}

/// A job whose options and shape passed the checks, with its chunking.
struct Planned<'a> {
    job: &'a EncodeJob<'a>,
    /// Elements, symbols per plane, chunks per plane, planes.
    count: usize,
    n: usize,
    n_chunks: usize,
    k_planes: usize,
}

impl<'a> Planned<'a> {
    fn of(job: &'a EncodeJob<'a>) -> Result<Self> {
        job.opts.validate()?;
        let count = job.transform.count_of(job.input.len())?;
        let n = job.transform.plane_len(count);
        let k_planes = job.transform.planes();
        if let PlaneCodecs::PerPlane(list) = &job.codecs {
            if list.len() != k_planes {
                return Err(Error::invalid(format!(
                    "{} codecs for the {} planes of {}",
                    list.len(),
                    k_planes,
                    job.transform.name()
                )));
            }
        }
        Ok(Self { job, count, n, n_chunks: n.div_ceil(job.opts.chunk_size), k_planes })
    }

    /// Symbols [start, end) of every plane for chunk `i`.
    fn range(&self, i: usize) -> (usize, usize) {
        let cs = self.job.opts.chunk_size;
        (i * cs, (i * cs + cs).min(self.n))
    }

    /// Runs `f` on chunk `i` of every plane: the elements themselves where they are the one
    /// plane (bytes split into one plane: no copy), else split into per-worker scratch.
    fn with_planes<R>(&self, i: usize, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        let (start, end) = self.range(i);
        if self.job.transform == Transform::BytePlanes(1) {
            return f(&[&self.job.input[start..end]]);
        }
        with_scratch(self.k_planes, self.job.opts.chunk_size, |scratch| {
            self.job.transform.split(&self.job.input[self.job.transform.source_range(start, end, self.count)], scratch);
            let mut planes: [&[u8]; MAX_ELEMENT_BYTES] = [&[]; MAX_ELEMENT_BYTES];
            for (plane, chunk) in planes.iter_mut().zip(scratch.iter()) {
                *plane = &chunk[..end - start];
            }
            f(&planes[..self.k_planes])
        })
    }

    /// Chunk `i`'s histogram of every `counted` plane (zeros for the others).
    fn hists(&self, i: usize, counted: &[bool]) -> Vec<Histogram> {
        let exponent_only = counted.first() == Some(&true) && counted[1..].iter().all(|c| !c);
        let (start, end) = self.range(i);
        let source = &self.job.input[self.job.transform.source_range(start, end, self.count)];
        if let Some(exponents) = exponent_only.then(|| self.job.transform.exponent_histogram(source)).flatten() {
            let mut hists = vec![[0; 256]; self.k_planes];
            hists[0] = exponents;
            return hists;
        }
        self.with_planes(i, |planes| {
            planes.iter().zip(counted).map(|(p, &c)| if c { histogram(p) } else { [0; 256] }).collect()
        })
    }

    /// Chunk `i` of every plane, coded.
    fn code(
        &self,
        i: usize,
        tables: &[CodeTable],
        codes: &[Option<EncodeTable>],
        hists: &[Histogram],
    ) -> Result<Vec<Vec<u8>>> {
        self.with_planes(i, |planes| {
            planes
                .iter()
                .enumerate()
                .map(|(k, p)| encode_chunk_fitted(p, &tables[k], codes[k].as_ref(), &hists[k], self.job.opts.lanes))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of a bf16-like tensor: a smooth exponent byte and noisy low bytes.
    fn tensor(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| {
                let x = i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 7;
                if i % 2 == 1 {
                    0x3c + (x % 5) as u8
                } else {
                    x as u8
                }
            })
            .collect()
    }

    #[test]
    fn many_at_once_equals_one_call_each() {
        let inputs: Vec<Vec<u8>> =
            [0usize, 2, 1000, 9000, 40_000, 70_001].iter().enumerate().map(|(s, &n)| tensor(n, s as u32)).collect();
        let auto = PlaneCodecs::Auto { candidates: vec![Codec::Qlc, Codec::Huffman], min_saving_permille: 10 };
        let mut jobs = Vec::new();
        for (j, input) in inputs.iter().enumerate() {
            let (transform, codecs) = match j % 3 {
                0 => (Transform::Bf16Exponent, auto.clone()),
                1 => (Transform::BytePlanes(2), PlaneCodecs::PerPlane(vec![Codec::Huffman, Codec::Raw])),
                _ => (Transform::BytePlanes(1), PlaneCodecs::Fixed(Codec::ExpGolombRank)),
            };
            let input = &input[..input.len() - input.len() % 2];
            let opts =
                EncodeOptions { lanes: 1 + 7 * (j % 5), chunk_size: 4096, threads: Some(1), ..Default::default() };
            jobs.push(EncodeJob { input, transform, codecs, opts });
        }
        for threads in [Some(1), None] {
            let many = encode_planes_many(&jobs, threads).unwrap();
            assert_eq!(many.len(), jobs.len());
            for (job, streams) in jobs.iter().zip(many) {
                let alone = encode_planes_parts(job.input, job.transform, &job.codecs, &job.opts).unwrap();
                let flat =
                    |s: Vec<(Codec, StreamParts)>| s.into_iter().map(|(c, p)| (c, p.into_vec())).collect::<Vec<_>>();
                assert_eq!(flat(streams), flat(alone), "{:?} of {} bytes", job.transform, job.input.len());
            }
        }
        let bad = EncodeJob { codecs: PlaneCodecs::PerPlane(vec![Codec::Huffman]), ..jobs[0].clone() };
        assert!(encode_planes_many(&[jobs[1].clone(), bad], None).is_err());
        assert!(encode_planes_many(&[], None).unwrap().is_empty());
    }
}
