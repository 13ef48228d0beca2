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
                "the Triton kernels run on CPU tensors only under TRITON_INTERPRET=1, set before "
                f"tensorpress.gpu.kernels is first imported (now {os.environ.get('TRITON_INTERPRET')!r})"
            )
        return dev
    raise InvalidArgumentError(f"the Triton decode runs on 'cuda' (or 'cpu' when interpreted), not {dev}")


def decode(blob: Any, *, device: Any = "cuda", backend: str = "triton", max_size: int | None = None) -> Any:
    """Decode an entropy stream into a new ``torch.uint8`` tensor on ``device``.

    The whole stream is validated and checksummed on the host first (see :mod:`tensorpress.gpu`);
    only then are its bytes uploaded and the output allocated.
    """
    if backend not in BACKENDS:
        raise InvalidArgumentError(
            f"unknown GPU decode backend {backend!r}; choose one of {', '.join(BACKENDS)}"
        )
    dev = resolve_device(device)
    buf, plan = st.parse_stream(blob, max_size=max_size)
    return decode_plan(buf, plan, dev)


def decode_plan(buf: np.ndarray, plan: st.StreamPlan, dev: Any, lane_group: int = DEFAULT_LANE_GROUP) -> Any:
    """Run the kernels for a validated stream (``buf``, ``plan`` from :func:`stream.parse_stream`)."""
    torch = import_torch()
    out = torch.empty(plan.decoded_len, dtype=torch.uint8, device=dev)
    if plan.decoded_len == 0:
        return out
    k = _kernels()
    blob = _upload(torch, buf, dev)

    def arr(a: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dev)

    if plan.stored_index.size:
        blocks = -(-int(plan.stored_len.max()) // STORED_BLOCK)
        k.fill_stored_chunks[(plan.stored_index.size, blocks)](
            blob,
            out,
            arr(plan.stored_src),
            arr(plan.stored_dst),
            arr(plan.stored_len),
            arr(plan.stored_constant),
            BLOCK=STORED_BLOCK,
        )
    if plan.coded_index.size:
        tables = tb.build(plan.tables)
        lane_block = min(lane_group, 1 << (plan.lanes - 1).bit_length())
        groups = -(-plan.lanes // lane_block)
        errors = torch.zeros((plan.coded_index.size, groups), dtype=torch.int32, device=dev)
        k.decode_coded_chunks[(plan.coded_index.size, groups)](
            blob,
            out,
            errors,
            arr(plan.coded_dst),
            arr(plan.coded_len),
            arr(plan.coded_table),
            arr(plan.lane_start),
            arr(plan.lane_len),
            arr(tables.lut),
            arr(tables.order),
            plan.lanes,
            LUT_BITS=tables.bits,
            EXP_GOLOMB=tables.exp_golomb,
            LANE_BLOCK=lane_block,
        )
        _raise_flagged(np.bitwise_or.reduce(errors.cpu().numpy(), axis=1), plan, k)
    return out


def _upload(torch: Any, buf: np.ndarray, dev: Any) -> Any:
    """The stream's bytes on ``dev`` (one host-to-device copy, from pinned memory on CUDA)."""
    host = torch.from_numpy(buf.copy() if not buf.flags.writeable else buf)
    if dev.type == "cuda":
        return host.pin_memory().to(dev, non_blocking=True)
    return host


def _raise_flagged(flags: np.ndarray, plan: st.StreamPlan, k: Any) -> None:
    bad = np.flatnonzero(flags)
    if not bad.size:
        return
    first = int(bad[0])
    chunk = int(plan.coded_index[first])
    what = (
        "a lane contains a code no encoder writes"
        if flags[first] & k.INVALID_CODE
        else "a lane is not consumed to exactly its last byte"
    )
    raise CorruptDataError(f"chunk {chunk}: {what}")
