"""Entropy-stream decode into device memory: validate on the host, upload the compressed bytes,
decode with the Triton kernels, check their error flags."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tensorpress.errors import BackendUnavailableError, CorruptDataError, InvalidArgumentError
from tensorpress.gpu import stream as st
from tensorpress.gpu import tables as tb

#: Decode backends :func:`decode` accepts.
BACKENDS = ("triton",)
#: Lanes one program decodes (all of a stream's lanes, at most 32, fit one group).
DEFAULT_LANE_GROUP = 32
#: Bytes one program of the stored-chunk copy moves.
STORED_BLOCK = 4096


def import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError("the GPU decode needs torch", extra="torch") from None
    return torch


def _kernels() -> Any:
    try:
        from tensorpress.gpu import kernels
    except ImportError as exc:
        raise BackendUnavailableError(f"the GPU decode needs Triton ({exc})", extra="gpu") from None
    return kernels


def resolve_device(device: Any) -> Any:
    """A torch.device the Triton kernels can run on, or BackendUnavailableError."""
    torch = import_torch()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidArgumentError(f"not a torch device: {device!r} ({exc})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError("device='cuda' but torch sees no CUDA device")
        return dev
    if dev.type == "cpu":
        if not _kernels().INTERPRETED:
            raise BackendUnavailableError(
                "the Triton kernels run on CPU tensors only under TRITON_INTERPRET=1, set before Triton "
                f"is first imported (now {os.environ.get('TRITON_INTERPRET')!r})"
            )
        return dev
    raise InvalidArgumentError(f"the Triton decode runs on 'cuda' (or 'cpu' when interpreted), not {dev}")


def decode(
    blob: Any,
    *,
    device: Any = "cuda",
    backend: str = "triton",
    max_size: int | None = None,
    out: Any = None,
) -> Any:
    """Decode an entropy stream into a new (or the given) ``torch.uint8`` tensor on ``device``.

    The whole stream is validated and checksummed on the host first (see :mod:`tensorpress.gpu`);
    only then are its bytes uploaded and the output allocated.
    """
    return upload(blob, device=device, backend=backend, max_size=max_size).decode(out=out)


def upload(
    blob: Any,
    *,
    device: Any = "cuda",
    backend: str = "triton",
    max_size: int | None = None,
    lane_group: int = DEFAULT_LANE_GROUP,
) -> DeviceStream:
    """Validate ``blob`` on the host and move it, still compressed, to ``device``."""
    if backend not in BACKENDS:
        raise InvalidArgumentError(
            f"unknown GPU decode backend {backend!r}; choose one of {', '.join(BACKENDS)}"
        )
    if not 1 <= lane_group <= st.MAX_LANES:
        raise InvalidArgumentError(f"lane_group must be 1..={st.MAX_LANES}, got {lane_group}")
    dev = resolve_device(device)
    buf, plan = st.parse_stream(blob, max_size=max_size)
    return DeviceStream(buf, plan, dev, lane_group)


class DeviceStream:
    """A validated entropy stream held compressed in device memory, with its chunk index and
    decode tables; :meth:`decode` expands it on the device as often as needed (a model can
    keep its weights compressed on the GPU and decode each layer just before it runs)."""

    def __init__(self, buf: np.ndarray, plan: st.StreamPlan, dev: Any, lane_group: int) -> None:
        torch = import_torch()
        self.plan = plan
        self.device = dev
        self.decoded_len = plan.decoded_len
        self.lane_block = min(lane_group, 1 << (plan.lanes - 1).bit_length())

        def arr(a: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(a)).to(dev)

        self.blob = torch.from_numpy(buf.copy() if not buf.flags.writeable else buf).to(dev)
        self.stored = [
            arr(a) for a in (plan.stored_src, plan.stored_dst, plan.stored_len, plan.stored_constant)
        ]
        self.stored_blocks = -(-int(plan.stored_len.max()) // STORED_BLOCK) if plan.stored_len.size else 0
        tables = tb.build(plan.tables) if plan.coded_index.size else None
        self.lut_bits = tables.bits if tables else 1
        self.exp_golomb = bool(tables and tables.exp_golomb)
        self.coded = [arr(a) for a in (plan.coded_dst, plan.coded_len, plan.coded_table)]
        self.coded += [arr(plan.lane_start), arr(plan.lane_len)]
        self.coded += [arr(tables.lut), arr(tables.order)] if tables else []

    @property
    def nbytes(self) -> int:
        """Device bytes this stream holds (compressed bytes, index and tables)."""
        held = [self.blob, *self.stored, *self.coded]
        return sum(int(t.numel()) * t.element_size() for t in held)

    def decode(self, out: Any = None) -> Any:
        """The decoded bytes as a ``torch.uint8`` tensor on the stream's device (written into
        ``out``, a contiguous uint8 tensor of :attr:`decoded_len` elements there, if given).
        Waits for the kernels to report; raises CorruptDataError if a lane is corrupt."""
        torch = import_torch()
        if out is None:
            out = torch.empty(self.decoded_len, dtype=torch.uint8, device=self.device)
        elif (
            out.dtype != torch.uint8
            or out.numel() != self.decoded_len
            or not out.is_contiguous()
            or out.device != self.device
        ):
            raise InvalidArgumentError(
                f"out must be a contiguous uint8 tensor of {self.decoded_len} elements on {self.device}"
            )
        if self.decoded_len == 0:
            return out
        k = _kernels()
        plan = self.plan
        if self.stored_blocks:
            grid = (plan.stored_index.size, self.stored_blocks)
            k.fill_stored_chunks[grid](self.blob, out, *self.stored, BLOCK=STORED_BLOCK)
        if plan.coded_index.size:
            groups = -(-plan.lanes // self.lane_block)
            errors = torch.zeros((plan.coded_index.size, groups), dtype=torch.int32, device=self.device)
            k.decode_coded_chunks[(plan.coded_index.size, groups)](
                self.blob,
                out,
                errors,
                *self.coded,
                plan.lanes,
                LUT_BITS=self.lut_bits,
                EXP_GOLOMB=self.exp_golomb,
                LANE_BLOCK=self.lane_block,
                num_warps=1,
            )
            _raise_flagged(np.bitwise_or.reduce(errors.cpu().numpy(), axis=1), plan, k)
        return out


def _raise_flagged(flags: np.ndarray, plan: st.StreamPlan, k: Any) -> None:
    bad = np.flatnonzero(flags)
    if not bad.size:
        return
    first = int(bad[0])
    chunk = int(plan.coded_index[first])
    what = (
        "a lane contains a code no encoder writes"
        if int(flags[first]) & int(k.INVALID_CODE.value)
        else "a lane is not consumed to exactly its last byte"
    )
    raise CorruptDataError(f"chunk {chunk}: {what}")
