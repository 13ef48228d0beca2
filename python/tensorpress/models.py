"""Whole models and KV caches: plan and compress every tensor, store them in one ``.tpz``.

- :func:`compress_model` — runs :func:`tensorpress.plan` on every tensor of a torch module (its
  ``state_dict()``), a Hugging Face model, or a plain mapping of tensors, and applies each plan.
  Tied/shared weights (the same storage under several names, e.g. a tied LM head) are compressed
  once; the other names are recorded as aliases.
- :func:`save_model` writes the result to one ``.tpz``; the per-tensor plans, the aliases and the
  constraint go into the container metadata (keys :data:`PLANS_KEY`, :data:`ALIASES_KEY`,
  :data:`CONSTRAINT_KEY`), so ``tensorpress inspect`` can show each tensor's plan.
- :func:`load_model` reads it back as a state dict (aliases share one tensor again) and, given a
  module, loads it with ``load_state_dict(strict=True)``.
- :func:`compress_kv_cache` / :func:`restore_kv_cache` — a transformers ``DynamicCache`` (or a
  legacy tuple of ``(key, value)`` per layer) compressed losslessly (byte planes + entropy codes)
  or lossily (planned per tensor under ``max_rel_error`` / ``bits_per_value``).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tensorpress import container, entropy, tensors
from tensorpress.allocation import compress_at_budget, lossy_eligible
from tensorpress.errors import BackendUnavailableError, FormatError, InvalidArgumentError, InvalidTypeError
from tensorpress.methods.base import parse_json
from tensorpress.ordered import map_in_order
from tensorpress.planner import DEFAULT_SAMPLE, Plan, plan

#: Metadata key holding ``{name: plan record}`` (JSON).
PLANS_KEY = "tensorpress.plans"
#: Metadata key holding ``{alias: stored name}`` for tied/shared tensors (JSON).
ALIASES_KEY = "tensorpress.aliases"
#: Metadata key holding the constraint the model was compressed under.
CONSTRAINT_KEY = "tensorpress.constraint"


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError("tensorpress.models needs torch", extra="torch") from None
    return torch


class CompressedModel(dict[str, Any]):
    """``{name: compressed tensor}`` plus :attr:`plans` (name → :class:`~tensorpress.Plan`) and
    :attr:`aliases` (tied name → stored name)."""

    def __init__(self) -> None:
        super().__init__()
        self.plans: dict[str, Plan] = {}
        self.aliases: dict[str, str] = {}
        self.constraint: str = "lossless"

    @property
    def nbytes(self) -> int:
        """Compressed bytes of all stored tensors."""
        return sum(int(getattr(v, "nbytes", 0)) for v in self.values())

    @property
    def raw_nbytes(self) -> int:
        """Uncompressed bytes of all stored tensors (aliases not counted twice)."""
        return sum(int(getattr(v, "raw_nbytes", 0)) for v in self.values())

    def __repr__(self) -> str:  # never the payloads: a model's repr would run to megabytes
        ratio = 100 * self.nbytes / self.raw_nbytes if self.raw_nbytes else 100.0
        methods: dict[str, int] = {}
        for v in self.values():
            methods[str(getattr(v, "method", "?"))] = methods.get(str(getattr(v, "method", "?")), 0) + 1
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(methods.items()))
        return (
            f"CompressedModel({len(self)} tensors ({kinds}), {len(self.aliases)} aliases, "
            f"{self.raw_nbytes / 1e6:.2f} MB -> {self.nbytes / 1e6:.2f} MB ({ratio:.1f} %), "
            f"{self.constraint})"
        )

    __str__ = __repr__


def state_dict_of(model_or_state_dict: Any) -> dict[str, Any]:
    """The tensors of a torch module / HF model (``state_dict()``) or of a mapping."""
    if isinstance(model_or_state_dict, Mapping):
        return dict(model_or_state_dict)
    state_dict = getattr(model_or_state_dict, "state_dict", None)
    if callable(state_dict):
        return dict(state_dict())
    raise InvalidTypeError(
        f"expected a torch module or a mapping of tensors, got {type(model_or_state_dict).__name__}"
    )


def find_aliases(state: Mapping[str, Any]) -> dict[str, str]:
    """``{alias: first name}`` for torch tensors that are the same view of the same storage."""
    seen: dict[tuple[Any, ...], str] = {}
    aliases: dict[str, str] = {}
    for name, t in state.items():
        if not tensors.is_torch_tensor(t) or t.numel() == 0:
            continue
        key = (
            t.device.type,
            t.untyped_storage().data_ptr(),
            t.storage_offset(),
            tuple(t.shape),
            tuple(t.stride()),
            t.dtype,
        )
        if key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
    return aliases


def _constraint_kwargs(
    lossless: bool | None, max_rel_error: float | None, bits_per_value: float | None
) -> dict[str, Any]:
    if max_rel_error is None and bits_per_value is None:
        if lossless is False:
            raise InvalidArgumentError("lossless=False needs max_rel_error=... or bits_per_value=...")
        return {"lossless": True}
    if lossless:
        raise InvalidArgumentError(
            "give one constraint: lossless=True, max_rel_error=... or bits_per_value=..."
        )
    return {"max_rel_error": max_rel_error, "bits_per_value": bits_per_value}


def compress_state(
    state: Mapping[str, Any],
    *,
    lossless: bool | None = None,
    max_rel_error: float | None = None,
    bits_per_value: float | None = None,
    method: str | None = None,
    keep: Iterable[str] = (),
    lossy_vectors: bool = False,
    strict: bool = False,
    prefer: str = "size",
    sample: int = DEFAULT_SAMPLE,
    video: bool = False,
    progress: Callable[[str], None] | None = None,
    header_bytes: int = 0,
    video_options: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Plan], str]:
    """Compress a state dict under one constraint with the safe lossy defaults of
    :func:`tensorpress.save_pretrained`; returns ``(compressed by name, plans by name, constraint text)``.
    ``header_bytes`` per tensor are counted against a ``bits_per_value`` budget. ``prefer``,
    ``sample`` and ``video`` go to :func:`tensorpress.plan` under ``max_rel_error``.
    ``video_options`` (``method="video"`` with ``bits_per_value`` only) go to
    :func:`tensorpress.video.encode_many`; when they carry an ``importance``, the tensors it does
    not name stay lossless."""
    say = progress or (lambda _m: None)
    kwargs = _constraint_kwargs(lossless, max_rel_error, bits_per_value)
    for label, value in (("bits_per_value", bits_per_value), ("max_rel_error", max_rel_error)):
        ok = value is None or (isinstance(value, int | float) and math.isfinite(value) and value >= 0)
        if not ok or (label == "bits_per_value" and value == 0):
            raise InvalidArgumentError(f"{label} must be a finite positive number, got {value!r}")
    if method == "lossless":
        if "lossless" not in kwargs:
            raise InvalidArgumentError("method='lossless' takes no bits_per_value or max_rel_error")
        method = None
    if method is not None and "lossless" in kwargs:
        raise InvalidArgumentError(f"method={method!r} is lossy: give bits_per_value or max_rel_error")
    keep = [keep] if isinstance(keep, str) else list(keep)
    if video_options is not None and (method != "video" or bits_per_value is None):
        raise InvalidArgumentError("video options need method='video' and bits_per_value")
    weighted = None if video_options is None else video_options.get("importance")
    packed: dict[str, Any] = {}
    plans: dict[str, Plan] = {}
    lossy = {}
    exact = []
    for name, value in state.items():
        if _is_compressed(value):  # coded already (e.g. by video.encode_many): stored as it is
            packed[name] = value
        elif (
            "lossless" not in kwargs
            and lossy_eligible(name, value, keep, vectors=lossy_vectors)
            and (weighted is None or name in weighted)
        ):
            lossy[name] = value
        else:
            exact.append((name, value))

    def plan_and_apply(item: tuple[str, Any]) -> tuple[str, Plan, Any]:
        p = plan(item[1], lossless=True, prefer=prefer, sample=sample)
        return item[0], p, p.apply(item[1])

    # Planning and coding run in Rust with the GIL released: several tensors at a time keep
    # every core busy on models of many small tensors; results (and progress) stay in order.
    workers = min(len(exact), entropy.pool_threads())
    with map_in_order(
        plan_and_apply, exact, workers=max(workers, 1), ahead=2 * max(workers, 1), name="tensorpress-plan"
    ) as coded:
        for name, p, stored in coded:
            packed[name] = stored
            plans[name] = p
            say(f"{name}: {p.summary()}")
    if kwargs.get("bits_per_value") is not None:
        # every stored tensor also costs a .tpz header entry (JSON with its plan, padding)
        spent = sum(8 * c.nbytes for c in packed.values()) + 8 * header_bytes * len(state)
        total = sum(int(np.prod(tuple(v.shape), dtype=np.int64)) for v in state.values())
        done, lossy_plans = compress_at_budget(
            lossy,
            spent,
            total,
            float(kwargs["bits_per_value"]),
            method=method,
            strict=strict,
            video=video,
            sample=sample,
            say=say,
            video_options=video_options,
        )
        packed.update(done)
        plans.update(lossy_plans)
    elif kwargs.get("max_rel_error") is not None:
        for name, value in lossy.items():
            p = plan(
                value,
                max_rel_error=kwargs["max_rel_error"],
                prefer=prefer,
                sample=sample,
                video=video or method == "video",
            )
            if method is not None:
                for c in p.candidates:
                    if not c.lossless and c.method != method:
                        c.feasible = False
            packed[name] = p.apply(value)
            plans[name] = p
            say(f"{name}: {p.summary()}")
    precoded = sum(1 for v in state.values() if _is_compressed(v))
    if "lossless" in kwargs:
        constraint = f"lossless, {precoded} tensors precoded" if precoded else "lossless"
    elif bits_per_value is not None:
        constraint = f"bits_per_value={bits_per_value:g}"
    else:
        constraint = f"max_rel_error={max_rel_error:g}"
    return {k: packed[k] for k in state}, plans, constraint


def _is_compressed(value: Any) -> bool:
    return all(callable(getattr(value, attr, None)) for attr in ("payload", "header"))


def compress_model(
    model_or_state_dict: Any,
    *,
    lossless: bool | None = None,
    max_rel_error: float | None = None,
    bits_per_value: float | None = None,
    method: str | None = None,
    keep: Iterable[str] = (),
    lossy_vectors: bool = False,
    strict: bool = False,
    prefer: str = "size",
    sample: int = DEFAULT_SAMPLE,
    video: bool = False,
    progress: bool = False,
) -> CompressedModel:
    """Compress every tensor under one constraint; returns a :class:`CompressedModel`.

    ``bits_per_value`` is the model average (every value counted), shared among the tensors by
    rate–distortion (:mod:`tensorpress.allocation`); ``max_rel_error`` bounds each lossy tensor's
    relative MSE. 1-D and tiny tensors, non-float tensors and names matching ``keep`` stay
    lossless (``lossy_vectors=True`` lets 1-D and tiny ones be lossy). Video candidates are off by
    default (``video=True`` adds them to each tensor's plan, several encodes per tensor;
    ``method="video"`` codes the lossy tensors with :func:`tensorpress.video.encode_many`).
    """
    state = state_dict_of(model_or_state_dict)
    aliases = find_aliases(state)
    out = CompressedModel()
    out.aliases = aliases
    items = {k: v for k, v in state.items() if k not in aliases}
    say = (lambda msg: print(msg, file=sys.stderr)) if progress else None
    packed, plans, constraint = compress_state(
        items,
        lossless=lossless,
        max_rel_error=max_rel_error,
        bits_per_value=bits_per_value,
        method=method,
        keep=keep,
        lossy_vectors=lossy_vectors,
        strict=strict,
        prefer=prefer,
        sample=sample,
        video=video,
        progress=say,
    )
    out.update(packed)
    out.plans = plans
    out.constraint = constraint
    return out


def save_model(
    model_or_state_dict: Any,
    path: str | os.PathLike[str],
    *,
    lossless: bool | None = None,
    max_rel_error: float | None = None,
    bits_per_value: float | None = None,
    prefer: str = "size",
    sample: int = DEFAULT_SAMPLE,
    video: bool = False,
    metadata: Mapping[str, str] | None = None,
    progress: bool = False,
) -> CompressedModel:
    """Compress (unless given a :class:`CompressedModel`) and write one ``.tpz`` at ``path``.

    Returns the compressed model (with its plans)."""
    if isinstance(model_or_state_dict, CompressedModel):
        packed = model_or_state_dict
    else:
        packed = compress_model(
            model_or_state_dict,
            lossless=lossless,
            max_rel_error=max_rel_error,
            bits_per_value=bits_per_value,
            prefer=prefer,
            sample=sample,
            video=video,
            progress=progress,
        )
    meta = dict(metadata or {})
    meta[PLANS_KEY] = json.dumps({k: p.to_dict() for k, p in packed.plans.items()}, separators=(",", ":"))
    meta[ALIASES_KEY] = json.dumps(packed.aliases, separators=(",", ":"))
    meta[CONSTRAINT_KEY] = packed.constraint
    container.save(packed, Path(path), metadata=meta, progress=progress)
    return packed


def read_plans(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The per-tensor plan records stored by :func:`save_model` (empty for other files)."""
    with container.open(path) as f:
        return plans_from_metadata(f.metadata)


def plans_from_metadata(metadata: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Parse the :data:`PLANS_KEY` metadata entry (FormatError if malformed)."""
    text = metadata.get(PLANS_KEY)
    if not text:
        return {}
    plans = parse_json(text, f"{PLANS_KEY} metadata")
    if not isinstance(plans, dict):
        raise FormatError(f"{PLANS_KEY} metadata must be a JSON object")
    return plans


def load_model(
    path: str | os.PathLike[str],
    model: Any = None,
    *,
    strict: bool = True,
    device: Any = None,
) -> dict[str, Any]:
    """Read a ``.tpz`` written by :func:`save_model` (or :func:`tensorpress.save`) as a state dict
    of torch tensors; aliases (tied weights) share one tensor. With ``model``, also
    ``model.load_state_dict(state, strict=strict)``."""
    torch = _torch()
    with container.open(path) as f:
        aliases_text = f.metadata.get(ALIASES_KEY, "{}")
        state: dict[str, Any] = {}
        for name in f:
            value = tensors.decompress(f.compressed(name), as_kind="torch")
            state[name] = value.to(device) if device is not None else value
    aliases = parse_json(aliases_text, f"{ALIASES_KEY} metadata")
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise FormatError(f"malformed {ALIASES_KEY} metadata: not an object of names")
    for alias, target in aliases.items():
        if target not in state:
            raise FormatError(f"alias {alias!r} points at missing tensor {target!r}")
        state[alias] = state[target]
    if model is not None:
        if not isinstance(model, torch.nn.Module):
            raise InvalidTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        model.load_state_dict(state, strict=strict)
    return state


# --- KV cache ---------------------------------------------------------------------------------


@dataclass
class CompressedKVCache:
    """A compressed KV cache: per layer (key, value) compressed tensors, and the cache's kind."""

    layers: list[tuple[Any, Any]]
    kind: str
    constraint: str
    sliding_windows: list[int | None] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(int(k.nbytes) + int(v.nbytes) for k, v in self.layers)

    @property
    def raw_nbytes(self) -> int:
        return sum(int(k.raw_nbytes) + int(v.raw_nbytes) for k, v in self.layers)

    def as_dict(self) -> dict[str, Any]:
        """``{"layers.{i}.key": obj, "layers.{i}.value": obj}`` for :func:`tensorpress.save`."""
        out = {}
        for i, (k, v) in enumerate(self.layers):
            out[f"layers.{i}.key"] = k
            out[f"layers.{i}.value"] = v
        return out


def _cache_layers(cache: Any) -> tuple[list[tuple[Any, Any]], str, list[int | None]]:
    if isinstance(cache, tuple | list):
        layers = []
        for i, entry in enumerate(cache):
            if not isinstance(entry, tuple | list) or len(entry) < 2:
                raise InvalidArgumentError(f"legacy cache layer {i} is not a (key, value) pair")
            layers.append((entry[0], entry[1]))
        return layers, "legacy", [None] * len(layers)
    cache_layers = getattr(cache, "layers", None)
    if cache_layers is None:
        raise InvalidTypeError(
            f"expected a transformers Cache or a tuple of (key, value), got {type(cache).__name__}"
        )
    layers, windows = [], []
    for i, layer in enumerate(cache_layers):
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if keys is None or values is None:
            raise InvalidArgumentError(f"cache layer {i} is empty (not initialised)")
        layers.append((keys, values))
        window = getattr(layer, "sliding_window", None)
        windows.append(int(window) if isinstance(window, int) else None)
    return layers, "dynamic", windows


def compress_kv_cache(
    cache: Any,
    *,
    lossless: bool | None = None,
    max_rel_error: float | None = None,
    bits_per_value: float | None = None,
    threads: int | None = None,
) -> CompressedKVCache:
    """Compress a transformers ``DynamicCache`` (or legacy ``((k, v), ...)``) tensor by tensor.

    Lossless (default): byte planes + the best entropy code per plane (bit-exact restore; bf16 and
    fp16 caches compress best). Lossy: each key/value tensor planned under the constraint
    (blockwise/tender-group candidates; video skipped for speed)."""
    kwargs = _constraint_kwargs(lossless, max_rel_error, bits_per_value)
    layers, kind, windows = _cache_layers(cache)
    packed = []
    constraint = "lossless"
    for k, v in layers:
        pair = []
        for t in (k, v):
            if "lossless" in kwargs:
                pair.append(tensors.compress(t, "auto", threads=threads))
            else:
                p = plan(t, video=False, **kwargs)
                constraint = p.constraint
                pair.append(p.apply(t))
        packed.append((pair[0], pair[1]))
    return CompressedKVCache(packed, kind, constraint, windows)


def restore_kv_cache(obj: CompressedKVCache, *, device: Any = None) -> Any:
    """Rebuild the cache: a ``transformers.DynamicCache`` (or the legacy tuple) of torch tensors."""
    torch = _torch()
    layers = []
    for k, v in obj.layers:
        kt, vt = (tensors.decompress(x, as_kind="torch") for x in (k, v))
        if device is not None:
            kt, vt = kt.to(device), vt.to(device)
        layers.append((kt, vt))
    if obj.kind == "legacy":
        return tuple(layers)
    try:
        from transformers import DynamicCache
    except ImportError:
        raise BackendUnavailableError("restoring a DynamicCache needs transformers", extra="eval") from None
    data = []
    for (kt, vt), window in zip(layers, obj.sliding_windows or [None] * len(layers), strict=True):
        data.append((kt, vt) if window is None else (kt, vt, torch.tensor(window)))
    return DynamicCache(data)


__all__ = [
    "ALIASES_KEY",
    "CONSTRAINT_KEY",
    "PLANS_KEY",
    "CompressedKVCache",
    "CompressedModel",
    "compress_kv_cache",
    "compress_model",
    "compress_state",
    "find_aliases",
    "load_model",
    "plans_from_metadata",
    "read_plans",
    "restore_kv_cache",
    "save_model",
    "state_dict_of",
]
