"""Uncompressed ``.safetensors`` files, every dtype tensorpress handles that the format has.

Writing goes through the safetensors library (``serialize_file`` into an atomic write). Reading
parses the format's 8-byte length and JSON header itself (:func:`read_header`, also used by the
tensor-by-tensor reader of :mod:`tensorpress.safetensors_stream`), validating every field before
anything is allocated, because the library's numpy reader cannot return float8 tensors and raises
its own exception type on bad files: here a malformed file is a :class:`FormatError` naming it.

Dtypes: bool, (u)int8–64, float16/32/64, bfloat16, float8_e4m3fn and float8_e5m2 (via
ml_dtypes). safetensors has no 4-bit integer type, so int4/uint4 tensors are refused with a
clear error rather than silently widened.
"""

from __future__ import annotations

import math
import mmap
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tensorpress.atomic import atomic_write_path
from tensorpress.errors import FormatError, InvalidArgumentError
from tensorpress.methods import arrays, base

#: safetensors dtype codes and the tensorpress dtype each one is.
DTYPE_CODES: dict[str, str] = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "U16": "uint16",
    "I16": "int16",
    "U32": "uint32",
    "I32": "int32",
    "U64": "uint64",
    "I64": "int64",
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}
#: Largest JSON header read (the reference implementation's own limit is 100 MB).
MAX_HEADER_BYTES = 100_000_000


def save_file(tensors_by_name: Mapping[str, np.ndarray], path: Path, metadata: Mapping[str, str]) -> Path:
    """Write numpy arrays (ml_dtypes included) as a safetensors file, atomically."""
    from safetensors import SafetensorError, TensorSpec, serialize_file

    specs = {}
    keep_alive = []
    for name, arr in tensors_by_name.items():
        dtype = arrays.dtype_name(arr.dtype)
        if dtype not in DTYPE_CODES.values():
            raise InvalidArgumentError(
                f"tensor {name!r}: safetensors has no {dtype} type; save it to a .tpz file, "
                "or cast it (e.g. int4 -> int8) first"
            )
        arr = np.ascontiguousarray(arr)
        keep_alive.append(arr)
        specs[name] = TensorSpec(
            dtype=dtype, shape=list(arr.shape), data_ptr=arr.ctypes.data, data_len=arr.nbytes
        )

    def write(tmp_path: str) -> None:
        try:
            serialize_file(specs, tmp_path, metadata=dict(metadata) or None)
        except SafetensorError as exc:
            raise InvalidArgumentError(f"{path}: safetensors refused the tensors: {exc}") from None

    written = atomic_write_path(path, write)
    del keep_alive
    return written


@dataclass(frozen=True)
class TensorSpan:
    """Where one tensor lies in a safetensors file: name, tensorpress dtype name, shape and its
    absolute byte range [start, end)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def read_header(fd: int, path: Path) -> tuple[list[TensorSpan], dict[str, str]]:
    """The tensors (in file-header order) and metadata of the safetensors file open as ``fd``,
    every field checked against the file before anything is allocated; FormatError if malformed.
    Reads the header alone (``pread``), so callers choose how to read the data."""
    size = os.fstat(fd).st_size
    if size < 8:
        raise FormatError(f"{path}: {size} bytes is too short for a safetensors file")
    header_len = int.from_bytes(os.pread(fd, 8, 0), "little")
    if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
        raise FormatError(f"{path}: safetensors header length {header_len} exceeds the limit or the file")
    raw = os.pread(fd, header_len, 8)
    if len(raw) != header_len:
        raise FormatError(f"{path}: the file became shorter while its header was read")
    doc = base.parse_json(raw, f"{path}: safetensors header")
    if not isinstance(doc, dict):
        raise FormatError(f"{path}: safetensors header is not a JSON object")
    metadata = doc.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise FormatError(f"{path}: safetensors __metadata__ must map strings to strings")
    data_start = 8 + header_len
    spans = [_span(path, name, info, data_start, size - data_start) for name, info in doc.items()]
    return spans, {str(k): str(v) for k, v in metadata.items()}


def _span(path: Path, name: str, info: Any, data_start: int, data_len: int) -> TensorSpan:
    what = f"{path}: tensor {name!r}"
    if not name:
        raise FormatError(f"{path}: a tensor has an empty name")
    if not isinstance(info, dict):
        raise FormatError(f"{what}: entry is not a JSON object")
    code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if code not in DTYPE_CODES:
        raise FormatError(f"{what}: dtype {code!r} is not one tensorpress reads")
    if not isinstance(shape, list) or not all(base.is_int(d) and d >= 0 for d in shape):
        raise FormatError(f"{what}: shape must be a list of non-negative integers, got {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(base.is_int(o) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_len
    ):
        raise FormatError(f"{what}: data_offsets {offsets!r} outside the {data_len}-byte data section")
    itemsize = arrays.dtype_from_name(DTYPE_CODES[code]).itemsize
    if math.prod(shape) * itemsize != offsets[1] - offsets[0]:
        raise FormatError(
            f"{what}: {code}{shape} needs {math.prod(shape) * itemsize} bytes, its offsets hold "
            f"{offsets[1] - offsets[0]}"
        )
    return TensorSpan(name, DTYPE_CODES[code], tuple(shape), data_start + offsets[0], data_start + offsets[1])


def load_file(path: Path, *, max_size: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read every tensor of a safetensors file: (arrays, metadata); FormatError if malformed."""
    with open(path, "rb") as f:
        spans, metadata = read_header(f.fileno(), path)
        total = sum(s.end - s.start for s in spans)
        if max_size is not None and total > max_size:
            raise FormatError(f"{path}: tensors hold {total:,} bytes, more than max_size={max_size:,}")
        out = {}
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            for s in spans:
                raw = np.frombuffer(buf, np.uint8, s.end - s.start, s.start).copy()
                out[s.name] = raw.view(arrays.dtype_from_name(s.dtype)).reshape(s.shape)
    return out, metadata


__all__ = ["DTYPE_CODES", "TensorSpan", "load_file", "read_header", "save_file"]
