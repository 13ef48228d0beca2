"""Rate allocation across many tensors (a whole model) under one average bits/value budget, and
the calibration statistics that make the allocation — and AWQ-style column scaling — see the error
the way the model does.

:func:`encode_many` modes (``allocate=``):

- ``"rd"`` (default) — equal-slope rate–distortion optimization. Every tensor is coded at a grid
  of QPs (refined around the chosen QP), its distortion ``D_i(q) = Σ importance ⊙ (ŵ − w)²``
  measured after decoding, and a greedy walk along the lower convex hulls of all ``(R_i, D_i)``
  curves — always taking the step with the largest distortion drop per bit — picks one QP per
  tensor with ``Σ R_i ≤ bits_per_value · Σ n_i``. That is the Lagrangian solution
  ``min Σ D_i + λ R_i`` (on the hull points) for the λ that just meets the budget. With no
  ``importance`` it minimizes the plain squared error; with ``importance`` (e.g. the diagonal
  Fisher approximation ``E[g_r²]·E[x_j²]`` of a linear layer from :func:`linear_statistics`) the
  tensors whose error hurts the loss more get more bits.
- ``"qp"`` — one global QP for every tensor, bisected on the total bits.
- ``"equal"`` — every tensor bisected to the same ``bits_per_value`` (``tolerance=0``).

Costs: ``"rd"`` encodes and decodes each tensor about ``(hi − lo)/qp_step + 1 + 2·log2(qp_step)``
times (≈ 16 for AV1 with the default step 6) — fine for SVT-AV1, slow for x265 on a CPU.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tensorpress.errors import InvalidArgumentError
from tensorpress.video import pipeline
from tensorpress.video.backends import QP_RANGE

ALLOCATIONS = ("rd", "qp", "equal")


@dataclass(frozen=True)
class RatePoint:
    """One coded version of a tensor: QP, payload bits, weighted squared error."""

    qp: int
    bits: int
    distortion: float


@dataclass(frozen=True)
class LinearStats:
    """Per-channel statistics of one ``nn.Linear`` over calibration tokens.

    ``x2[j] = E[x_j²]`` over the input features; ``g2[r] = E[(∂L/∂y_r)²]`` over the output
    features (``None`` unless gradients were asked for). ``np.outer(g2, x2)`` is the Kronecker
    (K-FAC-style) approximation of the diagonal Fisher information of the weight, i.e. how much
    a squared error in ``W[r, j]`` raises the loss to second order.
    """

    x2: np.ndarray
    g2: np.ndarray | None
    tokens: int

    def fisher(self) -> np.ndarray:
        """``outer(g2, x2)`` (rows = out features, cols = in features); needs gradients."""
        if self.g2 is None:
            raise InvalidArgumentError("these statistics were collected without gradients")
        return np.outer(self.g2, self.x2)


# --------------------------------------------------------------------------- allocation


def _hull(points: Sequence[RatePoint]) -> list[RatePoint]:
    """Lower convex hull of the (bits, distortion) points, by increasing bits (decreasing
    distortion): the only points a Lagrangian allocation ever chooses."""
    pts = sorted(points, key=lambda p: (p.bits, p.distortion))
    mono: list[RatePoint] = []
    for p in pts:  # drop points that cost more bits without lowering the distortion
        if not mono or p.distortion < mono[-1].distortion:
            if mono and p.bits == mono[-1].bits:
                mono[-1] = p
            else:
                mono.append(p)
    hull: list[RatePoint] = []
    for p in mono:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b is above the chord a→p: remove it (cross product test on (bits, distortion))
            if (b.distortion - a.distortion) * (p.bits - a.bits) >= (p.distortion - a.distortion) * (
                b.bits - a.bits
            ):
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def allocate_rd(curves: Mapping[str, Sequence[RatePoint]], budget_bits: float) -> dict[str, RatePoint]:
    """Pick one point per curve with total bits ≤ ``budget_bits`` minimizing the total
    distortion on the convex hulls (greedy steepest descent = Lagrangian equal slope).

    Raises :class:`InvalidArgumentError` when even the cheapest points exceed the budget.
    """
    hulls = {n: _hull(c) for n, c in curves.items()}
    for n, h in hulls.items():
        if not h:
            raise InvalidArgumentError(f"tensor {n!r} has no rate points")
    pos = dict.fromkeys(hulls, 0)
    spent = float(sum(h[0].bits for h in hulls.values()))
    if spent > budget_bits:
        raise InvalidArgumentError(
            f"budget of {budget_bits:.0f} bits is out of reach: the coarsest QPs need {spent:.0f}"
        )
    heap: list[tuple[float, int, str]] = []
    order = {n: i for i, n in enumerate(hulls)}

    def push(n: str) -> None:
        h, i = hulls[n], pos[n]
        if i + 1 < len(h):
            slope = (h[i].distortion - h[i + 1].distortion) / (h[i + 1].bits - h[i].bits)
            heapq.heappush(heap, (-slope, order[n], n))

    for n in hulls:
        push(n)
    while heap:
        _, _, n = heapq.heappop(heap)
        h, i = hulls[n], pos[n]
        step = h[i + 1].bits - h[i].bits
        if spent + step > budget_bits:
            continue  # this tensor's next step does not fit; cheaper steps of others may
        spent += step
        pos[n] = i + 1
        push(n)
    return {n: hulls[n][pos[n]] for n in hulls}


def _qp_grid(codec: str, step: int) -> list[int]:
    lo, hi = QP_RANGE[codec]
    return sorted({*range(lo, hi + 1, step), hi})


def encode_many(
    tensors: Mapping[str, Any],
    bits_per_value: float,
    *,
    allocate: str = "rd",
    importance: Mapping[str, Any] | None = None,
    col_scale: Mapping[str, Any] | None = None,
    codec: str = "hevc",
    backend: str = "auto",
    bit_depth: int = 8,
    rotate: bool = False,
    seed: int = 0,
    preset: str | None = None,
    threads: int | None = None,
    qp_step: int = 6,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Code a set of tensors so that their *average* bits/value (all payload bits over all
    elements) is at most ``bits_per_value``. Returns ``{name: VideoTensor}`` in input order.

    Args:
        tensors: name → float tensor (numpy or torch, any shape; see :func:`encode`).
        bits_per_value: the budget, averaged over every element of every tensor.
        allocate: ``"rd"`` (equal-slope rate–distortion optimal), ``"qp"`` (one global QP) or
            ``"equal"`` (each tensor to ``bits_per_value``); see the module docstring.
        importance: name → non-negative weights broadcastable to the tensor's folded 2-D
            ``(rows, cols)`` matrix (a scalar, ``(cols,)`` per input column, ``(rows, 1)``, or the
            full matrix); the distortion is ``Σ importance ⊙ (ŵ − w)²``. Default: plain squared
            error. Only ``"rd"`` uses it; it must name every tensor when given.
        col_scale: name → per-column scales passed to :func:`encode` (missing names: none).
        qp_step: spacing of the first QP grid of ``"rd"`` (then refined around each choice).
        progress: called with a short status line after each pass over the tensors.
        codec, backend, bit_depth, rotate, seed, preset, threads: as for :func:`encode`.
    """
    from tensorpress.video import decode, encode

    if allocate not in ALLOCATIONS:
        raise InvalidArgumentError(f"allocate must be one of {ALLOCATIONS}, got {allocate!r}")
    bpv_ok = isinstance(bits_per_value, (int, float)) and math.isfinite(bits_per_value)
    if not (bpv_ok and bits_per_value > 0):
        raise InvalidArgumentError(f"bits_per_value must be a positive number, got {bits_per_value!r}")
    if codec not in QP_RANGE:
        raise InvalidArgumentError(f"codec must be one of {tuple(QP_RANGE)}, got {codec!r}")
    if not isinstance(qp_step, int) or qp_step < 1:
        raise InvalidArgumentError(f"qp_step must be a positive integer, got {qp_step!r}")
    names = list(tensors)
    if importance is not None and allocate == "rd":
        missing = [n for n in names if n not in importance]
        if missing:
            raise InvalidArgumentError(f"importance misses {len(missing)} tensors, e.g. {missing[0]!r}")
    unknown = [n for n in (col_scale or {}) if n not in tensors]
    if unknown:
        raise InvalidArgumentError(f"col_scale names unknown tensors, e.g. {unknown[0]!r}")
    say = progress or (lambda _msg: None)
    common: dict[str, Any] = {
        "codec": codec,
        "backend": backend,
        "bit_depth": bit_depth,
        "rotate": rotate,
        "seed": seed,
        "preset": preset,
        "threads": threads,
    }

    def enc(n: str, **kw: Any) -> Any:
        cs = None if col_scale is None else col_scale.get(n)
        return encode(tensors[n], col_scale=cs, **common, **kw)

    if allocate == "equal":
        out = {n: enc(n, bits_per_value=bits_per_value, tolerance=0.0) for n in names}
        say(f"equal: {len(out)} tensors bisected to {bits_per_value} bits/value")
        return out

    numel = {n: _numel(tensors[n]) for n in names}
    budget = bits_per_value * sum(numel.values())
    coded: dict[str, dict[int, Any]] = {n: {} for n in names}

    def at(n: str, qp: int) -> Any:
        if qp not in coded[n]:
            coded[n][qp] = enc(n, qp=qp)
        return coded[n][qp]

    lo, hi = QP_RANGE[codec]
    if allocate == "qp":

        def total(qp: int) -> int:
            t = sum(at(n, qp).nbytes * 8 for n in names)
            say(f"qp {qp}: {t / max(sum(numel.values()), 1):.4f} bits/value")
            return t

        if total(hi) > budget:
            raise InvalidArgumentError(
                f"bits_per_value={bits_per_value} is out of reach for {codec}: QP {hi} needs more"
            )
        good, bad = hi, lo - 1
        while good - bad > 1:
            mid = (good + bad) // 2
            if total(mid) <= budget:
                good = mid
            else:
                bad = mid
        return {n: coded[n][good] for n in names}

    # "rd": measure (bits, weighted distortion) points, allocate, refine around the choice
    originals = {n: _as_matrix(tensors[n]) for n in names}
    weights = {
        n: _weights(None if importance is None else importance[n], originals[n].shape, n) for n in names
    }
    points: dict[str, dict[int, RatePoint]] = {n: {} for n in names}

    def measure(n: str, qps: Sequence[int]) -> None:
        for qp in qps:
            if qp in points[n] or not lo <= qp <= hi:
                continue
            vt = at(n, qp)
            dec = _as_matrix(decode(vt, backend=backend))
            diff = dec.astype(np.float64) - originals[n]
            dist = float(np.sum(weights[n] * diff * diff))
            points[n][qp] = RatePoint(qp, vt.nbytes * 8, dist)

    grid = _qp_grid(codec, qp_step)
    for n in names:
        measure(n, grid)
    choice = allocate_rd({n: list(p.values()) for n, p in points.items()}, budget)
    say(f"rd grid step {qp_step}: {_summary(choice, numel)}")
    delta = qp_step // 2
    while delta >= 1:
        for n in names:
            measure(n, (choice[n].qp - delta, choice[n].qp + delta))
        choice = allocate_rd({n: list(p.values()) for n, p in points.items()}, budget)
        say(f"rd refine ±{delta}: {_summary(choice, numel)}")
        delta //= 2
    return {n: coded[n][choice[n].qp] for n in names}


def _summary(choice: Mapping[str, RatePoint], numel: Mapping[str, int]) -> str:
    bits = sum(p.bits for p in choice.values())
    qps = [p.qp for p in choice.values()]
    return f"{bits / max(sum(numel.values()), 1):.4f} bits/value, QP {min(qps)}-{max(qps)}"


def _numel(t: Any) -> int:
    return int(math.prod(tuple(t.shape)))


def _as_matrix(t: Any) -> np.ndarray:
    from tensorpress.video import _to_numpy  # the package imports this module: import late

    arr = _to_numpy(t)[0]
    return arr.reshape(pipeline.fold_2d(tuple(arr.shape)))


def _weights(imp: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    if imp is None:
        return np.ones((1, 1))
    raw = imp.detach().cpu().numpy() if hasattr(imp, "detach") else imp
    w = np.asarray(raw, dtype=np.float64)
    try:
        np.broadcast_shapes(w.shape, shape)
    except ValueError as exc:
        raise InvalidArgumentError(
            f"importance of {name!r} has shape {w.shape}, not broadcastable to {shape}"
        ) from exc
    if not np.all(np.isfinite(w) & (w >= 0)):
        raise InvalidArgumentError(f"importance of {name!r} must be finite and non-negative")
    return w


# --------------------------------------------------------------------------- calibration

#: AWQ-style column-scale exponent of the calibrated video recipe (benches/RESULTS.md §4.2:
#: 0.25 gave +40.4 % on SmolLM2 at 3.0 bits/value, 0.5 over-scaled).
CALIBRATED_COL_SCALE_ALPHA = 0.25


def calibrated_options(
    model: Any, calibration: Any, names: Iterable[str], say: Callable[[str], None] = lambda _m: None
) -> dict[str, Any]:
    """:func:`encode_many` options for the ``nn.Linear`` weights among ``names`` (state-dict keys)
    of a causal LM from calibration token ids: Fisher importance, column scales and the rotation —
    what :func:`tensorpress.save_pretrained` uses with ``calibration=``."""
    import torch

    ids = calibration if isinstance(calibration, torch.Tensor) else torch.as_tensor(np.asarray(calibration))
    if ids.ndim != 2 or ids.shape[0] < 1 or ids.shape[1] < 2 or ids.dtype not in (torch.int32, torch.int64):
        raise InvalidArgumentError(
            "calibration must be integer token ids of shape (n, seq_len >= 2), "
            f"got {tuple(ids.shape)} {ids.dtype}"
        )
    wanted = set(names)
    weight_of = {
        f"{n}.weight": n
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and f"{n}.weight" in wanted
    }
    if not weight_of:
        raise InvalidArgumentError("calibration: the model has no nn.Linear weight to code")
    say(f"calibration: statistics of {len(weight_of)} linear layers over {ids.numel():,} tokens")
    stats = linear_statistics(model, ids.long(), gradients=True, names=list(weight_of.values()))
    alpha = CALIBRATED_COL_SCALE_ALPHA
    return {
        "importance": {w: stats[m].fisher().astype(np.float32) for w, m in weight_of.items()},
        "col_scale": {w: column_scales(stats[m].x2, alpha) for w, m in weight_of.items()},
        "rotate": True,
    }


def column_scales(x2: Any, alpha: float = 0.5, max_ratio: float = 1e3) -> np.ndarray:
    """AWQ-style per-input-column scales ``s_j ∝ E[x_j²]^α`` for :func:`encode`'s ``col_scale``.

    ``α = 0.5`` scales by the activation RMS, so column ``j``'s (roughly uniform) coding error is
    divided by ``rms(x_j)`` — the high-rate optimum for the output error ``E‖(Ŵ − W)x‖²``. The
    scales are normalized to geometric mean 1 and clipped to ``[1/max_ratio, max_ratio]`` (float16
    storage); all-zero columns get the smallest scale.
    """
    x = np.asarray(x2, dtype=np.float64)
    if x.ndim != 1 or not np.all(np.isfinite(x) & (x >= 0)):
        raise InvalidArgumentError("x2 must be a 1-D array of finite non-negative second moments")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise InvalidArgumentError(f"alpha must be finite and >= 0, got {alpha!r}")
    if not max_ratio >= 1:
        raise InvalidArgumentError(f"max_ratio must be >= 1, got {max_ratio!r}")
    if x.size == 0:
        return np.ones(0, dtype=np.float32)
    positive = x[x > 0]
    if positive.size == 0:
        return np.ones(x.shape, dtype=np.float32)
    log_s = alpha * np.log(np.maximum(x, positive.min()))
    log_s -= log_s.mean()
    s = np.exp(np.clip(log_s, -math.log(max_ratio), math.log(max_ratio)))
    return s.astype(np.float32)


def linear_statistics(
    model: Any,
    input_ids: Any,
    *,
    gradients: bool = False,
    batch_size: int = 4,
    names: Sequence[str] | None = None,
) -> dict[str, LinearStats]:
    """Per-channel second moments of every ``torch.nn.Linear`` of ``model`` over calibration
    windows ``input_ids`` (``(n, seq_len)`` int64, e.g. from
    :func:`tensorpress.evaluation.token_windows` on :func:`~tensorpress.evaluation.calibration_texts`
    — never evaluation text).

    ``gradients=True`` also backpropagates the summed next-token cross-entropy of each batch
    (a causal LM whose output has ``.logits``) and records ``E[(∂L/∂y_r)²]`` per output feature.
    Parameters are left as they were (no ``.grad`` is accumulated).
    """
    import torch

    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
    linears = {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and (names is None or n in names)
    }
    x2 = {n: torch.zeros(m.in_features, dtype=torch.float64) for n, m in linears.items()}
    g2 = {n: torch.zeros(m.out_features, dtype=torch.float64) for n, m in linears.items()}
    tokens = dict.fromkeys(linears, 0)

    def fwd_hook(name: str) -> Any:
        def hook(_mod: Any, args: tuple[Any, ...], out: Any) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            x2[name] += (x * x).sum(0).cpu()
            tokens[name] += x.shape[0]
            if gradients and out.requires_grad:

                def grad_hook(g: Any) -> None:
                    gg = g.detach().reshape(-1, g.shape[-1]).double()
                    g2[name] += (gg * gg).sum(0).cpu()

                out.register_hook(grad_hook)

        return hook

    handles = [m.register_forward_hook(fwd_hook(n)) for n, m in linears.items()]
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        if gradients:
            for p in params:
                p.requires_grad_(True)
        emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        target = [emb.weight] if emb is not None else [p for p in params if p.requires_grad]
        for start in range(0, int(input_ids.shape[0]), batch_size):
            batch = input_ids[start : start + batch_size]
            if not gradients:
                with torch.no_grad():
                    model(input_ids=batch)
                continue
            with torch.enable_grad():
                logits = model(input_ids=batch).logits.float()
                loss = torch.nn.functional.cross_entropy(
                    logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
                )
                torch.autograd.grad(loss, target)
    finally:
        for h in handles:
            h.remove()
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)
    out = {}
    for n in linears:
        t = max(tokens[n], 1)
        out[n] = LinearStats((x2[n] / t).numpy(), (g2[n] / t).numpy() if gradients else None, tokens[n])
    return out


__all__ = [
    "ALLOCATIONS",
    "LinearStats",
    "RatePoint",
    "allocate_rd",
    "calibrated_options",
    "column_scales",
    "encode_many",
    "linear_statistics",
]
