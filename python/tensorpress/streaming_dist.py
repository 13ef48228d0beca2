"""Compress one model on N ranks (``torch.distributed``) and at a model-level bits/value budget.

Why ``torch.distributed`` (gloo) rather than Ray: torch is already a dependency (the DDP
compression hook of :mod:`tensorpress.distributed` runs on it), gloo runs on CPU-only machines,
and ``torchrun`` / Slurm / Kubernetes already start ranks with ``MASTER_ADDR``/``MASTER_PORT`` —
no new service to deploy. The ranks exchange only a few hundred bytes per tensor; the shards go
straight to a shared folder (NFS, Lustre, or an object-store mount).

- Lossless and ``max_rel_error`` need no communication beyond two barriers:
  :func:`tensorpress.streaming.compress_folder` with ``comm=TorchComm()``.
- ``bits_per_value`` with ``method="video"`` (:func:`compress_folder_at_budget`): every rank
  codes *its* tensors on the QP grid of :func:`tensorpress.video.encode_many` and measures their
  (bits, distortion) points, the ranks all-gather the points, every rank runs the same
  equal-slope allocation (:func:`tensorpress.video.allocate.allocate_rd`) and refinement, then
  each rank writes its shards at the chosen QPs. The allocation, hence the bytes, equal
  :func:`tensorpress.save_pretrained` of the whole model in one process. The probes of one rank
  run in a process pool (``workers``).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tensorpress import tensors
from tensorpress.allocation import MODEL_VIDEO_CODEC, lossy_eligible
from tensorpress.errors import BackendUnavailableError, InvalidArgumentError
from tensorpress.safetensors_stream import SourceTensor, folder_tensors, read_tensor
from tensorpress.streaming import (
    DEFAULT_MAX_SHARD_BYTES,
    Comm,
    SingleProcess,
    StreamResult,
    as_torch_source,
    assign_shards,
    compress_folder,
    gather_or_fail,
    plan_shards,
)

#: Header bytes each stored tensor is charged against a bits budget (as save_pretrained does).
HEADER_BYTES_PER_TENSOR = 768
#: Video settings of the budget path: those of the in-memory path (``save_pretrained``).
VIDEO_DEFAULTS: dict[str, Any] = {
    "codec": MODEL_VIDEO_CODEC,
    "backend": "auto",
    "bit_depth": 8,
    "rotate": False,
    "seed": 0,
    "preset": None,
    "threads": None,
}


class TorchComm:
    """A :class:`tensorpress.streaming.Comm` over the default ``torch.distributed`` group,
    initialised (gloo) from the usual environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT``) unless the caller already did."""

    def __init__(self, backend: str = "gloo") -> None:
        try:
            import torch.distributed as dist
        except ImportError:
            raise BackendUnavailableError("ranks need torch.distributed", extra="torch") from None
        if not dist.is_available():
            raise BackendUnavailableError("this torch build has no torch.distributed")
        if not dist.is_initialized():
            missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
            if missing:
                raise InvalidArgumentError(f"torch.distributed needs {', '.join(missing)} in the environment")
            dist.init_process_group(backend)
        self._dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def all_gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        self._dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        self._dist.barrier()


def comm_from_env() -> Comm:
    """:class:`TorchComm` when the environment describes more than one rank, else one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return TorchComm()
    return SingleProcess()


# --- rate-distortion probes ------------------------------------------------------------------


def _is_lossy(t: SourceTensor, keep: Sequence[str], vectors: bool) -> bool:
    # the eligibility rule looks at name, dtype and shape only: a zero-stride view costs nothing
    shadow = np.broadcast_to(np.zeros((), tensors.dtype_from_name(t.dtype)), t.shape)
    return lossy_eligible(t.name, shadow, keep, vectors=vectors)


def probe(t: SourceTensor, qps: Sequence[int], video: Mapping[str, Any]) -> dict[int, tuple[int, float]]:
    """``{qp: (payload bits, squared error)}`` of tensor ``t`` coded at each QP — the points
    :func:`tensorpress.video.encode_many` measures (same encode, decode and distortion)."""
    from tensorpress.video import decode, encode
    from tensorpress.video.allocate import _as_matrix

    value = read_tensor(t, as_torch=False)
    original = _as_matrix(value)
    out = {}
    for qp in qps:
        vt = encode(value, qp=qp, col_scale=None, **video)
        diff = _as_matrix(decode(vt, backend=video["backend"])).astype(np.float64) - original
        out[qp] = (vt.nbytes * 8, float(np.sum(np.ones((1, 1)) * diff * diff)))  # encode_many's sum
    return out


def _lossless_bits(t: SourceTensor) -> int:
    return 8 * int(tensors.compress(read_tensor(t, as_torch=False)).nbytes)


def _run_all(
    fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], pool: ProcessPoolExecutor | None
) -> list[Any]:
    if pool is None or len(calls) < 2:
        return [fn(*c) for c in calls]
    return list(pool.map(fn, *zip(*calls, strict=True)))


def compress_folder_at_budget(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    bits_per_value: float,
    *,
    method: str = "video",
    keep: Iterable[str] = (),
    lossy_vectors: bool = False,
    strict: bool = False,
    qp_step: int = 6,
    max_shard_size: int = DEFAULT_MAX_SHARD_BYTES,
    workers: int = 1,
    resume: bool = True,
    comm: Comm | None = None,
    progress: Callable[[str], None] | None = None,
    bars: bool = False,
) -> StreamResult:
    """Compress a safetensors folder at a *model-average* ``bits_per_value`` (every value, the
    lossless ones and a header allowance per tensor included, as
    :func:`tensorpress.save_pretrained` counts it), streaming, over the ranks of ``comm``.

    The lossy-eligible tensors are video coded with a rate–distortion allocation across the whole
    model; each rank probes only its own shards' tensors (``workers`` processes), and the final
    pass writes shards as :func:`tensorpress.streaming.compress_folder` does.
    """
    from tensorpress.video.allocate import RatePoint, _qp_grid, allocate_rd
    from tensorpress.video.backends import QP_RANGE

    if method != "video":
        raise InvalidArgumentError(
            f"the streaming budget path codes lossy tensors with video only, not {method!r} "
            "(use save_pretrained for other methods)"
        )
    ok = isinstance(bits_per_value, int | float) and math.isfinite(bits_per_value) and bits_per_value > 0
    if not ok:
        raise InvalidArgumentError(f"bits_per_value must be a positive number, got {bits_per_value!r}")
    if not isinstance(workers, int) or workers < 1:
        raise InvalidArgumentError(f"workers must be a positive int, got {workers!r}")
    say = progress or (lambda _m: None)
    comm = comm or SingleProcess()
    keep = [keep] if isinstance(keep, str) else list(keep)
    src = Path(source)
    if not src.is_dir():
        raise InvalidArgumentError(f"{src}: not a model folder")
    items = folder_tensors(src)
    if not items:
        raise InvalidArgumentError(f"{src}: the checkpoint holds no tensors")
    shards = plan_shards(items, max_shard_size)
    mine = [t for i in assign_shards(shards, comm.world_size)[comm.rank] for t in shards[i].tensors]
    lossy_names = [t.name for t in items if _is_lossy(t, keep, lossy_vectors)]
    lossy_set = set(lossy_names)
    my_lossy = [t for t in mine if t.name in lossy_set]
    video = dict(VIDEO_DEFAULTS)
    lo, hi = QP_RANGE[video["codec"]]
    ctx = multiprocessing.get_context("spawn")  # forking a process that holds torch/encoder threads is unsafe
    pool = ProcessPoolExecutor(workers, mp_context=ctx) if workers > 1 else None
    try:
        # 1. the bits the lossless tensors take, over all ranks
        mine_lossless = [t for t in mine if t.name not in lossy_set]
        every = gather_or_fail(
            comm, lambda: _run_all(_lossless_bits, [(t,) for t in mine_lossless], pool), "sizing"
        )
        spent = sum(sum(part) for part in every)
        spent += 8 * HEADER_BYTES_PER_TENSOR * len(items)
        total = sum(t.numel for t in items)
        numel = {t.name: t.numel for t in items if t.name in lossy_set}
        per_value = (bits_per_value * total - spent) / max(sum(numel.values()), 1)
        if per_value <= 0:
            msg = f"the lossless tensors alone need {spent / total:.3f}"
            if strict:
                raise InvalidArgumentError(msg)
            warnings.warn(msg, stacklevel=2)
            per_value = 0.5
        budget = per_value * sum(numel.values())
        say(f"video: {len(lossy_names)} tensors at {per_value:.3f} bits/value")

        # 2. rate-distortion points: grid, allocate, refine around the choice (as encode_many)
        points: dict[str, dict[int, RatePoint]] = {n: {} for n in lossy_names}

        def measure(wanted: Mapping[str, Sequence[int]]) -> None:
            calls = []
            for t in my_lossy:
                qps = [q for q in wanted.get(t.name, ()) if lo <= q <= hi and q not in points[t.name]]
                if qps:
                    calls.append((t, sorted(set(qps)), video))

            def probe_mine() -> dict[str, Any]:
                found = _run_all(probe, calls, pool)
                return {c[0].name: r for c, r in zip(calls, found, strict=True)}

            for part in gather_or_fail(comm, probe_mine, "rate-distortion probing"):
                for name, by_qp in part.items():
                    for qp, (b, d) in by_qp.items():
                        points[name][qp] = RatePoint(qp, b, d)

        def allocate() -> dict[str, RatePoint]:
            return allocate_rd({n: list(points[n].values()) for n in lossy_names}, budget)

        choice: dict[str, RatePoint] = {}
        if lossy_names:
            grid = _qp_grid(video["codec"], qp_step)
            measure({n: grid for n in lossy_names})
            choice = allocate()
            delta = qp_step // 2
            while delta >= 1:
                measure({n: (choice[n].qp - delta, choice[n].qp + delta) for n in lossy_names})
                choice = allocate()
                delta //= 2
            chosen = sum(p.bits for p in choice.values()) / max(sum(numel.values()), 1)
            say(f"allocated {chosen:.4f} bits/value over {len(choice)} video tensors")
    finally:
        if pool is not None:
            pool.shutdown()

    # 3. every rank writes its shards at the chosen QPs
    qp_of = {n: p.qp for n, p in choice.items()}

    def encoder(name: str, value: Any) -> tuple[Any, Any]:
        if name in qp_of:
            from tensorpress.video import encode

            return as_torch_source(encode(value, qp=qp_of[name], col_scale=None, **video)), None
        return as_torch_source(tensors.compress(value)), None

    return compress_folder(
        src,
        out_dir,
        max_shard_size=max_shard_size,
        workers=workers,
        resume=resume,
        comm=comm,
        progress=say,
        bars=bars,
        encoder=encoder,
        constraint=f"bits_per_value={bits_per_value:g}",
        method="video",
        job={"qp": sorted(qp_of.items()), "video": video, "keep": keep, "lossy_vectors": lossy_vectors},
    )


__all__ = [
    "HEADER_BYTES_PER_TENSOR",
    "VIDEO_DEFAULTS",
    "TorchComm",
    "comm_from_env",
    "compress_folder_at_budget",
    "probe",
]
