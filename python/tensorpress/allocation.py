"""Lossy compression of a whole model: which tensors may be lossy, and how a model-average
bits/value budget is shared among them.

- :func:`lossy_eligible` — safe defaults: floating tensors with at least two dimensions and at
  least :data:`MIN_LOSSY_VALUES` values; 1-D tensors (norm gains, biases) and tiny tensors stay
  lossless, and so does every name matching a ``keep`` pattern (:func:`fnmatch.fnmatch` syntax,
  or a plain substring).
- :func:`compress_at_budget` — ``bits_per_value`` is the average over *every* value of the model
  (lossless tensors included). Each lossy tensor's planner candidates give rate–distortion points
  (predicted bits, squared error = relative MSE × ‖w‖²); :func:`tensorpress.video.allocate.allocate_rd`
  picks one point per tensor on the lower convex hulls at equal slope, the choice that minimises
  the total squared error within the budget (as :func:`tensorpress.video.encode_many` does with
  QPs). ``method="video"`` hands the lossy tensors to ``encode_many`` itself.
"""

from __future__ import annotations

import fnmatch
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from tensorpress import tensors
from tensorpress.errors import InvalidArgumentError
from tensorpress.planner import DEFAULT_SAMPLE, Plan, plan

#: Tensors with fewer values than this stay lossless by default (their bytes do not matter).
MIN_LOSSY_VALUES = 4096
#: Lossy methods :func:`compress_at_budget` accepts (``None``: every planner candidate).
METHODS = (None, "blockwise", "tender-group", "video")
_FLOAT = ("float64", "float32", "float16", "bfloat16")


#: Video codec of a model-level ``method="video"`` budget (AV1: SVT-AV1 codes a model's matrices
#: several times faster than x265 on a CPU at the same rate-distortion). The in-memory and the
#: streamed/distributed paths share it, so both give the same bytes.
MODEL_VIDEO_CODEC = "av1"


def matches(name: str, patterns: Iterable[str]) -> bool:
    """True when ``name`` matches one of ``patterns`` (glob syntax, or a plain substring)."""
    for p in patterns:
        is_glob = any(c in p for c in "*?[")
        if fnmatch.fnmatchcase(name, p) or (not is_glob and p in name):
            return True
    return False


def lossy_eligible(name: str, value: Any, keep: Iterable[str] = (), *, vectors: bool = False) -> bool:
    """Whether tensor ``name`` may be stored lossily (see the module docstring); ``vectors=True``
    lets 1-D and tiny tensors be lossy too."""
    arr, _, _ = tensors.to_numpy(value)
    if tensors.dtype_name(arr.dtype) not in _FLOAT or arr.size == 0 or matches(name, keep):
        return False
    return vectors or (arr.ndim >= 2 and arr.size >= MIN_LOSSY_VALUES)


def _numel(value: Any) -> int:
    return int(math.prod(tuple(value.shape)))


def _sumsq(value: Any) -> float:
    arr, _, _ = tensors.to_numpy(value)
    return float(np.sum(np.square(arr.astype(np.float64))))


def compress_at_budget(
    items: Mapping[str, Any],
    lossless_bits: int,
    total_values: int,
    bits_per_value: float,
    *,
    method: str | None = None,
    strict: bool = False,
    video: bool = False,
    sample: int | None = None,
    say: Callable[[str], None] = lambda _m: None,
    video_options: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Plan]]:
    """Compress the lossy-eligible ``items`` so that, with ``lossless_bits`` already spent on the
    other tensors, the model stores at most ``bits_per_value`` × ``total_values`` bits.

    ``video=True`` adds the planner's video candidates to each tensor's curve (several encodes
    per tensor). ``video_options`` go to :func:`tensorpress.video.encode_many` with ``method="video"``
    (``importance``, ``col_scale``, ``rotate``: what calibration gives, see
    :func:`tensorpress.save_pretrained`'s ``calibration``).
    Returns ``({name: compressed}, {name: plan})`` (no plans for ``method="video"``). A budget
    below what the coarsest candidates reach warns (``strict=True``: raises) and takes them.
    """
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {METHODS[1:]} or None, got {method!r}")
    budget = bits_per_value * total_values - lossless_bits
    lossy_values = sum(_numel(v) for v in items.values())
    if not items:
        return {}, {}
    if method == "video":
        from tensorpress.video import encode_many

        per_value = budget / lossy_values
        if per_value <= 0:
            need = lossless_bits / total_values
            _unreachable(f"the lossless tensors alone need {need:.3f} bits/value", strict, bits_per_value)
            per_value = 0.5
        say(f"video: {len(items)} tensors at {per_value:.3f} bits/value")
        # AV1: the codec that made 3 bits/value work on SmolLM2 (benches/RESULTS.md §4), and fast
        options = dict(video_options or {})
        for per_tensor in ("importance", "col_scale"):  # maps cut to the tensors coded here
            if options.get(per_tensor) is not None:
                options[per_tensor] = {n: v for n, v in options[per_tensor].items() if n in items}
        return dict(encode_many(dict(items), per_value, codec=MODEL_VIDEO_CODEC, progress=say, **options)), {}
    from tensorpress.video.allocate import RatePoint, allocate_rd

    plans: dict[str, Plan] = {}
    curves: dict[str, list[RatePoint]] = {}
    for name, value in items.items():
        p = plan(value, bits_per_value=64.0, video=video, sample=DEFAULT_SAMPLE if sample is None else sample)
        energy = _sumsq(value)
        points = []
        for i, c in enumerate(p.candidates):
            usable = c.method not in ("lossless-plane", "unavailable") and c.predicted_bytes >= 0
            wanted = method is None or c.method == method or c.lossless
            if usable and wanted and (c.lossless or math.isfinite(c.rel_error)):
                distortion = 0.0 if c.lossless else c.rel_error * energy
                points.append(RatePoint(i, 8 * c.predicted_bytes, distortion))
        plans[name], curves[name] = p, points
        say(f"planned {name}")
    floor = sum(min(pt.bits for pt in pts) for pts in curves.values())
    if floor > budget:
        reached = (floor + lossless_bits) / total_values
        _unreachable(f"the coarsest candidates reach {reached:.3f} bits/value", strict, bits_per_value)
        budget = floor
    # Predicted sizes come from samples: re-allocate with the overshoot taken off the budget
    # until the applied tensors fit (a few rounds at most; each result is kept for reuse).
    applied: dict[tuple[str, int], Any] = {}
    target = budget
    for _ in range(8):
        choice = allocate_rd(curves, target)
        out = {}
        for name, value in items.items():
            key = (name, choice[name].qp)
            if key not in applied:
                p = plans[name]
                p.chosen = p.candidates[choice[name].qp]
                applied[key] = p.apply(value)
            out[name] = applied[key]
        spent = sum(8 * int(obj.nbytes) for obj in out.values())
        if spent <= budget or target <= floor:
            break
        target = max(floor, target - (spent - budget) * 1.5)
    for name in items:
        p = plans[name]
        p.chosen = p.candidates[choice[name].qp]
        p.chosen.verdict = "chosen: equal-slope rate-distortion allocation of the model budget"
        p.constraint = f"model bits_per_value={bits_per_value:g}"
    return out, plans


def _unreachable(reached: str, strict: bool, target: float | None = None) -> None:
    msg = f"bits_per_value={target:g} cannot be met: {reached}" if target else reached
    if strict:
        raise InvalidArgumentError(msg)
    warnings.warn(msg, stacklevel=3)


__all__ = ["METHODS", "MIN_LOSSY_VALUES", "compress_at_budget", "lossy_eligible", "matches"]
