"""Method ``lossless``: byte-plane transforms plus one entropy stream per plane (bit-exact).

A tensor's elements are split into byte planes so that each plane has one kind of content:

- 1-byte types (float8_e4m3fn, float8_e5m2, int8, uint8, bool): the byte itself.
- bfloat16: the 8 exponent bits, then sign + 7 mantissa bits (as DFloat11/ZipNN separate the
  exponent, which carries almost all the redundancy).
- float32: the 8 exponent bits, then sign + top 7 mantissa bits, then two mantissa bytes.
- float16 and other multi-byte types: little-endian byte planes, high byte first.
- int4/uint4 (one value per byte in memory): two values per byte, element ``2i`` in the low
  nibble of byte ``i``; an odd count leaves a zero high nibble in the last byte.

Each plane is coded by :mod:`tensorpress.entropy`; ``codec="auto"`` measures every candidate's
size on the plane's histogram (one pass in Rust) and keeps the smallest, or stores the plane raw
when no code saves at least :data:`MIN_SAVING`. A plane of two chunks or more is first probed
on every eighth chunk: when the sample's entropy is clearly (0.02 bit) above what any code would
need to save that much (a float's low mantissa bytes), the plane is stored raw without counting
the rest, which would cost as much as coding the exponent plane. The transform follows from the
dtype; the payload is the plane streams back to back, in plane order, with no gaps.

With ``codec="auto"`` a tensor whose streams would not be smaller than its raw bytes (a bias or
norm vector of a few hundred values, where the streams' headers cost more than coding saves) is
stored ``verbatim``: its little-endian element bytes as they are, one plane of codec
``stored``, so no stored tensor is larger than its raw bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from tensorpress import entropy
from tensorpress.errors import CorruptDataError, FormatError, InvalidArgumentError
from tensorpress.methods import base
from tensorpress.methods.arrays import dtype_from_name, dtype_name, to_numpy

#: A code must save at least this fraction of a plane to be used by ``codec="auto"``.
MIN_SAVING = 0.01
#: Codecs ``codec="auto"`` chooses among (QLC first: on a tie its faster decode wins).
AUTO_CANDIDATES = ("qlc", "huffman", "expgolomb-rank")
#: Method name in the container.
METHOD = "lossless"
#: Transforms, each with the dtypes that use it; ``verbatim`` (any dtype but int4/uint4) stores
#: the element bytes as they are.
TRANSFORMS = ("bf16-exponent", "fp32-exponent", "nibbles", "byte-planes", "verbatim")
#: The transform and plane codec of a tensor stored as its raw bytes.
VERBATIM = "verbatim"
STORED = "stored"
#: Entropy-stream header (docs/format.md §1): magic, version, codec id, lanes, flags, length n.
_STREAM_HEAD = struct.Struct("<4sBBBBQ")
_STREAM_MAGIC = b"\x89TPE"


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


def plane_count(transform: str, dtype: np.dtype) -> int:
    """Number of planes ``transform`` splits an element of ``dtype`` into."""
    return {"bf16-exponent": 2, "fp32-exponent": 4, "nibbles": 1, VERBATIM: 1}.get(transform, dtype.itemsize)


def plane_length(transform: str, count: int) -> int:
    """Bytes per plane for ``count`` elements."""
    return (count + 1) // 2 if transform == "nibbles" else count


def split_planes(flat: np.ndarray, transform: str) -> list[np.ndarray]:
    """Split a flat array into contiguous uint8 planes (inverse: :func:`merge_planes`), in Rust
    on the shared pool (``entropy.split_planes_into``)."""
    if transform not in entropy.TRANSFORMS:
        raise FormatError(f"unknown byte-plane transform {transform!r}")
    n = plane_length(transform, flat.size)
    planes = [np.empty(n, np.uint8) for _ in range(plane_count(transform, flat.dtype))]
    return entropy.split_planes_into(np.ascontiguousarray(flat), transform, planes)


def merge_planes(planes: list[np.ndarray], transform: str, dtype: np.dtype, count: int) -> np.ndarray:
    """Rebuild a flat array of ``count`` elements of ``dtype`` from its planes."""
    expected = plane_count(transform, dtype)
    if len(planes) != expected:
        raise FormatError(f"{transform} needs {expected} planes, got {len(planes)}")
    sizes = {p.size for p in planes}
    if count and sizes != {plane_length(transform, count)}:
        raise CorruptDataError(
            f"planes hold {sorted(sizes)} bytes, expected {plane_length(transform, count)} each"
        )
    if transform == "bf16-exponent":
        e16, sm16 = (p.astype(np.uint16) for p in planes)
        return (((sm16 & 0x80) << 8) | (e16 << 7) | (sm16 & 0x7F)).astype(np.uint16).view(dtype)
    if transform == "fp32-exponent":
        e, st, m1, m0 = (p.astype(np.uint32) for p in planes)
        bits = ((st & 0x80) << 24) | (e << 23) | ((st & 0x7F) << 16) | (m1 << 8) | m0
        return bits.astype(np.uint32).view(dtype)
    if transform == "nibbles":
        packed = planes[0]
        if count % 2 and int(packed[-1]) >> 4:
            raise CorruptDataError("the padding nibble of an odd-length int4 tensor is not zero")
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


def stream_facts(blob: bytes | memoryview, what: str) -> tuple[str, int]:
    """(codec name, decoded length) from an entropy stream's fixed header, without decoding."""
    if len(blob) < _STREAM_HEAD.size:
        raise FormatError(f"{what}: {len(blob)} bytes cannot hold an entropy stream header")
    magic, _version, codec_id, _lanes, _flags, n = _STREAM_HEAD.unpack_from(blob, 0)
    if magic != _STREAM_MAGIC or codec_id >= len(entropy.CODECS):
        raise FormatError(f"{what} is not an entropy stream (magic {magic!r}, codec id {codec_id})")
    return entropy.CODECS[codec_id], int(n)


# --- the stored tensor -----------------------------------------------------------------------


@dataclass
class PlaneStream:
    """One coded byte plane: the codec that was chosen and its self-describing stream."""

    codec: str
    #: A view of the tensor's ``joined`` streams, of a borrowed file mapping
    #: (``from_parts(..., borrow=True)``), or bytes.
    blob: bytes | memoryview

    def __getstate__(self) -> dict[str, Any]:
        # Views cannot be pickled: a pickled plane carries its own bytes.
        return {"codec": self.codec, "blob": bytes(self.blob)}


@dataclass(repr=False)
class CompressedTensor:
    """A losslessly compressed tensor. ``decode`` restores it bit-exactly."""

    dtype: str
    shape: tuple[int, ...]
    transform: str
    planes: list[PlaneStream]
    kind: str = "numpy"
    device: str | None = None
    method: ClassVar[str] = METHOD
    #: The planes' streams end to end, where they were coded into one buffer (the planes are
    #: views of it): :meth:`payload` returns it instead of joining a copy.
    joined: bytes | None = field(default=None, compare=False)

    @property
    def numel(self) -> int:
        return base.numel(self.shape)

    @property
    def nbytes(self) -> int:
        """Compressed size of the planes."""
        return sum(len(p.blob) for p in self.planes)

    @property
    def raw_nbytes(self) -> int:
        """Size of the uncompressed tensor (int4 counted at half a byte per value)."""
        if self.transform == "nibbles":
            return (self.numel + 1) // 2
        return self.numel * dtype_from_name(self.dtype).itemsize

    @property
    def decoded_nbytes(self) -> int:
        return self.numel * dtype_from_name(self.dtype).itemsize

    @property
    def bits_per_value(self) -> float:
        return 8 * self.nbytes / self.numel if self.numel else 0.0

    @property
    def ratio(self) -> float:
        """Compressed / raw size (lower is better)."""
        return self.nbytes / self.raw_nbytes if self.raw_nbytes else 1.0

    @property
    def codec(self) -> str:
        """Codecs per plane, e.g. ``"huffman+raw"``."""
        return "+".join(p.codec for p in self.planes) or "none"

    def __repr__(self) -> str:
        return (
            f"CompressedTensor(shape={self.shape}, dtype={self.dtype}, method={self.method}, "
            f"codec={self.codec}, nbytes={self.nbytes}, ratio={self.ratio:.3f})"
        )

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

    def __getstate__(self) -> dict[str, Any]:
        # The planes pickle as bytes of their own; `joined` would only duplicate them.
        return {**self.__dict__, "joined": None}

    def payload(self) -> bytes:
        if self.joined is not None:
            return self.joined
        return b"".join(p.blob for p in self.planes)

    @classmethod
    def from_parts(
        cls, header: dict[str, Any], payload: bytes | memoryview, *, borrow: bool = False
    ) -> CompressedTensor:
        """Validate ``header`` against ``payload`` (docs/format.md §2.2), then build.

        The planes are copies of ``payload`` unless ``borrow``: then they are views into it, and
        the caller keeps ``payload`` alive and unchanged for the tensor's whole life."""
        m = METHOD
        h = base.need_dict(header, m)
        dtype = base.need_dtype(h, m)
        shape = base.need_shape(h, m)
        transform = base.need_choice(h, "transform", TRANSFORMS, m)
        native = transform_name(dtype)
        if transform != native and (transform != VERBATIM or native == "nibbles"):
            raise base.fail(m, f"transform {transform!r} does not belong to dtype {dtype}")
        kind = base.need_kind(h, m)
        device = base.need_device(h, m)
        specs = h.get("planes")
        n_planes = plane_count(transform, dtype_from_name(dtype))
        if not isinstance(specs, list) or len(specs) != n_planes:
            raise base.fail(m, f"{transform} of {dtype} needs a list of {n_planes} planes")
        view = memoryview(payload)
        expect = plane_length(transform, base.numel(shape))
        if transform == VERBATIM:
            expect *= dtype_from_name(dtype).itemsize
        planes = []
        at = 0
        for i, spec in enumerate(specs):
            spec = base.need_dict(spec, m, f"plane {i}")
            codecs = (STORED,) if transform == VERBATIM else entropy.CODECS
            codec = base.need_choice(spec, "codec", codecs, m)
            offset = base.need_int(spec, "offset", 0, base.U64_MAX, m)
            length = base.need_int(spec, "length", 0, base.U64_MAX, m)
            if offset != at or offset + length > len(view):
                raise base.fail(m, f"plane {i} at [{offset}, {offset + length}) does not follow at {at}")
            blob = view[offset : offset + length] if borrow else bytes(view[offset : offset + length])
            stream_codec, n = (STORED, length) if transform == VERBATIM else stream_facts(blob, f"plane {i}")
            if stream_codec != codec or n != expect:
                raise base.fail(
                    m, f"plane {i} is a {stream_codec} stream of {n} bytes, header says {codec} of {expect}"
                )
            planes.append(PlaneStream(codec, blob))
            at = offset + length
        if at != len(view):
            raise base.fail(m, f"planes end at {at}, the payload at {len(view)}")
        return cls(dtype, shape, transform, planes, kind, device)

    def decode(
        self,
        as_kind: str | None = None,
        device: str | None = None,
        *,
        threads: int | None = None,
        out: Any = None,
    ) -> Any:
        """The tensor, bit-exact, as ``as_kind`` (default: the kind it came from).

        ``out``: a caller-owned C-contiguous numpy array or torch CPU tensor of this tensor's
        dtype and shape; the planes are decoded and merged straight into it (no intermediate
        copy) and it is returned (``as_kind``/``device`` do not apply).
        """
        base.check_as_kind(as_kind)
        blobs = [p.blob for p in self.planes]
        if self.transform == VERBATIM:
            return self._copy_verbatim(as_kind, device, out)
        if out is not None:
            self.check_out(out)
            return entropy.decode_planes_into(blobs, self.transform, out, threads)
        gpu = base.gpu_decode_target(self.kind, self.device, as_kind, device)
        if gpu is not None and self.transform != "nibbles":  # torch has no 1-byte int4 to return
            from tensorpress.gpu import decode_planes

            # Only the compressed planes cross the bus; decode and merge run on the GPU.
            return decode_planes(blobs, self.transform, self.dtype, tuple(self.shape), device=gpu)
        flat = np.empty(self.numel, dtype_from_name(self.dtype))
        # Decode + merge in one pass per chunk, into the array returned (docs/format.md §2.1).
        entropy.decode_planes_into(blobs, self.transform, flat, threads)
        return base.deliver(flat.reshape(self.shape), self.kind, self.device, as_kind, device)

    def _copy_verbatim(self, as_kind: str | None, device: str | None, out: Any) -> Any:
        """A ``verbatim`` tensor: its bytes, copied (into ``out`` when given)."""
        values = np.frombuffer(self.planes[0].blob, dtype_from_name(self.dtype)).reshape(self.shape)
        if out is not None:
            self.check_out(out)
            entropy.writable_byte_view(out)[:] = values.reshape(-1).view(np.uint8)
            return out
        return base.deliver(values.copy(), self.kind, self.device, as_kind, device)

    def check_out(self, out: Any) -> None:
        """InvalidArgumentError unless ``out`` has this tensor's dtype and shape."""
        shape = tuple(getattr(out, "shape", ()))
        dtype = getattr(out, "dtype", None)
        name = str(dtype).removeprefix("torch.") if dtype is not None else None
        if isinstance(dtype, np.dtype):
            name = dtype_name(dtype) if dtype.kind != "O" else "object"
        if shape != tuple(self.shape) or name != self.dtype:
            raise InvalidArgumentError(
                f"out must be a {self.dtype} tensor of shape {tuple(self.shape)}, got {name} of shape {shape}"
            )


# --- encoding --------------------------------------------------------------------------------

#: Serialised code-table bytes per codec (docs/format.md §1.2), for size prediction where the
#: table itself is not at hand (Huffman's varies with the lengths: a typical size).
TABLE_BYTES = {"raw": 0, "qlc": 265, "dlc": 259, "huffman": 64, "expgolomb": 1, "expgolomb-rank": 257}


def predicted_size(
    n: int, mean_code_len: float, codec: str, lanes: int, chunk_size: int, table_bytes: int | None = None
) -> int:
    """Stream bytes for ``n`` symbols at ``mean_code_len`` bits: table (``table_bytes``, as
    :class:`~tensorpress.entropy.CodecStats` reports it, or a typical size), index, and per lane
    of a chunk its length (one or two varint bytes) and up to a byte of padding."""
    chunks = -(-n // chunk_size)
    if codec == "raw":
        return 28 + chunks * (8 + 1) + n
    table = TABLE_BYTES[codec] if table_bytes is None else table_bytes
    return 28 + table + chunks * (8 + 1 + 2 * lanes) + int(n * mean_code_len / 8)


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
    sizes = {}
    for c in candidates:
        code = stats.codecs[c]
        sizes[c] = predicted_size(plane.size, code.mean_code_len, c, lanes, chunk_size, code.table_bytes)
    best = min(candidates, key=sizes.__getitem__)
    raw = predicted_size(plane.size, 8.0, "raw", lanes, chunk_size)
    return best if sizes[best] <= (1 - MIN_SAVING) * raw else "raw"


#: With ``lanes=None`` a plane gets one lane per this many bytes (at least 1, at most
#: ``entropy.DEFAULT_LANES``): every lane of a coded chunk costs its length and up to a byte of
#: padding, and the decoder's per-lane setup, which a bias vector of a few hundred values cannot
#: pay for.
BYTES_PER_LANE = 4096
#: Lane counts the SIMD decoders take whole (8 lanes per AVX2 register): a count between them is
#: rounded down to one, as other counts decode on the portable kernel at half the speed.
SIMD_LANES = (32, 16, 8)


def auto_lanes(plane_bytes: int) -> int:
    """Lanes for a plane of ``plane_bytes`` bytes when the caller leaves them to us."""
    lanes = max(1, min(entropy.DEFAULT_LANES, plane_bytes // BYTES_PER_LANE))
    return next((n for n in SIMD_LANES if lanes >= n), lanes)


def compress(
    tensor: Any,
    codec: str | list[str] | tuple[str, ...] = "auto",
    *,
    threads: int | None = None,
    lanes: int | None = None,
    chunk_size: int = entropy.DEFAULT_CHUNK_SIZE,
) -> CompressedTensor:
    """Compress a numpy array or torch tensor losslessly.

    Args:
        tensor: numpy array (incl. ml_dtypes bfloat16/float8/int4) or torch tensor (any device;
            it comes back on the same device).
        codec: ``"auto"`` (smallest per plane), one entropy codec for every plane, or a list of
            one codec per plane (a plan's choice). ``"auto"`` and lists fall back to
            ``verbatim`` when the streams would not be smaller than the raw bytes.
        lanes: lanes per chunk; ``None``: :data:`entropy.DEFAULT_LANES`, fewer for small
            tensors (:func:`auto_lanes`).
        threads, chunk_size: passed to :func:`tensorpress.entropy.encode`.
    """
    job = _prepare(tensor, codec, lanes)
    # Split + code in one pass per chunk (the planes are never materialised whole), every
    # stream written once into one buffer that the planes view. Each plane is the stream
    # entropy.encode(split_planes(...)[k], compact=True) would give, its codec the plan's, the
    # given one, or (auto) chosen as choose_codec does; never larger than the plane stored raw.
    streams = entropy.encode_planes_joined(
        job.flat,
        job.transform,
        codec,
        threads,
        candidates=AUTO_CANDIDATES,
        min_saving=MIN_SAVING,
        lanes=job.lanes,
        chunk_size=chunk_size,
    )
    return _finish(job, codec, *streams)


def compress_many(
    tensors: list[Any],
    codec: str | list[str] | tuple[str, ...] = "auto",
    *,
    threads: int | None = None,
    chunk_size: int = entropy.DEFAULT_CHUNK_SIZE,
) -> list[CompressedTensor]:
    """:func:`compress` of each of ``tensors`` (lanes chosen per tensor), in one call that codes
    every chunk of every tensor side by side on the shared pool: a model of many small tensors
    is coded on every core. Each result equals ``compress(tensor, codec)``."""
    jobs = [_prepare(tensor, codec, None) for tensor in tensors]
    plane_codecs = None if isinstance(codec, str) else list(codec)
    encoded = entropy.encode_planes_joined_many(
        [(job.flat, job.transform, job.lanes, plane_codecs) for job in jobs],
        codec if isinstance(codec, str) else "auto",
        threads,
        candidates=AUTO_CANDIDATES,
        min_saving=MIN_SAVING,
        chunk_size=chunk_size,
    )
    return [_finish(job, codec, *streams) for job, streams in zip(jobs, encoded, strict=True)]


@dataclass
class _Job:
    """A tensor checked and flattened for coding."""

    flat: np.ndarray
    dtype: str
    shape: tuple[int, ...]
    transform: str
    kind: str
    device: str | None
    lanes: int


def _prepare(tensor: Any, codec: str | list[str] | tuple[str, ...], lanes: int | None) -> _Job:
    for c in [codec] if isinstance(codec, str) else codec:
        if c not in entropy.CODECS and (c != "auto" or not isinstance(codec, str)):
            known = ", ".join(entropy.CODECS)
            raise InvalidArgumentError(f"unknown codec {c!r}; use 'auto' or one of {known}")
    arr, kind, device = to_numpy(tensor)
    name = dtype_name(arr.dtype)
    transform = transform_name(name)
    flat = np.ascontiguousarray(arr).reshape(-1)
    if lanes is None:
        lanes = auto_lanes(plane_length(transform, flat.size))
    if not isinstance(codec, str) and len(codec) != plane_count(transform, arr.dtype):
        raise InvalidArgumentError(
            f"{len(codec)} plane codecs for a {name} tensor of {plane_count(transform, arr.dtype)} planes"
        )
    return _Job(flat, name, tuple(arr.shape), transform, kind, device, lanes)


def _finish(
    job: _Job, codec: str | list[str] | tuple[str, ...], codecs: list[str], lengths: list[int], joined: bytes
) -> CompressedTensor:
    """The stored tensor of ``job`` from its coded planes (end to end in ``joined``)."""
    view = memoryview(joined)
    ends = np.cumsum([0, *lengths]).tolist()
    streams = [PlaneStream(c, view[a:b]) for c, a, b in zip(codecs, ends[:-1], ends[1:], strict=True)]
    stored = CompressedTensor(job.dtype, job.shape, job.transform, streams, job.kind, job.device, joined)
    return stored if codec != "auto" and isinstance(codec, str) else _verbatim_if_smaller(stored, job.flat)


def _verbatim_if_smaller(stored: CompressedTensor, flat: np.ndarray) -> CompressedTensor:
    """``stored``, or the tensor ``verbatim`` when its streams are not smaller than its bytes."""
    if stored.transform == "nibbles" or stored.nbytes < flat.nbytes:
        return stored
    raw = flat.view(np.uint8).tobytes()
    return CompressedTensor(
        stored.dtype, stored.shape, VERBATIM, [PlaneStream(STORED, raw)], stored.kind, stored.device, raw
    )


__all__ = [
    "AUTO_CANDIDATES",
    "BYTES_PER_LANE",
    "METHOD",
    "MIN_SAVING",
    "SIMD_LANES",
    "STORED",
    "TRANSFORMS",
    "VERBATIM",
    "CompressedTensor",
    "PlaneStream",
    "auto_lanes",
    "choose_codec",
    "compress",
    "compress_many",
    "merge_planes",
    "plane_count",
    "predicted_size",
    "split_planes",
    "stream_facts",
    "transform_name",
]
