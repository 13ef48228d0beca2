"""Lossless entropy codes for bytes: Quad/Dual Length Codes, canonical Huffman, Exp-Golomb.

The work happens in the Rust core with the GIL released; one call per tensor, no Python loop
per chunk. A blob is self-describing (codec, table, chunk index, checksums), see
``docs/format.md``.

>>> import numpy as np, tensorpress.entropy as te
>>> blob = te.encode(np.arange(1000, dtype=np.uint8) % 7, codec="huffman")
>>> te.decode(blob)[:8]
array([0, 1, 2, 3, 4, 5, 6, 0], dtype=uint8)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tensorpress import _core
from tensorpress.errors import FormatError, InvalidArgumentError, InvalidTypeError

#: Codec names accepted by :func:`encode`.
CODECS: tuple[str, ...] = tuple(_core.CODECS)
DEFAULT_CHUNK_SIZE: int = _core.DEFAULT_CHUNK_SIZE
DEFAULT_LANES: int = _core.DEFAULT_LANES
#: Largest ``threads=`` value accepted (``None`` means all cores).
MAX_THREADS: int = _core.MAX_THREADS
#: Byte-plane transforms of :func:`encode_planes` / :func:`decode_planes_into`
#: (``docs/format.md`` §2.1).
TRANSFORMS: tuple[str, ...] = ("bf16-exponent", "fp32-exponent", "nibbles", "byte-planes")


def check_threads(threads: int | None) -> int | None:
    """Validate a ``threads=`` argument the way every entry point does: ``None`` (all cores) or
    an int in 1..:data:`MAX_THREADS`. Every value shares one process-wide pool of
    :func:`pool_threads` workers (built once), so at most that many run at a time.
    """
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer):
        raise InvalidArgumentError(f"threads must be None or an int, got {type(threads).__name__}")
    if not 1 <= threads <= MAX_THREADS:
        raise InvalidArgumentError(f"threads must be None (all cores) or 1..{MAX_THREADS}, got {threads}")
    return int(threads)


def _check_size(name: str, value: int, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidArgumentError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise InvalidArgumentError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def pool_threads() -> int:
    """Workers in the shared thread pool (one per core; built on first use)."""
    return _core.pool_threads()


def as_byte_view(data: Any) -> bytes | bytearray | memoryview | np.ndarray:
    """The bytes of ``data`` as a flat uint8 buffer, without copying when it is contiguous.

    Accepts bytes, bytearray, memoryview and numpy arrays of any fixed-size dtype (encoded as
    their raw bytes in memory order). Non-contiguous arrays are copied once.
    """
    if isinstance(data, bytes | bytearray):
        return data
    if isinstance(data, memoryview):
        if not data.c_contiguous:
            data = memoryview(data.tobytes())
        return data.cast("B") if data.format != "B" or data.ndim != 1 else data
    if isinstance(data, np.ndarray):
        if data.dtype.hasobject:
            raise InvalidTypeError("object arrays have no byte representation to encode")
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    raise InvalidTypeError(
        f"expected bytes, bytearray, memoryview or a numpy array, got {type(data).__name__}"
    )


def _check_codec(codec: str) -> None:
    if codec not in CODECS:
        raise InvalidArgumentError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")


def encode(
    data: Any,
    codec: str = "qlc",
    threads: int | None = None,
    *,
    lanes: int = DEFAULT_LANES,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    compact: bool = False,
) -> bytes:
    """Entropy-code the bytes of ``data``.

    Args:
        data: bytes-like or numpy array (its bytes are coded).
        codec: ``"qlc"`` (Quad Length Codes), ``"dlc"`` (Dual Length Codes), ``"huffman"``,
            ``"expgolomb"`` (on byte values), ``"expgolomb-rank"`` (on frequency ranks) or ``"raw"``.
        threads: worker threads (default: all cores).
        lanes: interleaved bitstreams per chunk (1-32).
        chunk_size: decoded bytes per independently decodable chunk.
        compact: never exceed the raw stream of the same bytes (28 + 9 bytes per chunk over
            the input): where the code table costs more than coding saves, write the stream
            with the ``"raw"`` codec (read it back from :func:`info`). Off by default because
            callers may record the codec they asked for.
    """
    _check_codec(codec)
    threads = check_threads(threads)
    lanes = _check_size("lanes", lanes, 1)
    chunk_size = _check_size("chunk_size", chunk_size, 1)
    return _core.encode(as_byte_view(data), codec, lanes, chunk_size, threads, bool(compact))


def decoded_size(blob: Any) -> int:
    """Bytes ``blob`` decodes to (header and its checksum verified)."""
    return _core.decoded_len(_blob_view(blob))


def _blob_view(blob: Any) -> bytes | bytearray | memoryview | np.ndarray:
    try:
        return as_byte_view(blob)
    except TypeError as exc:
        raise FormatError(f"a tensorpress stream must be bytes-like: {exc}") from None


def decode(
    blob: Any,
    threads: int | None = None,
    *,
    kernel: str = "auto",
    max_size: int | None = None,
    out: np.ndarray | None = None,
    device: Any = None,
    backend: str | None = None,
) -> Any:
    """Decode a blob made by :func:`encode` into a new (or the given) uint8 array.

    ``max_size`` refuses streams that declare more decoded bytes (before allocating).
    ``kernel`` forces a decode kernel (see :func:`kernels`); results never depend on it.
    ``device`` (e.g. ``"cuda"``) or ``backend="triton"`` decodes with the GPU kernels of
    :mod:`tensorpress.gpu` instead and returns a ``torch.uint8`` tensor on that device (``out``
    then is a torch tensor); the stream is validated and checksummed on the CPU first.
    """
    if device is not None or backend is not None:
        if backend not in (None, "triton"):
            raise InvalidArgumentError(f"backend must be 'triton' or None, got {backend!r}")
        from tensorpress import gpu

        return gpu.decode(blob, device=device or "cuda", max_size=max_size, out=out)
    threads = check_threads(threads)
    if max_size is not None:
        max_size = _check_size("max_size", max_size)
    view = _blob_view(blob)
    n = _core.decoded_len(view)
    if max_size is not None and n > max_size:
        raise FormatError(f"stream decodes to {n} bytes, more than max_size={max_size}")
    if out is None:
        out = np.empty(n, dtype=np.uint8)
    else:
        if (
            not isinstance(out, np.ndarray)
            or out.dtype != np.uint8
            or out.size != n
            or not out.flags.c_contiguous
        ):
            raise InvalidArgumentError(f"out must be a contiguous uint8 array of {n} elements")
        if not out.flags.writeable:
            raise InvalidArgumentError("out is read-only")
    _core.decode_into(view, out.reshape(-1), threads, kernel)
    return out


def decode_chunk(blob: Any, index: int, *, kernel: str = "auto") -> np.ndarray:
    """Decode chunk ``index`` alone (random access); see :func:`info` for the chunk layout."""
    index = _check_size("index", index)
    view = _blob_view(blob)
    meta = _core.stream_info(view)
    n_chunks = len(meta["chunks"])
    if not 0 <= index < n_chunks:
        raise InvalidArgumentError(f"chunk {index} out of range ({n_chunks} chunks)")
    start = index * meta["chunk_size"]
    out = np.empty(min(meta["chunk_size"], meta["decoded_len"] - start), dtype=np.uint8)
    _core.decode_chunk(view, index, out, kernel)
    return out


def info(blob: Any) -> dict[str, Any]:
    """Header of a blob: stream version (docs/format.md §1), codec, lanes, decoded length, chunk
    size and (offset, length) per chunk."""
    return _core.stream_info(_blob_view(blob))


def kernels() -> list[str]:
    """Decode kernels available on this CPU (``"scalar"`` is the reference)."""
    return _core.kernels()


def writable_byte_view(out: Any) -> np.ndarray:
    """A flat writable uint8 view sharing memory with ``out`` (a C-contiguous numpy array, or a
    torch CPU tensor), or InvalidArgumentError. Nothing is copied: decoding into the view fills
    ``out``."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(out, torch.Tensor):
        if out.device.type != "cpu" or out.layout != torch.strided or not out.is_contiguous():
            raise InvalidArgumentError("out must be a contiguous, strided torch tensor on the CPU")
        if out.requires_grad:
            raise InvalidArgumentError("out must not require grad")
        flat = out.reshape(-1)
        view = flat.view(torch.uint8) if flat.dtype != torch.bool else flat
        arr = view.numpy().view(np.uint8)
    elif isinstance(out, np.ndarray):
        if not out.flags.c_contiguous or out.dtype.hasobject:
            raise InvalidArgumentError("out must be a C-contiguous numpy array of a fixed-size dtype")
        arr = out.reshape(-1).view(np.uint8)
    else:
        raise InvalidArgumentError(f"out must be a numpy array or torch CPU tensor, got {type(out).__name__}")
    if not arr.flags.writeable:
        raise InvalidArgumentError("out is read-only")
    return arr


def _check_transform(transform: str) -> None:
    if transform not in TRANSFORMS:
        raise InvalidArgumentError(f"unknown transform {transform!r}; choose one of {', '.join(TRANSFORMS)}")


def encode_planes(
    data: Any,
    transform: str,
    codec: str | list[str] | tuple[str, ...] = "auto",
    threads: int | None = None,
    *,
    width: int | None = None,
    candidates: tuple[str, ...] = ("qlc", "huffman", "expgolomb-rank"),
    min_saving: float = 0.01,
    lanes: int = DEFAULT_LANES,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> list[tuple[str, bytes]]:
    """Split a tensor's elements into byte planes (``docs/format.md`` §2.1) and code each plane,
    in one pass per chunk straight from ``data`` (no full-size plane arrays).

    Args:
        data: numpy array (any fixed-size dtype; for ``nibbles`` one 4-bit value per byte).
        transform: one of :data:`TRANSFORMS`.
        codec: one codec for every plane, a list of one codec per plane, or ``"auto"``: per
            plane the candidate with the smallest predicted stream, or ``"raw"`` unless it
            saves ``min_saving`` of it.
        width: element bytes (default: ``data``'s itemsize; 1 for ``nibbles``).

    Returns:
        ``(codec, stream)`` per plane, in plane order; the codec is the stream's own (``"raw"``
        when coding would not make it smaller). Each stream equals :func:`encode` of the plane.
    """
    codecs, lengths, joined = encode_planes_joined(
        data,
        transform,
        codec,
        threads,
        width=width,
        candidates=candidates,
        min_saving=min_saving,
        lanes=lanes,
        chunk_size=chunk_size,
    )
    ends = np.cumsum([0, *lengths]).tolist()
    return [(c, joined[a:b]) for c, a, b in zip(codecs, ends[:-1], ends[1:], strict=True)]


def encode_planes_joined(
    data: Any,
    transform: str,
    codec: str | list[str] | tuple[str, ...] = "auto",
    threads: int | None = None,
    *,
    width: int | None = None,
    candidates: tuple[str, ...] = ("qlc", "huffman", "expgolomb-rank"),
    min_saving: float = 0.01,
    lanes: int = DEFAULT_LANES,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[list[str], list[int], bytes]:
    """:func:`encode_planes` with the streams end to end in one ``bytes`` (each coded byte is
    copied once, straight into it): ``(codec per plane, stream length per plane, streams)``."""
    _check_transform(transform)
    plane_codecs = None if isinstance(codec, str) else list(codec)
    if isinstance(codec, str) and codec != "auto":
        _check_codec(codec)
    for c in plane_codecs or []:
        _check_codec(c)
    for c in candidates:
        _check_codec(c)
    view = as_byte_view(data)
    if width is None:
        width = _element_width(data, transform)
    width = _check_size("width", width, 1)
    return _core.encode_planes(
        view,
        transform,
        width,
        codec if isinstance(codec, str) else "auto",
        list(candidates),
        float(min_saving),
        _check_size("lanes", lanes, 1),
        _check_size("chunk_size", chunk_size, 1),
        check_threads(threads),
        plane_codecs,
    )


def _element_width(data: Any, transform: str) -> int:
    """Bytes per element of ``data`` under ``transform``: a numpy array's item size (nibbles and
    other buffers: 1)."""
    return 1 if transform == "nibbles" else (data.dtype.itemsize if isinstance(data, np.ndarray) else 1)


def encode_planes_joined_many(
    jobs: list[tuple[Any, str, int, list[str] | None]],
    codec: str = "auto",
    threads: int | None = None,
    *,
    candidates: tuple[str, ...] = ("qlc", "huffman", "expgolomb-rank"),
    min_saving: float = 0.01,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> list[tuple[list[str], list[int], bytes]]:
    """:func:`encode_planes_joined` of many tensors in one call: ``jobs`` holds
    ``(data, transform, lanes, plane codecs or None)`` per tensor (``None``: ``codec``). Every
    chunk of every tensor is one work item on the shared pool, so many small tensors are coded
    on every core; the streams are those of one call per tensor."""
    if codec != "auto":
        _check_codec(codec)
    for c in candidates:
        _check_codec(c)
    args = []
    for data, transform, lanes, plane_codecs in jobs:
        _check_transform(transform)
        for c in plane_codecs or []:
            _check_codec(c)
        width = _element_width(data, transform)
        args.append((as_byte_view(data), transform, width, _check_size("lanes", lanes, 1), plane_codecs))
    return _core.encode_planes_many(
        args,
        codec,
        list(candidates),
        float(min_saving),
        _check_size("chunk_size", chunk_size, 1),
        check_threads(threads),
    )


def split_planes_into(
    data: Any, transform: str, planes: list[Any], threads: int | None = None, *, width: int | None = None
) -> list[Any]:
    """Split a tensor's elements into byte planes (``docs/format.md`` §2.1), written into
    ``planes``: one caller-owned, C-contiguous uint8 buffer per plane, each exactly the plane
    length. In pieces on the shared pool with the GIL released; returns ``planes``."""
    _check_transform(transform)
    if width is None:
        width = _element_width(data, transform)
    _core.split_planes_into(
        as_byte_view(data), transform, _check_size("width", width, 1), list(planes), check_threads(threads)
    )
    return planes


def decode_planes_into(
    blobs: list[Any],
    transform: str,
    out: Any,
    threads: int | None = None,
    *,
    width: int | None = None,
    kernel: str = "auto",
) -> Any:
    """Decode the plane streams of one tensor and merge them straight into ``out``: a
    caller-owned, C-contiguous numpy array or torch CPU tensor holding exactly the tensor's
    elements (its dtype's bytes are written; a ``nibbles`` tensor has one value per byte).
    Chunk-parallel with the GIL released; every stream's size is checked against ``out``
    before anything is written. Returns ``out``.
    """
    _check_transform(transform)
    target = writable_byte_view(out)
    if width is None:
        width = 1 if transform == "nibbles" else _element_bytes(out)
    width = _check_size("width", width, 1)
    views = [_blob_view(b) for b in blobs]
    _core.decode_planes_into(views, transform, width, target, check_threads(threads), kernel)
    return out


def decode_planes_many(
    items: list[tuple[list[Any], str, Any]], threads: int | None = None, *, kernel: str = "auto"
) -> None:
    """:func:`decode_planes_into` for many tensors in one call: ``items`` holds
    ``(plane streams, transform, out)`` per tensor. Every chunk of every tensor is one work item
    on the shared pool, so many small tensors (one chunk each) still decode on every core.
    Every header is checked against its ``out`` before anything is written; outputs must not
    overlap.
    """
    jobs = []
    for blobs, transform, out in items:
        _check_transform(transform)
        width = 1 if transform == "nibbles" else _element_bytes(out)
        jobs.append(([_blob_view(b) for b in blobs], transform, width, writable_byte_view(out)))
    _core.decode_many(jobs, check_threads(threads), kernel)


def _element_bytes(out: Any) -> int:
    element_size = getattr(out, "element_size", None)
    return int(element_size()) if callable(element_size) else int(out.dtype.itemsize)


@dataclass(frozen=True)
class CodecStats:
    """What one codec achieves on some bytes (code bits only, no table or chunk overhead)."""

    codec: str
    mean_code_len: float
    saving: float
    params: str
    table_bytes: int  # the serialised code table (docs/format.md §1.2)


@dataclass(frozen=True)
class EntropyStats:
    """Shannon entropy of the bytes and each codec's mean code length."""

    symbols: int
    entropy_bits: float
    codecs: dict[str, CodecStats] = field(default_factory=dict)

    @property
    def entropy_saving(self) -> float:
        """The best possible saving of any order-0 code: (8 − H) / 8."""
        return (8.0 - self.entropy_bits) / 8.0

    def __str__(self) -> str:
        lines = [
            f"{self.symbols} bytes, entropy {self.entropy_bits:.4f} bits/byte "
            f"(bound: saving {100 * self.entropy_saving:.2f} %)",
            f"{'codec':<16}{'bits/byte':>10}{'saving':>10}{'vs entropy':>12}  params",
        ]
        for c in self.codecs.values():
            ratio = c.mean_code_len / self.entropy_bits if self.entropy_bits else float("nan")
            lines.append(
                f"{c.codec:<16}{c.mean_code_len:>10.4f}{100 * c.saving:>9.2f}%"
                f"{100 * (ratio - 1):>11.2f}%  {c.params}"
            )
        return "\n".join(lines)


def stats(data: Any, threads: int | None = None) -> EntropyStats:
    """Entropy of the bytes of ``data`` and the mean code length / saving of every codec."""
    raw = _core.stats(as_byte_view(data), check_threads(threads))
    codecs = {name: CodecStats(name, **fields) for name, fields in raw["codecs"].items()}
    return EntropyStats(symbols=raw["symbols"], entropy_bits=raw["entropy_bits"], codecs=codecs)


__all__ = [
    "CODECS",
    "CodecStats",
    "EntropyStats",
    "as_byte_view",
    "check_threads",
    "decode",
    "decode_chunk",
    "decode_planes_into",
    "decode_planes_many",
    "decoded_size",
    "encode",
    "encode_planes",
    "encode_planes_joined",
    "encode_planes_joined_many",
    "info",
    "kernels",
    "pool_threads",
    "split_planes_into",
    "stats",
    "writable_byte_view",
]
