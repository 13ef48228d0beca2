"""Read safetensors checkpoints one tensor at a time, and write them one tensor at a time.

:func:`tensorpress.streaming.compress_folder` needs a model's tensors one by one with nothing else
of the checkpoint held in memory. ``safetensors.safe_open`` memory-maps the whole shard, and every
page a copy touches stays resident (and counted in the process RSS) until the shard is closed: a
5 GB shard would cost 5 GB of RSS. Here each tensor's bytes are read with ``pread`` into a buffer
of exactly its size, so the resident set is the tensor being worked on.

The header is untrusted: its length, every dtype, shape and byte range is checked against the
file before anything is allocated (:class:`~tensorpress.errors.FormatError` naming the file).
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tensorpress import container, hf_folder, tensors
from tensorpress.errors import FormatError, InvalidArgumentError

#: Largest safetensors JSON header read (the safetensors library's own limit is 100 MB).
MAX_HEADER_BYTES = 100 << 20
#: safetensors dtype code -> tensorpress dtype name.
DTYPES = {
    "BF16": "bfloat16",
    "F16": "float16",
    "F32": "float32",
    "F64": "float64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}
_CODES = {v: k for k, v in DTYPES.items()}
_READ_CHUNK = 64 << 20


@dataclass(frozen=True)
class SourceTensor:
    """Where one tensor lies in a safetensors file: absolute byte range, dtype, shape."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def read_header(path: Path) -> list[SourceTensor]:
    """The tensors of one safetensors file, sorted by name (the order ``safe_open`` lists)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise FormatError(f"{path}: {size} bytes is too short for a safetensors file")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise FormatError(f"{path}: header length {n} exceeds the limit or the file")
            raw = f.read(n)
    except OSError as exc:
        raise FormatError(f"{path}: not readable: {exc.strerror or exc}") from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: malformed safetensors header: {exc}") from None
    if not isinstance(doc, dict):
        raise FormatError(f"{path}: safetensors header is not a JSON object")
    data_start, data_len = 8 + n, size - 8 - n
    out = []
    for name, spec in doc.items():
        if name == "__metadata__":
            continue
        out.append(_entry(path, name, spec, data_start, data_len))
    out.sort(key=lambda t: t.name)
    return out


def _entry(path: Path, name: str, spec: Any, data_start: int, data_len: int) -> SourceTensor:
    try:
        code, shape_doc, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
        shape = tuple(shape_doc)
        begin, end = offsets
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{path}: malformed entry for {name!r}: {exc!r}") from None
    if code not in DTYPES:
        raise FormatError(f"{path}: tensor {name!r} has unsupported dtype {code!r}")
    ints = (*shape, begin, end)
    if not name or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints):
        raise FormatError(f"{path}: tensor {name!r} has an invalid shape or byte range")
    itemsize = tensors.dtype_from_name(DTYPES[code]).itemsize
    if not begin <= end <= data_len or end - begin != math.prod(shape) * itemsize:
        raise FormatError(
            f"{path}: tensor {name!r} byte range [{begin}, {end}) does not fit its shape {list(shape)} "
            f"or the {data_len}-byte data section"
        )
    return SourceTensor(name, path, DTYPES[code], shape, data_start + begin, data_start + end)


def folder_tensors(folder: Path) -> list[SourceTensor]:
    """Every tensor of an uncompressed HF folder, in the order
    :func:`tensorpress.hf_folder.read_source_state` loads them (shards by file name, then names)."""
    if (folder / hf_folder.SAFETENSORS_INDEX).is_file():
        mapping = hf_folder.weight_map(folder, hf_folder.SAFETENSORS_INDEX)
        out: list[SourceTensor] = []
        for shard in sorted(set(mapping.values()), key=lambda p: p.name):
            out.extend(t for t in read_header(shard) if mapping.get(t.name) == shard)
        found = {t.name for t in out}
        missing = [n for n in mapping if n not in found]
        if missing:
            index = folder / hf_folder.SAFETENSORS_INDEX
            raise FormatError(f"{index}: tensor {missing[0]!r} is not in its shard")
        return out
    if (folder / hf_folder.SAFETENSORS_WEIGHTS).is_file():
        return read_header(hf_folder.member(folder, hf_folder.SAFETENSORS_WEIGHTS, str(folder)))
    raise InvalidArgumentError(
        f"{folder}: no {hf_folder.SAFETENSORS_WEIGHTS} or {hf_folder.SAFETENSORS_INDEX} "
        "(streaming reads safetensors checkpoints)"
    )


def read_tensor(t: SourceTensor, *, as_torch: bool | None = None) -> Any:
    """The tensor's values in a buffer of exactly its size (a torch tensor when torch is
    installed, as ``safetensors.torch`` returns them; otherwise numpy)."""
    buf = np.empty(t.nbytes, dtype=np.uint8)
    with t.file.open("rb") as f:
        fd, done = f.fileno(), 0
        while done < t.nbytes:
            got = os.preadv(fd, [buf[done : done + _READ_CHUNK].data], t.start + done)
            if got <= 0:
                raise FormatError(f"{t.file}: truncated inside tensor {t.name!r}")
            done += got
    if as_torch is None:
        as_torch = _has_torch()
    if not as_torch:
        return buf.view(tensors.dtype_from_name(t.dtype)).reshape(t.shape)
    import torch

    raw = torch.from_numpy(buf)
    dtype = getattr(torch, t.dtype)
    if t.nbytes == 0:
        return torch.empty(t.shape, dtype=dtype)
    return (raw.bool() if t.dtype == "bool" else raw.view(dtype)).reshape(t.shape)


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class _Planned:
    name: str
    dtype: str
    shape: tuple[int, ...]


def write_streaming(
    path: Path, specs: Sequence[tuple[str, str, Sequence[int]]], values: Iterable[Any]
) -> None:
    """Write a safetensors file whose tensors (``(name, dtype name, shape)`` in order) come one at
    a time from ``values``: the header is known from the specs, so nothing is buffered."""
    planned = [_Planned(n, d, tuple(int(x) for x in s)) for n, d, s in specs]
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    at = 0
    for p in planned:
        if p.dtype not in _CODES:
            raise InvalidArgumentError(f"tensor {p.name!r}: dtype {p.dtype} has no safetensors code")
        n = math.prod(p.shape) * tensors.dtype_from_name(p.dtype).itemsize
        header[p.name] = {"dtype": _CODES[p.dtype], "shape": list(p.shape), "data_offsets": [at, at + n]}
        at += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned, as safetensors does

    def write(f: Any) -> None:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for p, value in zip(planned, values, strict=True):
            arr, _, _ = tensors.to_numpy(value)
            if tuple(arr.shape) != p.shape or tensors.dtype_name(arr.dtype) != p.dtype:
                raise InvalidArgumentError(f"tensor {p.name!r} is not the {p.dtype}{list(p.shape)} planned")
            f.write(np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data)

    container.atomic_write(path, write)


__all__ = [
    "DTYPES",
    "MAX_HEADER_BYTES",
    "SourceTensor",
    "folder_tensors",
    "read_header",
    "read_tensor",
    "write_streaming",
]
