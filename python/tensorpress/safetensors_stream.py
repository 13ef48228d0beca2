"""Read safetensors checkpoints one tensor at a time, and write them one tensor at a time.

:func:`tensorpress.streaming.compress_folder` needs a model's tensors one by one with nothing else
of the checkpoint held in memory. ``safetensors.safe_open`` memory-maps the whole shard, and every
page a copy touches stays resident (and counted in the process RSS) until the shard is closed: a
5 GB shard would cost 5 GB of RSS. Here each tensor's bytes are read with ``pread`` into a buffer
of exactly its size, so the resident set is the tensor being worked on.

The header is untrusted: :func:`tensorpress.safetensors_io.read_header` checks its length, every
dtype, shape and byte range against the file before anything is allocated
(:class:`~tensorpress.errors.FormatError` naming the file).
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

from tensorpress import container, hf_folder, safetensors_io, tensors
from tensorpress.errors import FormatError, InvalidArgumentError

#: tensorpress dtype name -> safetensors dtype code (for writing).
_CODES = {v: k for k, v in safetensors_io.DTYPE_CODES.items()}
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
    """The tensors of one safetensors file, sorted by name (the order ``safe_open`` lists); the
    header is checked by :func:`tensorpress.safetensors_io.read_header`."""
    try:
        with path.open("rb") as f:
            spans, _ = safetensors_io.read_header(f.fileno(), path)
    except OSError as exc:
        raise FormatError(f"{path}: not readable: {exc.strerror or exc}") from None
    return sorted(
        (SourceTensor(t.name, path, t.dtype, t.shape, t.start, t.end) for t in spans), key=lambda t: t.name
    )


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
    "SourceTensor",
    "folder_tensors",
    "read_header",
    "read_tensor",
    "write_streaming",
]
