"""Compressed communication on ``torch.distributed``: DDP comm hooks and collective helpers.

**DDP gradient hooks** (``ddp.register_comm_hook(state, hook)``; :func:`comm_hook` builds both)::

    state, hook = tensorpress.distributed.comm_hook("lossless")   # or "lossy", bits=8
    ddp_model.register_comm_hook(state, hook)
    ...
    state.stats.bytes_per_step()  # what this rank put on the wire

- ``"lossless"`` (:class:`LosslessHook`): each rank divides its bucket by the world size (as DDP's
  built-in allreduce does), compresses it bit-exactly (byte planes: the fp32/bf16 exponent byte
  entropy-coded with QLC/Huffman, mantissa bytes stored raw unless a code pays), all-gathers the
  variable-length payloads (sizes first, then the payloads padded to the longest), decodes the
  others and sums **in rank order** (deterministic). With 2 ranks the result is bit-identical to
  DDP's allreduce (``a + b == b + a`` in IEEE arithmetic); with more ranks it equals an allreduce
  up to the summation order of the backend's ring/tree (which is itself not fixed), and it is the
  same on every rank.
- ``"lossy"`` (:class:`LossyHook`): blockwise symmetric INT-``bits`` (8 or 4) with one fp16 scale per
  ``block_size`` values, **error feedback** (each rank keeps, per bucket, the quantization residual
  and adds it to the next step's gradient), fixed-size payloads all-gathered and dequantized, summed
  in rank order. 8 bits + fp16 scale per 128 values = 8.125 bits/value (3.94× less than fp32).

**Collectives** (lossless; any dtype tensorpress compresses): :func:`compressed_all_gather`
returns every rank's tensor (shapes may differ), :func:`compressed_broadcast` fills ``tensor`` on
every rank from ``src``. Both move only compressed bytes and no pickled objects.

``bytes_sent`` counts the bytes this rank contributes to each collective (payload padded to the
gather size, plus the 8-byte size exchange); a ring all-gather moves each contribution over
``world − 1`` links, like an allreduce moves ``2 (world − 1) / world`` × the bucket.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tensorpress import _core, methods, tensors
from tensorpress.errors import BackendUnavailableError, ChecksumError, FormatError, InvalidArgumentError
from tensorpress.methods.base import parse_json


def _torch() -> Any:
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        raise BackendUnavailableError("tensorpress.distributed needs torch", extra="torch") from None
    if not dist.is_available():
        raise BackendUnavailableError("this torch build has no torch.distributed", extra="torch")
    return torch


# --- statistics -------------------------------------------------------------------------------


@dataclass
class CommStats:
    """Traffic and time of one hook or helper on this rank."""

    steps: int = 0
    buckets: int = 0
    raw_bytes: int = 0
    bytes_sent: int = 0
    encode_s: float = 0.0
    comm_s: float = 0.0
    decode_s: float = 0.0
    per_step_bytes: list[int] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """bytes sent / raw bytes of the data communicated."""
        return self.bytes_sent / self.raw_bytes if self.raw_bytes else 1.0

    def bytes_per_step(self) -> float:
        """Mean bytes sent per optimizer step (a step ends with the last bucket)."""
        return float(np.mean(self.per_step_bytes)) if self.per_step_bytes else 0.0

    def _add(self, raw: int, sent: int, last: bool) -> None:
        self.buckets += 1
        self.raw_bytes += raw
        self.bytes_sent += sent
        if not self.per_step_bytes or self._closed:
            self.per_step_bytes.append(0)
            self._closed = False
        self.per_step_bytes[-1] += sent
        if last:
            self.steps += 1
            self._closed = True

    _closed: bool = field(default=True, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """Summary numbers (JSON-able)."""
        return {
            "steps": self.steps,
            "buckets": self.buckets,
            "raw_bytes": self.raw_bytes,
            "bytes_sent": self.bytes_sent,
            "ratio": self.ratio,
            "bytes_per_step": self.bytes_per_step(),
            "encode_s": self.encode_s,
            "comm_s": self.comm_s,
            "decode_s": self.decode_s,
        }


# --- serialisation of stored tensors ----------------------------------------------------------

#: Magic of a packed stored tensor (:func:`pack_object`); docs/format.md §5.
PACK_MAGIC = b"\x89TPO"
#: Version of the packed framing (version 1, an unchecksummed length + JSON + payload, is not read:
#: packed tensors live only on the wire between ranks of one job).
PACK_VERSION = 2
_PACK_HEAD = struct.Struct("<4sBBHIQII")  # magic, version, flags, reserved, h, p, CRC(h), CRC(p)
#: Largest header of a packed tensor.
MAX_PACK_HEADER = 1 << 20


def pack_object(obj: Any) -> bytes:
    """One checksummed byte string holding a stored tensor of any method (docs/format.md §5):
    a 32-byte preamble (magic, version, lengths, CRC32C of the header, of the payload and of the
    preamble), the JSON header ``{"method", "params"}``, then the payload."""
    if not methods.is_stored(obj):
        raise InvalidArgumentError(f"pack_object takes a stored tensor, got {type(obj).__name__}")
    head = json.dumps({"method": obj.method, "params": obj.header()}, separators=(",", ":")).encode()
    payload = obj.payload()
    fields = (
        PACK_MAGIC,
        PACK_VERSION,
        0,
        0,
        len(head),
        len(payload),
        _core.crc32c(head),
        _core.crc32c(payload),
    )
    pre = _PACK_HEAD.pack(*fields)
    return pre + struct.pack("<I", _core.crc32c(pre)) + head + payload


def unpack_object(blob: bytes | bytearray | memoryview, *, max_size: int | None = None) -> Any:
    """Inverse of :func:`pack_object`: every length and checksum verified, the header validated
    by its method; ``max_size`` refuses a tensor that decodes to more bytes (checked before any
    decoding). Errors: FormatError, ChecksumError."""
    view = memoryview(blob)
    size = _PACK_HEAD.size + 4
    if len(view) < size:
        raise FormatError(f"packed tensor of {len(view)} bytes is shorter than its {size}-byte preamble")
    magic, version, flags, reserved, n_head, n_payload, crc_head, crc_payload = _PACK_HEAD.unpack_from(
        view, 0
    )
    (crc_pre,) = struct.unpack_from("<I", view, _PACK_HEAD.size)
    if magic != PACK_MAGIC:
        raise FormatError("not a packed tensorpress tensor (bad magic)")
    if _core.crc32c(view[: _PACK_HEAD.size]) != crc_pre:
        raise ChecksumError("packed tensor preamble fails its checksum")
    if version != PACK_VERSION:
        raise FormatError(f"packed tensor version {version} is not readable (reads {PACK_VERSION})")
    if flags or reserved:
        raise FormatError(f"packed tensor reserved fields set (flags {flags:#x}, reserved {reserved:#x})")
    if n_head > MAX_PACK_HEADER or size + n_head + n_payload != len(view):
        raise FormatError(
            f"packed tensor is {len(view)} bytes, its preamble says {size} + {n_head} + {n_payload}"
        )
    head, payload = view[size : size + n_head], view[size + n_head :]
    if _core.crc32c(head) != crc_head:
        raise ChecksumError("packed tensor header fails its checksum")
    if _core.crc32c(payload) != crc_payload:
        raise ChecksumError("packed tensor payload fails its checksum")
    doc = parse_json(head, "packed tensor header")
    if not isinstance(doc, dict) or set(doc) != {"method", "params"}:
        raise FormatError('packed tensor header must be {"method": ..., "params": ...}')
    return methods.from_parts(doc["method"], doc["params"], payload, max_size=max_size)


def _group_size(group: Any) -> int:
    torch = _torch()
    return int(torch.distributed.get_world_size(group))


def all_gather_bytes(blob: bytes, group: Any = None, stats: CommStats | None = None) -> list[bytes]:
    """All-gather variable-length byte strings: sizes first, then the payloads padded to the
    longest. Returns every rank's bytes in rank order."""
    torch = _torch()
    dist = torch.distributed
    world = _group_size(group)
    size = torch.tensor([len(blob)], dtype=torch.int64)
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
    t0 = time.perf_counter()
    dist.all_gather(sizes, size, group=group)
    lengths = [int(s.item()) for s in sizes]
    longest = max(lengths)
    padded = torch.zeros(longest, dtype=torch.uint8)
    if blob:
        padded[: len(blob)] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    outs = [torch.empty(longest, dtype=torch.uint8) for _ in range(world)]
    dist.all_gather(outs, padded, group=group)
    if stats is not None:
        stats.comm_s += time.perf_counter() - t0
    return [outs[r][: lengths[r]].numpy().tobytes() for r in range(world)]


# --- lossless hook -----------------------------------------------------------------------------


@dataclass
class LosslessHook:
    """State of the lossless gradient hook (:func:`lossless_hook`)."""

    process_group: Any = None
    codec: str = "auto"
    threads: int | None = 1
    stats: CommStats = field(default_factory=CommStats)


def lossless_hook(state: LosslessHook, bucket):  # DDP rejects annotated hooks
    """DDP comm hook: average the bucket across ranks, moving only losslessly compressed bytes."""
    torch = _torch()
    buf = bucket.buffer()
    group = state.process_group
    world = _group_size(group)
    rank = torch.distributed.get_rank(group)
    buf.div_(world)
    local = buf.detach().cpu()
    t0 = time.perf_counter()
    blob = pack_object(tensors.compress(local, state.codec, threads=state.threads))
    state.stats.encode_s += time.perf_counter() - t0
    gathered = all_gather_bytes(blob, group, state.stats)
    t0 = time.perf_counter()
    acc: Any = None
    for r, b in enumerate(gathered):
        part = local if r == rank else tensors.decompress(unpack_object(b), threads=state.threads).reshape(-1)
        acc = part.clone() if acc is None else acc.add_(part)
    state.stats.decode_s += time.perf_counter() - t0
    state.stats._add(
        local.numel() * local.element_size(), 8 + max(len(b) for b in gathered), bucket.is_last()
    )
    fut: Any = torch.futures.Future()
    fut.set_result(acc.to(buf.device))
    return fut


# --- lossy hook --------------------------------------------------------------------------------


@dataclass
class LossyHook:
    """State of the lossy gradient hook (:func:`lossy_hook`): bits (8 or 4), block size, error
    feedback residuals per bucket index."""

    process_group: Any = None
    bits: int = 8
    block_size: int = 128
    error_feedback: bool = True
    residuals: dict[int, Any] = field(default_factory=dict)
    stats: CommStats = field(default_factory=CommStats)

    def __post_init__(self) -> None:
        if self.bits not in (4, 8):
            raise InvalidArgumentError(f"lossy hook bits must be 4 or 8, got {self.bits}")
        if self.block_size < 1:
            raise InvalidArgumentError(f"block_size must be positive, got {self.block_size}")


def quantize_flat(x: Any, bits: int, block_size: int) -> tuple[Any, Any]:
    """Blockwise symmetric quantization of a flat float tensor (torch): returns (uint8 payload of
    codes then fp16 scales, dequantized float32 values of ``x``'s length).

    The arithmetic is the blockwise format's numpy reference
    (:func:`tensorpress.methods.blockwise.rtn_blockwise` on the vector as one row): each scale is
    ``absmax / qmax`` in float32 rounded *up* to float16 (1 for an all-zero block), codes are
    ``round_half_even(float32(x) / float32(scale))`` clipped to ``[−qmax, qmax]``."""
    torch = _torch()
    qmax = (1 << (bits - 1)) - 1
    n = x.numel()
    pad = (-n) % block_size
    xf = torch.nn.functional.pad(x.float(), (0, pad)).view(-1, block_size)
    absmax = xf.abs().amax(1)
    raw = (absmax / qmax).clamp(max=65504.0)
    scale16 = raw.half()
    # Round up: where float16 rounding went below the float32 scale, take the next float16 (for
    # positive finite halves that is the next bit pattern).
    low = scale16.float() < raw
    scale16 = torch.where(low, (scale16.view(torch.int16) + 1).view(torch.float16), scale16)
    scale16 = torch.where(absmax > 0, scale16, torch.ones_like(scale16))
    scale = scale16.float().unsqueeze(1)
    # Integer codes, as the reference stores them (no -0.0 from rounding small negatives).
    codes = torch.clamp(torch.round(xf / scale), -qmax, qmax).to(torch.int16).float()
    deq = (codes * scale).view(-1)[:n]
    u = (codes.view(-1) + qmax).to(torch.uint8)
    if bits == 4:
        u = u[0::2] | (u[1::2] << 4)
    payload = torch.cat([u, scale16.view(torch.uint8)])
    return payload, deq


def dequantize_flat(payload: Any, n: int, bits: int, block_size: int) -> Any:
    """Inverse of :func:`quantize_flat` (float32, length ``n``)."""
    torch = _torch()
    qmax = (1 << (bits - 1)) - 1
    padded = n + (-n) % block_size
    n_codes = padded if bits == 8 else padded // 2
    u = payload[:n_codes]
    scale = payload[n_codes:].view(torch.float16).float().unsqueeze(1)
    if bits == 4:
        both = torch.empty(padded, dtype=torch.uint8)
        both[0::2] = u & 0x0F
        both[1::2] = u >> 4
        u = both
    codes = u.float() - qmax
    return (codes.view(-1, block_size) * scale).view(-1)[:n]


def lossy_hook(state: LossyHook, bucket):  # DDP rejects annotated hooks
    """DDP comm hook: blockwise-quantized gradients with error feedback, averaged across ranks."""
    torch = _torch()
    dist = torch.distributed
    buf = bucket.buffer()
    group = state.process_group
    world = _group_size(group)
    x = buf.detach().float().cpu().div_(world)
    idx = bucket.index()
    residual = state.residuals.get(idx)
    if state.error_feedback and residual is not None and residual.numel() == x.numel():
        x.add_(residual)
    t0 = time.perf_counter()
    payload, deq = quantize_flat(x, state.bits, state.block_size)
    if state.error_feedback:
        state.residuals[idx] = x - deq
    state.stats.encode_s += time.perf_counter() - t0
    outs = [torch.empty_like(payload) for _ in range(world)]
    t0 = time.perf_counter()
    dist.all_gather(outs, payload, group=group)
    state.stats.comm_s += time.perf_counter() - t0
    t0 = time.perf_counter()
    acc = torch.zeros_like(x)
    for r in range(world):
        acc.add_(dequantize_flat(outs[r], x.numel(), state.bits, state.block_size))
    state.stats.decode_s += time.perf_counter() - t0
    state.stats._add(buf.numel() * buf.element_size(), payload.numel(), bucket.is_last())
    fut: Any = torch.futures.Future()
    fut.set_result(acc.to(dtype=buf.dtype, device=buf.device))
    return fut


# --- plain allreduce with byte accounting (the reference) -------------------------------------


@dataclass
class AllreduceHook:
    """State of :func:`allreduce_hook`: DDP's default averaging, with the same byte accounting."""

    process_group: Any = None
    stats: CommStats = field(default_factory=CommStats)


def allreduce_hook(state: AllreduceHook, bucket):  # DDP rejects annotated hooks
    """DDP comm hook equal to DDP's built-in allreduce (divide, allreduce-sum), counting bytes."""
    torch = _torch()
    buf = bucket.buffer()
    buf.div_(_group_size(state.process_group))
    t0 = time.perf_counter()
    torch.distributed.all_reduce(buf, group=state.process_group)
    state.stats.comm_s += time.perf_counter() - t0
    n = buf.numel() * buf.element_size()
    state.stats._add(n, n, bucket.is_last())
    fut: Any = torch.futures.Future()
    fut.set_result(buf)
    return fut


def comm_hook(kind: str = "lossless", process_group: Any = None, **options: Any) -> tuple[Any, Any]:
    """``(state, hook)`` for ``DistributedDataParallel.register_comm_hook``.

    ``kind``: ``"lossless"`` (options: ``codec``, ``threads``), ``"lossy"`` (``bits`` 8|4,
    ``block_size``, ``error_feedback``) or ``"allreduce"`` (the uncompressed reference, with
    byte counting). The state's ``stats`` is a :class:`CommStats`.
    """
    _torch()
    if kind == "lossless":
        return LosslessHook(process_group, **options), lossless_hook
    if kind == "lossy":
        return LossyHook(process_group, **options), lossy_hook
    if kind == "allreduce":
        return AllreduceHook(process_group, **options), allreduce_hook
    raise InvalidArgumentError(f"unknown hook kind {kind!r}: use 'lossless', 'lossy' or 'allreduce'")


# --- collectives --------------------------------------------------------------------------------


def compressed_all_gather(
    tensor: Any, group: Any = None, *, codec: str = "auto", stats: CommStats | None = None
) -> list[Any]:
    """Every rank's ``tensor`` (lossless; shapes and dtypes may differ between ranks), in rank
    order, as torch tensors on ``tensor``'s device."""
    torch = _torch()
    t = tensor.detach()
    t0 = time.perf_counter()
    blob = pack_object(tensors.compress(t.cpu(), codec))
    if stats is not None:
        stats.encode_s += time.perf_counter() - t0
    gathered = all_gather_bytes(blob, group, stats)
    t0 = time.perf_counter()
    out = [tensors.decompress(unpack_object(b), as_kind="torch").to(t.device) for b in gathered]
    if stats is not None:
        stats.decode_s += time.perf_counter() - t0
        stats._add(t.numel() * t.element_size(), 8 + max(len(b) for b in gathered), True)
    _ = torch
    return out


def compressed_broadcast(
    tensor: Any, src: int, group: Any = None, *, codec: str = "auto", stats: CommStats | None = None
) -> Any:
    """Broadcast ``tensor`` from global rank ``src`` (lossless): on other ranks ``tensor`` is
    overwritten in place (same shape and dtype required) and returned."""
    torch = _torch()
    dist = torch.distributed
    rank = dist.get_rank()
    t0 = time.perf_counter()
    blob = pack_object(tensors.compress(tensor.detach().cpu(), codec)) if rank == src else b""
    if stats is not None:
        stats.encode_s += time.perf_counter() - t0
    size = torch.tensor([len(blob)], dtype=torch.int64)
    t0 = time.perf_counter()
    dist.broadcast(size, src, group=group)
    n = int(size.item())
    buf = (
        torch.frombuffer(bytearray(blob), dtype=torch.uint8)
        if rank == src
        else torch.empty(n, dtype=torch.uint8)
    )
    dist.broadcast(buf, src, group=group)
    if stats is not None:
        stats.comm_s += time.perf_counter() - t0
        stats._add(tensor.numel() * tensor.element_size(), 8 + n if rank == src else 0, True)
    if rank != src:
        value = tensors.decompress(unpack_object(buf.numpy().tobytes()), as_kind="torch")
        if tuple(value.shape) != tuple(tensor.shape) or value.dtype != tensor.dtype:
            raise InvalidArgumentError(
                f"broadcast tensor is {value.dtype}{tuple(value.shape)}, "
                f"this rank's is {tensor.dtype}{tuple(tensor.shape)}"
            )
        with torch.no_grad():
            tensor.copy_(value.to(tensor.device))
    return tensor


__all__ = [
    "AllreduceHook",
    "CommStats",
    "LosslessHook",
    "LossyHook",
    "all_gather_bytes",
    "allreduce_hook",
    "comm_hook",
    "compressed_all_gather",
    "compressed_broadcast",
    "dequantize_flat",
    "lossless_hook",
    "lossy_hook",
    "pack_object",
    "quantize_flat",
    "unpack_object",
]
