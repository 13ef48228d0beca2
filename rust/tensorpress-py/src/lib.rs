//! `tensorpress._core`: type conversion, GIL release and error mapping only. Algorithms live
//! in tensorpress-core.

// pyo3 extracts `PyBuffer` arguments by value; the buffer is released when it drops.
#![allow(clippy::needless_pass_by_value)]

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyType};
use tensorpress_core::codes::huffman::HuffmanTable;
use tensorpress_core::fused::{self, PlaneCodecs};
use tensorpress_core::histogram::histogram;
use tensorpress_core::planes::Transform;
use tensorpress_core::stream::{
    self, decode_chunk_into, parse_header, Codec, DecodeOptions, EncodeOptions, StreamParts,
};
use tensorpress_core::{Error, Kernel};

/// The one place core errors become Python exceptions (classes from `tensorpress.errors`).
fn to_py_err(py: Python<'_>, err: &Error) -> PyErr {
    let class = match err {
        Error::Format(_) => "FormatError",
        Error::Corrupt(_) => "CorruptDataError",
        Error::Checksum(_) => "ChecksumError",
        Error::InvalidArgument(_) => "InvalidArgumentError",
    };
    let lookup = py
        .import("tensorpress.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
    match lookup {
        Ok(ty) => PyErr::from_type(ty, err.message().to_owned()),
        Err(import_failure) => import_failure,
    }
}

/// An `InvalidArgumentError` (bad argument from the caller).
fn invalid(msg: &str) -> PyErr {
    Python::attach(|py| to_py_err(py, &Error::InvalidArgument(msg.to_owned())))
}

/// A size or count argument: negative values are refused as invalid arguments (not overflow).
fn size_arg(name: &str, value: i64) -> PyResult<usize> {
    usize::try_from(value).map_err(|_| invalid(&format!("{name} must be >= 0, got {value}")))
}

/// `threads=`: None (all cores) or 1..=MAX_THREADS, checked the same way by every entry point.
fn threads_arg(threads: Option<i64>) -> PyResult<Option<usize>> {
    let threads = threads.map(|t| usize::try_from(t).unwrap_or(0));
    tensorpress_core::threads::validate_threads(threads).map_err(|e| Python::attach(|py| to_py_err(py, &e)))?;
    Ok(threads)
}

/// A read-only view of a C-contiguous byte buffer that may cross a GIL release: the
/// `PyBuffer` it came from is held by the caller for the whole call, keeping it alive.
#[derive(Clone, Copy)]
struct SharedBytes {
    ptr: *const u8,
    len: usize,
}
// SAFETY: the pointer refers to a buffer pinned by a live PyBuffer for the duration of the call.
unsafe impl Send for SharedBytes {}

impl SharedBytes {
    fn of(buf: &PyBuffer<u8>) -> PyResult<Self> {
        if !buf.is_c_contiguous() {
            return Err(invalid("buffer must be C-contiguous"));
        }
        Ok(Self { ptr: buf.buf_ptr() as *const u8, len: buf.len_bytes() })
    }
    fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: see the type's invariant; len comes from the same buffer.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A writable view, same invariant as [`SharedBytes`]; the caller owns the memory.
#[derive(Clone, Copy)]
struct SharedBytesMut {
    ptr: *mut u8,
    len: usize,
}
// SAFETY: as for SharedBytes; Python code must not touch the array during the call.
unsafe impl Send for SharedBytesMut {}

impl SharedBytesMut {
    fn of(buf: &PyBuffer<u8>) -> PyResult<Self> {
        if buf.readonly() {
            return Err(invalid("output buffer is read-only"));
        }
        if !buf.is_c_contiguous() {
            return Err(invalid("output buffer must be C-contiguous"));
        }
        Ok(Self { ptr: buf.buf_ptr().cast::<u8>(), len: buf.len_bytes() })
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: see the type's invariant.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

fn parse_kernel(py: Python<'_>, name: &str) -> PyResult<Kernel> {
    Kernel::from_name(name).map_err(|e| to_py_err(py, &e))
}

/// Encodes bytes into a tensorpress entropy stream (`compact`: the raw codec where the table
/// would cost more than coding saves).
#[pyfunction]
#[pyo3(signature = (data, codec="qlc", lanes=stream::DEFAULT_LANES as i64, chunk_size=stream::DEFAULT_CHUNK_SIZE as i64, threads=None, compact=false))]
fn encode<'py>(
    py: Python<'py>,
    data: PyBuffer<u8>,
    codec: &str,
    lanes: i64,
    chunk_size: i64,
    threads: Option<i64>,
    compact: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let codec = Codec::from_name(codec).map_err(|e| to_py_err(py, &e))?;
    let input = SharedBytes::of(&data)?;
    let opts = encode_options(codec, lanes, chunk_size, threads)?;
    let (_, parts) =
        py.detach(move || stream::encode_parts(input.as_slice(), &opts, compact)).map_err(|e| to_py_err(py, &e))?;
    bytes_filled_without_gil(py, parts.len(), |buf| stream::write_streams_into([&parts], buf, opts.threads))
}

fn encode_options(codec: Codec, lanes: i64, chunk_size: i64, threads: Option<i64>) -> PyResult<EncodeOptions> {
    let opts = EncodeOptions {
        codec,
        lanes: size_arg("lanes", lanes)?,
        chunk_size: size_arg("chunk_size", chunk_size)?,
        threads: threads_arg(threads)?,
    };
    opts.validate().map_err(|e| Python::attach(|py| to_py_err(py, &e)))?;
    Ok(opts)
}

/// Splits a tensor's element bytes into the planes of `transform` and codes each plane, one
/// pass per chunk. `codec` is one codec for every plane, or "auto": per plane the smallest of
/// `candidates`, or raw unless it saves `min_saving` of the raw size; `plane_codecs` (one per
/// plane) overrides it. Returns the codec and stream length of each plane and the streams end
/// to end in one `bytes`, written straight from the coded chunks (one copy, GIL released).
#[pyfunction]
#[pyo3(signature = (data, transform, width, codec="auto", candidates=vec![], min_saving=0.01, lanes=stream::DEFAULT_LANES as i64, chunk_size=stream::DEFAULT_CHUNK_SIZE as i64, threads=None, plane_codecs=None))]
#[allow(clippy::too_many_arguments)] // mirrors the Python signature
fn encode_planes<'py>(
    py: Python<'py>,
    data: PyBuffer<u8>,
    transform: &str,
    width: i64,
    codec: &str,
    candidates: Vec<String>,
    min_saving: f64,
    lanes: i64,
    chunk_size: i64,
    threads: Option<i64>,
    plane_codecs: Option<Vec<String>>,
) -> PyResult<JoinedPlanes<'py>> {
    let transform = Transform::from_name(transform, size_arg("width", width)?).map_err(|e| to_py_err(py, &e))?;
    let codecs = plane_codecs_arg(py, codec, &candidates, min_saving, plane_codecs)?;
    let opts = encode_options(Codec::Raw, lanes, chunk_size, threads)?;
    let input = SharedBytes::of(&data)?;
    let planes = py
        .detach(move || fused::encode_planes_parts(input.as_slice(), transform, &codecs, &opts))
        .map_err(|e| to_py_err(py, &e))?;
    joined_planes(py, &planes, opts.threads)
}

/// [`encode_planes`] of many tensors in one call, every chunk of every tensor a work item on
/// the shared pool (a model of many small tensors is coded on every core). `jobs` holds
/// `(data, transform, width, lanes, plane_codecs)` per tensor (`plane_codecs` `None`: `codec`,
/// `candidates` and `min_saving` decide, as for `encode_planes`). Returns what
/// `encode_planes` returns, per tensor, in order.
#[pyfunction]
#[pyo3(signature = (jobs, codec="auto", candidates=vec![], min_saving=0.01, chunk_size=stream::DEFAULT_CHUNK_SIZE as i64, threads=None))]
fn encode_planes_many<'py>(
    py: Python<'py>,
    jobs: Vec<PlanesJobArg>,
    codec: &str,
    candidates: Vec<String>,
    min_saving: f64,
    chunk_size: i64,
    threads: Option<i64>,
) -> PyResult<Vec<JoinedPlanes<'py>>> {
    let mut prepared = Vec::with_capacity(jobs.len());
    for (data, transform, width, lanes, plane_codecs) in &jobs {
        let transform = Transform::from_name(transform, size_arg("width", *width)?).map_err(|e| to_py_err(py, &e))?;
        let codecs = plane_codecs_arg(py, codec, &candidates, min_saving, plane_codecs.clone())?;
        let opts = encode_options(Codec::Raw, *lanes, chunk_size, threads)?;
        prepared.push((SharedBytes::of(data)?, transform, codecs, opts));
    }
    let threads = threads_arg(threads)?;
    let encoded = py
        .detach(move || {
            let jobs: Vec<fused::EncodeJob<'_>> = prepared
                .iter()
                .map(|(input, transform, codecs, opts)| fused::EncodeJob {
                    input: input.as_slice(),
                    transform: *transform,
                    codecs: codecs.clone(),
                    opts: *opts,
                })
                .collect();
            fused::encode_planes_many(&jobs, threads)
        })
        .map_err(|e| to_py_err(py, &e))?;
    encoded.iter().map(|planes| joined_planes(py, planes, threads)).collect()
}

/// One tensor of `encode_planes_many`: data, transform, width, lanes, plane codecs.
type PlanesJobArg = (PyBuffer<u8>, String, i64, i64, Option<Vec<String>>);

/// Codec per plane, stream length per plane, the streams end to end.
type JoinedPlanes<'py> = (Vec<&'static str>, Vec<usize>, Bound<'py, PyBytes>);

/// The plane codecs of `encode_planes` arguments.
fn plane_codecs_arg(
    py: Python<'_>,
    codec: &str,
    candidates: &[String],
    min_saving: f64,
    plane_codecs: Option<Vec<String>>,
) -> PyResult<PlaneCodecs> {
    let names = |list: &[String]| {
        list.iter().map(|c| Codec::from_name(c)).collect::<Result<Vec<_>, _>>().map_err(|e| to_py_err(py, &e))
    };
    Ok(if let Some(list) = plane_codecs {
        PlaneCodecs::PerPlane(names(&list)?)
    } else if codec == "auto" {
        if !(0.0..=1.0).contains(&min_saving) {
            return Err(invalid(&format!("min_saving must be within [0, 1], got {min_saving}")));
        }
        PlaneCodecs::Auto { candidates: names(candidates)?, min_saving_permille: (min_saving * 1000.0).round() as u32 }
    } else {
        PlaneCodecs::Fixed(Codec::from_name(codec).map_err(|e| to_py_err(py, &e))?)
    })
}

/// The streams of one tensor's planes end to end in one new `bytes` (one copy, GIL released).
fn joined_planes<'py>(
    py: Python<'py>,
    planes: &[(Codec, StreamParts)],
    threads: Option<usize>,
) -> PyResult<JoinedPlanes<'py>> {
    let lengths: Vec<usize> = planes.iter().map(|(_, p)| p.len()).collect();
    let joined = bytes_filled_without_gil(py, lengths.iter().sum(), |buf| {
        stream::write_streams_into(planes.iter().map(|(_, p)| p), buf, threads);
    })?;
    Ok((planes.iter().map(|(c, _)| c.name()).collect(), lengths, joined))
}

/// A new `bytes` of `len` bytes, every one written by `fill` with the GIL released.
/// `PyBytes::new_with` zeroes the buffer first with the GIL held: for a payload of hundreds of
/// MB that is a second pass, and its page faults stall every other Python thread (`tp.save`
/// encodes several tensors at once).
fn bytes_filled_without_gil<'py>(
    py: Python<'py>,
    len: usize,
    fill: impl FnOnce(&mut [u8]) + Send,
) -> PyResult<Bound<'py, PyBytes>> {
    let size = pyo3::ffi::Py_ssize_t::try_from(len).map_err(|_| invalid(&format!("{len} bytes is too large")))?;
    // SAFETY: a null source asks CPython for an uninitialised bytes object of `size` bytes; it
    // returns a new reference or null with an exception set, which `from_owned_ptr_or_err` takes.
    let obj =
        unsafe { Bound::from_owned_ptr_or_err(py, pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), size))? };
    // SAFETY: `obj` is a bytes object we just created and own alone; its buffer is `len` bytes.
    let ptr = unsafe { pyo3::ffi::PyBytes_AsString(obj.as_ptr()) }.cast::<u8>();
    let buf = SharedBytesMut { ptr, len };
    // No other thread can reach `obj` before we return it, so writing without the GIL is safe;
    // `fill` writes every byte, so no uninitialised byte is ever seen by Python.
    py.detach(move || {
        let mut buf = buf;
        fill(buf.as_mut_slice());
    });
    Ok(obj.cast_into::<PyBytes>()?)
}

/// Decodes the plane streams of one tensor and merges them into `out` (the tensor's bytes,
/// caller-owned), chunk-parallel with the GIL released.
#[pyfunction]
#[pyo3(signature = (blobs, transform, width, out, threads=None, kernel="auto"))]
fn decode_planes_into(
    py: Python<'_>,
    blobs: Vec<PyBuffer<u8>>,
    transform: &str,
    width: i64,
    out: PyBuffer<u8>,
    threads: Option<i64>,
    kernel: &str,
) -> PyResult<()> {
    let transform = Transform::from_name(transform, size_arg("width", width)?).map_err(|e| to_py_err(py, &e))?;
    let opts = DecodeOptions { kernel: parse_kernel(py, kernel)?, threads: threads_arg(threads)? };
    let inputs = blobs.iter().map(SharedBytes::of).collect::<PyResult<Vec<_>>>()?;
    let mut output = SharedBytesMut::of(&out)?;
    check_disjoint(&inputs, &[output])?;
    py.detach(move || {
        let views: Vec<&[u8]> = inputs.iter().map(SharedBytes::as_slice).collect();
        fused::decode_planes_into(&views, transform, output.as_mut_slice(), &opts)
    })
    .map_err(|e| to_py_err(py, &e))
}

/// Splits a tensor's element bytes into the planes of `transform`, written into `planes` (one
/// caller-owned buffer per plane, each exactly the plane length), in pieces on the shared pool
/// with the GIL released.
#[pyfunction]
#[pyo3(signature = (data, transform, width, planes, threads=None))]
fn split_planes_into(
    py: Python<'_>,
    data: PyBuffer<u8>,
    transform: &str,
    width: i64,
    planes: Vec<PyBuffer<u8>>,
    threads: Option<i64>,
) -> PyResult<()> {
    let transform = Transform::from_name(transform, size_arg("width", width)?).map_err(|e| to_py_err(py, &e))?;
    let threads = threads_arg(threads)?;
    let input = SharedBytes::of(&data)?;
    let mut outputs = planes.iter().map(SharedBytesMut::of).collect::<PyResult<Vec<_>>>()?;
    check_disjoint(&[input], &outputs)?;
    py.detach(move || {
        let mut views: Vec<&mut [u8]> = outputs.iter_mut().map(SharedBytesMut::as_mut_slice).collect();
        fused::split_into(input.as_slice(), transform, &mut views, threads)
    })
    .map_err(|e| to_py_err(py, &e))
}

/// InvalidArgumentError if two outputs overlap, or an input overlaps an output.
fn check_disjoint(inputs: &[SharedBytes], outputs: &[SharedBytesMut]) -> PyResult<()> {
    let span = |ptr: usize, len: usize| ptr..ptr + len;
    let outs: Vec<_> = outputs.iter().filter(|o| o.len > 0).map(|o| span(o.ptr as usize, o.len)).collect();
    let meets = |a: &std::ops::Range<usize>, b: &std::ops::Range<usize>| a.start < b.end && b.start < a.end;
    for (i, a) in outs.iter().enumerate() {
        if outs[i + 1..].iter().any(|b| meets(a, b)) {
            return Err(invalid("output buffers overlap"));
        }
        if inputs.iter().filter(|x| x.len > 0).any(|x| meets(a, &span(x.ptr as usize, x.len))) {
            return Err(invalid("an input stream overlaps an output buffer"));
        }
    }
    Ok(())
}

/// Decodes many tensors at once (each item: plane streams, transform, element width, output
/// buffer); every chunk of every tensor is one work item on the shared pool.
#[pyfunction]
#[pyo3(signature = (items, threads=None, kernel="auto"))]
#[allow(clippy::type_complexity)] // the Python-side tuple, spelled out
fn decode_many(
    py: Python<'_>,
    items: Vec<(Vec<PyBuffer<u8>>, String, i64, PyBuffer<u8>)>,
    threads: Option<i64>,
    kernel: &str,
) -> PyResult<()> {
    let opts = DecodeOptions { kernel: parse_kernel(py, kernel)?, threads: threads_arg(threads)? };
    let mut jobs = Vec::with_capacity(items.len());
    for (blobs, transform, width, out) in &items {
        let transform = Transform::from_name(transform, size_arg("width", *width)?).map_err(|e| to_py_err(py, &e))?;
        let inputs = blobs.iter().map(SharedBytes::of).collect::<PyResult<Vec<_>>>()?;
        jobs.push((inputs, transform, SharedBytesMut::of(out)?));
    }
    // Two outputs sharing memory would be written by two workers at once; a stream inside an
    // output would be overwritten while it is read.
    let outputs: Vec<SharedBytesMut> = jobs.iter().map(|(_, _, o)| *o).collect();
    let inputs: Vec<SharedBytes> = jobs.iter().flat_map(|(i, _, _)| i.iter().copied()).collect();
    check_disjoint(&inputs, &outputs)?;
    py.detach(move || {
        let mut jobs = jobs;
        let views: Vec<fused::TensorJob<'_>> = jobs
            .iter_mut()
            .map(|(inputs, transform, out)| fused::TensorJob {
                blobs: inputs.iter().map(SharedBytes::as_slice).collect(),
                transform: *transform,
                out: out.as_mut_slice(),
            })
            .collect();
        fused::decode_many(views, &opts)
    })
    .map_err(|e| to_py_err(py, &e))
}

/// Decoded length of a stream (header parsed and checksum verified).
#[pyfunction]
fn decoded_len(py: Python<'_>, blob: PyBuffer<u8>) -> PyResult<u64> {
    let input = SharedBytes::of(&blob)?;
    py.detach(move || stream::decoded_len(input.as_slice())).map_err(|e| to_py_err(py, &e))
}

/// Decodes a stream into a caller-owned writable buffer of exactly the decoded length.
#[pyfunction]
#[pyo3(signature = (blob, out, threads=None, kernel="auto"))]
fn decode_into(
    py: Python<'_>,
    blob: PyBuffer<u8>,
    out: PyBuffer<u8>,
    threads: Option<i64>,
    kernel: &str,
) -> PyResult<()> {
    let opts = DecodeOptions { kernel: parse_kernel(py, kernel)?, threads: threads_arg(threads)? };
    let input = SharedBytes::of(&blob)?;
    let mut output = SharedBytesMut::of(&out)?;
    py.detach(move || stream::decode_into(input.as_slice(), output.as_mut_slice(), &opts))
        .map_err(|e| to_py_err(py, &e))
}

/// Decodes chunk `index` of a stream into `out` (random access).
#[pyfunction]
#[pyo3(signature = (blob, index, out, kernel="auto"))]
fn decode_chunk(py: Python<'_>, blob: PyBuffer<u8>, index: i64, out: PyBuffer<u8>, kernel: &str) -> PyResult<()> {
    let kernel = parse_kernel(py, kernel)?;
    let index = size_arg("index", index)?;
    let input = SharedBytes::of(&blob)?;
    let mut output = SharedBytesMut::of(&out)?;
    py.detach(move || {
        let bytes = input.as_slice();
        let info = parse_header(bytes)?;
        decode_chunk_into(bytes, &info, index, output.as_mut_slice(), kernel)
    })
    .map_err(|e| to_py_err(py, &e))
}

/// Header fields of a stream as a dict.
#[pyfunction]
fn stream_info<'py>(py: Python<'py>, blob: PyBuffer<u8>) -> PyResult<Bound<'py, PyDict>> {
    let input = SharedBytes::of(&blob)?;
    let info = py.detach(move || parse_header(input.as_slice())).map_err(|e| to_py_err(py, &e))?;
    let d = PyDict::new(py);
    d.set_item("version", info.version)?;
    d.set_item("codec", info.codec().name())?;
    d.set_item("lanes", info.lanes)?;
    d.set_item("decoded_len", info.decoded_len)?;
    d.set_item("chunk_size", info.chunk_size)?;
    d.set_item("header_len", info.header_len)?;
    let chunks: Vec<(usize, usize)> = info.chunks.iter().map(|&(at, len, _)| (at, len)).collect();
    d.set_item("chunks", chunks)?;
    Ok(d)
}

/// Byte histogram (256 counts).
#[pyfunction]
fn byte_histogram(py: Python<'_>, data: PyBuffer<u8>) -> PyResult<Vec<u64>> {
    let input = SharedBytes::of(&data)?;
    Ok(py.detach(move || histogram(input.as_slice())).to_vec())
}

/// Entropy and each codec's mean code length, as a dict.
#[pyfunction]
#[pyo3(signature = (data, threads=None))]
fn stats<'py>(py: Python<'py>, data: PyBuffer<u8>, threads: Option<i64>) -> PyResult<Bound<'py, PyDict>> {
    let threads = threads_arg(threads)?;
    let input = SharedBytes::of(&data)?;
    let s = py.detach(move || tensorpress_core::stats::stats(&stream::parallel_histogram(input.as_slice(), threads)));
    let d = PyDict::new(py);
    d.set_item("symbols", s.symbols)?;
    d.set_item("entropy_bits", s.entropy_bits)?;
    let codecs = PyDict::new(py);
    for c in &s.codecs {
        let entry = PyDict::new(py);
        entry.set_item("mean_code_len", c.mean_code_len)?;
        entry.set_item("saving", c.saving)?;
        entry.set_item("params", &c.params)?;
        entry.set_item("table_bytes", c.table_bytes)?;
        codecs.set_item(c.codec.name(), entry)?;
    }
    d.set_item("codecs", codecs)?;
    Ok(d)
}

/// CRC32C (Castagnoli) of a buffer, continuing from `initial`; hardware-accelerated.
#[pyfunction]
#[pyo3(name = "crc32c", signature = (data, initial=0))]
fn crc32c_checksum(py: Python<'_>, data: PyBuffer<u8>, initial: u32) -> PyResult<u32> {
    let input = SharedBytes::of(&data)?;
    Ok(py.detach(move || tensorpress_core::checksum::crc32c_append(initial, input.as_slice())))
}

/// The 256 code lengths of a serialised Huffman table of stream `version` (1: 128 nibble bytes;
/// 2: delta-coded), validated as the stream decoder validates it (`FormatError` otherwise).
#[pyfunction]
fn huffman_lengths<'py>(py: Python<'py>, table: &[u8], version: u8) -> PyResult<Bound<'py, PyBytes>> {
    let parsed = match version {
        1 => HuffmanTable::parse_nibbles(table),
        2 => HuffmanTable::parse(table),
        v => Err(Error::Format(format!("stream version {v} has no Huffman table form"))),
    };
    parsed.map(|t| PyBytes::new(py, t.lengths())).map_err(|e| to_py_err(py, &e))
}

/// The `lanes` lane lengths at the start of a version-2 coded chunk body, and the bytes they
/// take; `CorruptDataError` as the stream decoder reports it.
#[pyfunction]
fn lane_lengths(py: Python<'_>, body: &[u8], lanes: usize) -> PyResult<(Vec<usize>, usize)> {
    if !(1..=stream::MAX_LANES).contains(&lanes) {
        return Err(to_py_err(py, &Error::InvalidArgument(format!("lanes must be 1..=32, got {lanes}"))));
    }
    let mut lens = vec![0usize; lanes];
    let used = tensorpress_core::varint::read_lane_lengths(body, &mut lens).map_err(|e| to_py_err(py, &e))?;
    Ok((lens, used))
}

/// CRC32C of each buffer, spread over the shared pool with the GIL released.
#[pyfunction]
#[pyo3(signature = (buffers, threads=None))]
fn crc32c_many(py: Python<'_>, buffers: Vec<PyBuffer<u8>>, threads: Option<i64>) -> PyResult<Vec<u32>> {
    let threads = threads_arg(threads)?;
    let inputs = buffers.iter().map(SharedBytes::of).collect::<PyResult<Vec<_>>>()?;
    py.detach(move || {
        let views: Vec<&[u8]> = inputs.iter().map(SharedBytes::as_slice).collect();
        tensorpress_core::checksum::crc32c_many(&views, threads)
    })
    .map_err(|e| to_py_err(py, &e))
}

/// Deepest `[`/`{` nesting of JSON text, brackets inside strings not counted.
#[pyfunction]
fn json_depth(data: &[u8]) -> usize {
    tensorpress_core::json_depth::json_depth(data)
}

/// Workers in the shared pool (built on first use, once per process).
#[pyfunction]
fn pool_threads() -> usize {
    tensorpress_core::threads::pool_size()
}

/// Names of the decode kernels this CPU can run.
#[pyfunction]
fn kernels() -> Vec<&'static str> {
    Kernel::available().into_iter().map(Kernel::name).collect()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode, m)?)?;
    m.add_function(wrap_pyfunction!(decoded_len, m)?)?;
    m.add_function(wrap_pyfunction!(decode_into, m)?)?;
    m.add_function(wrap_pyfunction!(encode_planes, m)?)?;
    m.add_function(wrap_pyfunction!(encode_planes_many, m)?)?;
    m.add_function(wrap_pyfunction!(decode_planes_into, m)?)?;
    m.add_function(wrap_pyfunction!(split_planes_into, m)?)?;
    m.add_function(wrap_pyfunction!(decode_many, m)?)?;
    m.add_function(wrap_pyfunction!(decode_chunk, m)?)?;
    m.add_function(wrap_pyfunction!(stream_info, m)?)?;
    m.add_function(wrap_pyfunction!(byte_histogram, m)?)?;
    m.add_function(wrap_pyfunction!(stats, m)?)?;
    m.add_function(wrap_pyfunction!(kernels, m)?)?;
    m.add_function(wrap_pyfunction!(pool_threads, m)?)?;
    m.add_function(wrap_pyfunction!(crc32c_many, m)?)?;
    m.add_function(wrap_pyfunction!(huffman_lengths, m)?)?;
    m.add_function(wrap_pyfunction!(lane_lengths, m)?)?;
    m.add_function(wrap_pyfunction!(json_depth, m)?)?;
    m.add_function(wrap_pyfunction!(crc32c_checksum, m)?)?;
    m.add("CODECS", Codec::ALL.iter().map(|c| c.name()).collect::<Vec<_>>())?;
    m.add("MAX_LANES", stream::MAX_LANES)?;
    m.add("MIN_CHUNK_SIZE", stream::MIN_CHUNK_SIZE)?;
    m.add("MAX_CHUNK_SIZE", stream::MAX_CHUNK_SIZE)?;
    m.add("DEFAULT_CHUNK_SIZE", stream::DEFAULT_CHUNK_SIZE)?;
    m.add("DEFAULT_LANES", stream::DEFAULT_LANES)?;
    m.add("MAX_THREADS", tensorpress_core::threads::MAX_THREADS)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
