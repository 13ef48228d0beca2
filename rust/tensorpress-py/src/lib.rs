//! `tensorpress._core`: type conversion, GIL release and error mapping only. Algorithms live
//! in tensorpress-core.

// pyo3 extracts `PyBuffer` arguments by value; the buffer is released when it drops.
#![allow(clippy::needless_pass_by_value)]

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyType};
use tensorpress_core::histogram::histogram;
use tensorpress_core::stream::{self, decode_chunk_into, parse_header, Codec, DecodeOptions, EncodeOptions};
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
            return Err(PyValueError::new_err("buffer must be C-contiguous"));
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
            return Err(PyValueError::new_err("output buffer is read-only"));
        }
        if !buf.is_c_contiguous() {
            return Err(PyValueError::new_err("output buffer must be C-contiguous"));
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

/// Encodes bytes into a tensorpress entropy stream.
#[pyfunction]
#[pyo3(signature = (data, codec="qlc", lanes=stream::DEFAULT_LANES, chunk_size=stream::DEFAULT_CHUNK_SIZE, threads=None))]
fn encode<'py>(
    py: Python<'py>,
    data: PyBuffer<u8>,
    codec: &str,
    lanes: usize,
    chunk_size: usize,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyBytes>> {
    let codec = Codec::from_name(codec).map_err(|e| to_py_err(py, &e))?;
    let input = SharedBytes::of(&data)?;
    let opts = EncodeOptions { codec, lanes, chunk_size, threads };
    let blob = py.detach(move || stream::encode(input.as_slice(), &opts)).map_err(|e| to_py_err(py, &e))?;
    Ok(PyBytes::new(py, &blob))
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
    threads: Option<usize>,
    kernel: &str,
) -> PyResult<()> {
    let opts = DecodeOptions { kernel: parse_kernel(py, kernel)?, threads };
    let input = SharedBytes::of(&blob)?;
    let mut output = SharedBytesMut::of(&out)?;
    py.detach(move || stream::decode_into(input.as_slice(), output.as_mut_slice(), &opts))
        .map_err(|e| to_py_err(py, &e))
}

/// Decodes chunk `index` of a stream into `out` (random access).
#[pyfunction]
#[pyo3(signature = (blob, index, out, kernel="auto"))]
fn decode_chunk(py: Python<'_>, blob: PyBuffer<u8>, index: usize, out: PyBuffer<u8>, kernel: &str) -> PyResult<()> {
    let kernel = parse_kernel(py, kernel)?;
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
fn stats<'py>(py: Python<'py>, data: PyBuffer<u8>, threads: Option<usize>) -> PyResult<Bound<'py, PyDict>> {
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
    m.add_function(wrap_pyfunction!(decode_chunk, m)?)?;
    m.add_function(wrap_pyfunction!(stream_info, m)?)?;
    m.add_function(wrap_pyfunction!(byte_histogram, m)?)?;
    m.add_function(wrap_pyfunction!(stats, m)?)?;
    m.add_function(wrap_pyfunction!(kernels, m)?)?;
    m.add_function(wrap_pyfunction!(crc32c_checksum, m)?)?;
    m.add("CODECS", Codec::ALL.iter().map(|c| c.name()).collect::<Vec<_>>())?;
    m.add("MAX_LANES", stream::MAX_LANES)?;
    m.add("MIN_CHUNK_SIZE", stream::MIN_CHUNK_SIZE)?;
    m.add("MAX_CHUNK_SIZE", stream::MAX_CHUNK_SIZE)?;
    m.add("DEFAULT_CHUNK_SIZE", stream::DEFAULT_CHUNK_SIZE)?;
    m.add("DEFAULT_LANES", stream::DEFAULT_LANES)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
