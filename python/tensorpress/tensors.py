"""Lossless compression of whole tensors: byte-plane transforms plus an entropy code per plane.

A tensor's elements are split into byte planes so that each plane has one kind of content:

- 1-byte types (float8_e4m3fn, float8_e5m2, int8, uint8, bool): the byte itself.
- bfloat16: the 8 exponent bits, then sign + 7 mantissa bits (as DFloat11/ZipNN separate the
  exponent, which carries almost all the redundancy).
- float32: the 8 exponent bits, then sign + top 7 mantissa bits, then two mantissa bytes.
- float16 and other multi-byte types: little-endian byte planes, high byte first.
- int4 (``ml_dtypes.int4``/``uint4``, one value per byte in memory): two values packed per byte.

Each plane is coded by :mod:`tensorpress.entropy`; ``codec="auto"`` measures every candidate's
size on the plane's histogram (one pass in Rust) and keeps the smallest, or stores the plane raw
when no code saves at least :data:`MIN_SAVING`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ml_dtypes
import numpy as np

from tensorpress import entropy
from tensorpress.errors import CorruptDataError, FormatError, InvalidArgumentError

#: A code must save at least this fraction of a plane to be used by ``codec="auto"``.
MIN_SAVING = 0.01
#: Codecs ``codec="auto"`` chooses among (QLC first: on a tie its faster decode wins).
AUTO_CANDIDATES = ("qlc", "huffman", "expgolomb-rank")
#: Serialisation method name of this module's tensors in the container.
METHOD = "lossless"

_NAMED_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(t)
    for name, t in {
        "float64": np.float64,
        "float32": np.float32,
        "float16": np.float16,
        "bfloat16": ml_dtypes.bfloat16,
        "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
        "float8_e5m2": ml_dtypes.float8_e5m2,
        "int64": np.int64,
        "int32": np.int32,
        "int16": np.int16,
        "int8": np.int8,
        "uint64": np.uint64,
        "uint32": np.uint32,
        "uint16": np.uint16,
        "uint8": np.uint8,
        "bool": np.bool_,
        "int4": ml_dtypes.int4,
        "uint4": ml_dtypes.uint4,
    }.items()
}


def dtype_from_name(name: str) -> np.dtype:
    """The numpy dtype of a tensorpress dtype name (torch names without the ``torch.`` prefix)."""
    try:
        return _NAMED_DTYPES[name]
    except KeyError:
        raise FormatError(f"unsupported dtype {name!r}") from None


def dtype_name(dtype: np.dtype) -> str:
    """The tensorpress name of a numpy dtype, or InvalidArgumentError if it is not supported."""
    for name, known in _NAMED_DTYPES.items():
        if known == dtype:
            return name
    raise InvalidArgumentError(
        f"dtype {dtype} is not supported; supported: {', '.join(sorted(_NAMED_DTYPES))}"
    )


# --- byte-plane transforms -------------------------------------------------------------------


def transform_name(dtype: str) -> str:
    """Which byte-plane transform a dtype uses."""
    if dtype == "bfloat16":
        return "bf16-exponent"
    if dtype == "float32":
        return "fp32-exponent"
    if dtype in ("int4", "uint4"):
        return "nibbles"
    return "byte-planes"


def split_planes(flat: np.ndarray, transform: str) -> list[np.ndarray]:
    """Split a flat array into contiguous uint8 planes (inverse: :func:`merge_planes`)."""
    if transform == "bf16-exponent":
        u = flat.view(np.uint16)
        exponent = ((u >> 7) & 0xFF).astype(np.uint8)
        sign_mantissa = (((u >> 8) & 0x80) | (u & 0x7F)).astype(np.uint8)
        return [exponent, sign_mantissa]
    if transform == "fp32-exponent":
        u = flat.view(np.uint32)
        exponent = ((u >> 23) & 0xFF).astype(np.uint8)
        sign_top = (((u >> 24) & 0x80) | ((u >> 16) & 0x7F)).astype(np.uint8)
        return [exponent, sign_top, ((u >> 8) & 0xFF).astype(np.uint8), (u & 0xFF).astype(np.uint8)]
    if transform == "nibbles":
        nib = flat.view(np.uint8) & 0x0F
        if nib.size % 2:
            nib = np.append(nib, np.uint8(0))
        return [(nib[0::2] | (nib[1::2] << 4)).astype(np.uint8)]
    if transform == "byte-planes":
        width = flat.dtype.itemsize
        as_bytes = flat.view(np.uint8).reshape(-1, width)
        # Little-endian: the last byte holds sign and exponent, code it first.
        return [np.ascontiguousarray(as_bytes[:, k]) for k in reversed(range(width))]
    raise FormatError(f"unknown byte-plane transform {transform!r}")


def merge_planes(planes: list[np.ndarray], transform: str, dtype: np.dtype, count: int) -> np.ndarray:
    """Rebuild a flat array of ``count`` elements of ``dtype`` from its planes."""
    expected = _plane_count(transform, dtype)
    if len(planes) != expected:
        raise FormatError(f"{transform} needs {expected} planes, got {len(planes)}")
    sizes = {p.size for p in planes}
    plane_len = (count + 1) // 2 if transform == "nibbles" else count
    if sizes != {plane_len} and count:
        raise CorruptDataError(f"planes hold {sorted(sizes)} bytes, expected {plane_len} each")
    if transform == "bf16-exponent":
        e16, sm16 = (p.astype(np.uint16) for p in planes)
        return (((sm16 & 0x80) << 8) | (e16 << 7) | (sm16 & 0x7F)).astype(np.uint16).view(dtype)
    if transform == "fp32-exponent":
        e, st, m1, m0 = (p.astype(np.uint32) for p in planes)
        bits = ((st & 0x80) << 24) | (e << 23) | ((st & 0x7F) << 16) | (m1 << 8) | m0
        return bits.astype(np.uint32).view(dtype)
    if transform == "nibbles":
        packed = planes[0]
        nib = np.empty(packed.size * 2, dtype=np.uint8)
        nib[0::2] = packed & 0x0F
        nib[1::2] = packed >> 4
        # ml_dtypes keeps one value per byte, high nibble zero (no sign extension).
        return nib[:count].view(dtype)
    width = dtype.itemsize
    out = np.empty((count, width), dtype=np.uint8)
    for k, plane in zip(reversed(range(width)), planes, strict=True):
        out[:, k] = plane
    return out.reshape(-1).view(dtype)


def _plane_count(transform: str, dtype: np.dtype) -> int:
    return {"bf16-exponent": 2, "fp32-exponent": 4, "nibbles": 1}.get(transform, dtype.itemsize)


# --- framework adapters ----------------------------------------------------------------------


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        from tensorpress.errors import BackendUnavailableError

        raise BackendUnavailableError("torch is not installed", extra="torch") from None
    return torch


def is_torch_tensor(obj: Any) -> bool:
    """True for a torch.Tensor, without importing torch when it is not loaded."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def to_numpy(tensor: Any) -> tuple[np.ndarray, str, str | None]:
    """(numpy view of the tensor's values, "numpy"|"torch", torch device or None)."""
    if is_torch_tensor(tensor):
        torch = _torch()
        t = tensor.detach()
        device = str(t.device)
        name = str(t.dtype).removeprefix("torch.")
        np_dtype = dtype_from_name(name) if name in _NAMED_DTYPES else None
        if np_dtype is None:
            raise InvalidArgumentError(f"torch dtype {t.dtype} is not supported")
        flat = t.cpu().contiguous().reshape(-1)
        raw = flat.view(torch.uint8).numpy() if flat.dtype != torch.bool else flat.numpy().view(np.uint8)
        return raw.view(np_dtype).reshape(tuple(t.shape)), "torch", device
    if isinstance(tensor, np.ndarray | np.generic):
        return np.asarray(tensor), "numpy", None
    raise TypeError(f"expected a numpy array or torch tensor, got {type(tensor).__name__}")


def from_numpy(arr: np.ndarray, kind: str, device: str | None) -> Any:
    """Return ``arr`` as the kind of tensor it came from."""
    if kind == "numpy":
        return arr
    torch = _torch()
    name = dtype_name(arr.dtype)
    torch_dtype = getattr(torch, name, None)
    if torch_dtype is None:
        raise InvalidArgumentError(f"this torch has no dtype {name}")
    if arr.size == 0:
        out = torch.empty(arr.shape, dtype=torch_dtype)
    else:
        raw = torch.from_numpy(np.ascontiguousarray(arr).reshape(-1).view(np.uint8).copy())
        out = (raw.bool() if name == "bool" else raw.view(torch_dtype)).reshape(arr.shape)
    return out.to(device) if device and device != "cpu" else out


# --- the compressed tensor -------------------------------------------------------------------


@dataclass
class PlaneStream:
    """One coded byte plane: the codec that was chosen and its self-describing stream."""

    codec: str
    blob: bytes


@dataclass
class CompressedTensor:
    """A losslessly compressed tensor. ``decompress`` restores it bit-exactly."""

    dtype: str
    shape: tuple[int, ...]
    transform: str
    planes: list[PlaneStream]
    kind: str = "numpy"
    device: str | None = None
    method: str = field(default=METHOD, init=False)

    @property
    def nbytes(self) -> int:
        """Compressed size of the planes."""
        return sum(len(p.blob) for p in self.planes)

    @property
    def raw_nbytes(self) -> int:
        """Size of the uncompressed tensor (int4 counted at half a byte per value)."""
        count = int(np.prod(self.shape, dtype=np.int64))
        if self.transform == "nibbles":
            return (count + 1) // 2
        return count * dtype_from_name(self.dtype).itemsize

    @property
    def ratio(self) -> float:
        """Compressed / raw size (lower is better)."""
        return self.nbytes / self.raw_nbytes if self.raw_nbytes else 1.0

    @property
    def codec(self) -> str:
        """Codecs per plane, e.g. ``"huffman+raw"``."""
        return "+".join(p.codec for p in self.planes) or "none"

    def header(self) -> dict[str, Any]:
        """JSON-able parameters; with :meth:`payload` this is everything needed to decode."""
        offsets = []
        at = 0
        for p in self.planes:
            offsets.append({"codec": p.codec, "offset": at, "length": len(p.blob)})
            at += len(p.blob)
        return {
            "dtype": self.dtype,
            "shape": list(self.shape),
            "transform": self.transform,
            "planes": offsets,
            "kind": self.kind,
            "device": self.device,
        }

    def payload(self) -> bytes:
        return b"".join(p.blob for p in self.planes)

    @classmethod
    def from_parts(cls, header: dict[str, Any], payload: bytes | memoryview) -> CompressedTensor:
        """Rebuild from :meth:`header` and :meth:`payload` (validated: FormatError if inconsistent)."""
        try:
            dtype = str(header["dtype"])
            shape = tuple(int(d) for d in header["shape"])
            transform = str(header["transform"])
            plane_specs = list(header["planes"])
            kind = str(header.get("kind", "numpy"))
            device = header.get("device")
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"malformed lossless tensor header: {exc!r}") from None
        dtype_from_name(dtype)
        if any(d < 0 for d in shape):
            raise FormatError(f"negative dimension in shape {shape}")
        if kind not in ("numpy", "torch"):
            raise FormatError(f"unknown tensor kind {kind!r}")
        planes = []
        view = memoryview(payload)
        for spec in plane_specs:
            try:
                offset, length, codec = int(spec["offset"]), int(spec["length"]), str(spec["codec"])
            except (KeyError, TypeError, ValueError) as exc:
                raise FormatError(f"malformed plane entry: {exc!r}") from None
            if offset < 0 or length < 0 or offset + length > len(view):
                raise FormatError(f"plane [{offset}, {offset + length}) outside the {len(view)}-byte payload")
            planes.append(PlaneStream(codec, bytes(view[offset : offset + length])))
        return cls(dtype, shape, transform, planes, kind, device if isinstance(device, str) else None)


#: Serialised code-table bytes per codec (see docs/format.md), for size prediction.
TABLE_BYTES = {"raw": 0, "qlc": 265, "dlc": 259, "huffman": 128, "expgolomb": 1, "expgolomb-rank": 257}


def predicted_size(n: int, mean_code_len: float, codec: str, lanes: int, chunk_size: int) -> int:
    """Stream bytes for ``n`` symbols at ``mean_code_len`` bits (table, index, lane jumps included)."""
    chunks = -(-n // chunk_size)
    if codec == "raw":
        return 28 + chunks * (8 + 1) + n
    return 28 + TABLE_BYTES[codec] + chunks * (8 + 1 + 4 * lanes + lanes) + int(n * mean_code_len / 8)


def choose_codec(
    plane: np.ndarray,
    candidates: tuple[str, ...] = AUTO_CANDIDATES,
    *,
    lanes: int = entropy.DEFAULT_LANES,
    chunk_size: int = entropy.DEFAULT_CHUNK_SIZE,
) -> str:
    """The candidate with the smallest predicted stream on ``plane`` (mean code length from the
    plane's histogram, plus table and chunk overhead), or ``"raw"`` unless a code saves at least
    :data:`MIN_SAVING`."""
    if plane.size == 0:
        return "raw"
    stats = entropy.stats(plane)
    sizes = {
        c: predicted_size(plane.size, stats.codecs[c].mean_code_len, c, lanes, chunk_size) for c in candidates
    }
    best = min(candidates, key=sizes.__getitem__)
    raw = predicted_size(plane.size, 8.0, "raw", lanes, chunk_size)
    return best if sizes[best] <= (1 - MIN_SAVING) * raw else "raw"


def compress(
    tensor: Any,
    codec: str = "auto",
    *,
    threads: int | None = None,
    lanes: int = entropy.DEFAULT_LANES,
    chunk_size: int = entropy.DEFAULT_CHUNK_SIZE,
) -> CompressedTensor:
    """Compress a numpy array or torch tensor losslessly.

    Args:
        tensor: numpy array (incl. ml_dtypes bfloat16/float8/int4) or torch tensor (any device;
            it comes back on the same device).
        codec: ``"auto"`` (smallest per plane) or one entropy codec for every plane.
        threads, lanes, chunk_size: passed to :func:`tensorpress.entropy.encode`.
    """
    if codec != "auto" and codec not in entropy.CODECS:
        raise InvalidArgumentError(
            f"unknown codec {codec!r}; use 'auto' or one of {', '.join(entropy.CODECS)}"
        )
    arr, kind, device = to_numpy(tensor)
    name = dtype_name(arr.dtype)
    transform = transform_name(name)
    flat = np.ascontiguousarray(arr).reshape(-1)
    planes = []
    for plane in split_planes(flat, transform):
        chosen = choose_codec(plane, lanes=lanes, chunk_size=chunk_size) if codec == "auto" else codec
        blob = entropy.encode(plane, chosen, threads, lanes=lanes, chunk_size=chunk_size)
        planes.append(PlaneStream(chosen, blob))
    return CompressedTensor(name, tuple(arr.shape), transform, planes, kind, device)


def decompress(obj: Any, *, threads: int | None = None, as_kind: str | None = None) -> Any:
    """Restore a tensor compressed by :func:`compress` (or by another tensorpress method: any
    object with a ``decode()`` method, e.g. a video-coded tensor) bit-exactly, as the kind of
    tensor it came from (or ``as_kind="numpy"|"torch"``)."""
    if not isinstance(obj, CompressedTensor):
        decode = getattr(obj, "decode", None)
        if callable(decode):
            return decode()
        raise TypeError(f"cannot decompress a {type(obj).__name__}")
    dtype = dtype_from_name(obj.dtype)
    count = int(np.prod(obj.shape, dtype=np.int64))
    limit = (count + 1) // 2 if obj.transform == "nibbles" else count
    planes = [entropy.decode(p.blob, threads, max_size=limit) for p in obj.planes]
    flat = merge_planes(planes, obj.transform, dtype, count)
    arr = flat.reshape(obj.shape)
    kind = as_kind or obj.kind
    return from_numpy(arr, kind, obj.device if kind == obj.kind else None)


__all__ = [
    "AUTO_CANDIDATES",
    "CompressedTensor",
    "PlaneStream",
    "choose_codec",
    "compress",
    "decompress",
    "dtype_from_name",
    "dtype_name",
    "merge_planes",
    "predicted_size",
    "split_planes",
]
