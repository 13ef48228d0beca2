"""Recipes: how a model transformed by LLM-ROM, Tender or BCT is saved as it is and rebuilt.

A transformed model's modules differ from what its ``config.json`` builds, and BCT keeps its
quantized norms out of ``state_dict()``. :func:`capture` records, per method, what
:func:`rebuild` needs to turn a freshly built (empty) architecture into the same modules, and
returns the tensors to store:

- ``rom``: every ``nn.Linear`` replaced by two linears (``in → rank → out``), with its rank.
- ``tender``: every :class:`~tensorpress.quant.tender.TenderLinear`, its config and mode; the
  calibrated chunk statistics are ordinary buffers.
- ``bct``: the :class:`~tensorpress.quant.bct.BCTConfig` and, per quantized parameter, its
  integer codes and block scales (stored as ``<name>.bct_codes`` / ``<name>.bct_scales``, plus
  ``<name>.bct_offsets`` for asymmetric blocks), so the
  rebuilt model dequantizes exactly the same weights (requantizing dequantized weights would not
  be exact: float16 scales round up).

Order of application: ROM, then Tender, then BCT.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tensorpress.errors import FormatError

CODES_SUFFIX = ".bct_codes"
SCALES_SUFFIX = ".bct_scales"
OFFSETS_SUFFIX = ".bct_offsets"


def _nn() -> Any:
    from torch import nn

    return nn


def _rom_layers(model: Any) -> dict[str, dict[str, Any]]:
    nn = _nn()
    out = {}
    for name, m in model.named_modules():
        kids = list(m.children()) if isinstance(m, nn.Sequential) else []
        # the two factors may since have become other linear modules (Tender, BCT)
        if (
            len(kids) == 2
            and all(isinstance(getattr(k, "in_features", None), int) for k in kids)
            and getattr(kids[0], "bias", None) is None
            and kids[0].out_features == kids[1].in_features
        ):
            out[name] = {
                "in_features": kids[0].in_features,
                "rank": kids[0].out_features,
                "out_features": kids[1].out_features,
                "bias": getattr(kids[1], "bias", None) is not None,
            }
    return out


def _tender_layers(model: Any) -> dict[str, dict[str, Any]]:
    from tensorpress.quant.tender import TenderLinear

    return {
        name: {"config": dataclasses.asdict(m.config), "mode": m.mode}
        for name, m in model.named_modules()
        if isinstance(m, TenderLinear)
    }


def _bct_quantized(model: Any) -> dict[str, Any]:
    """``{parameter name: QuantizedTensor}`` of every BCT module (tied ones under each name)."""
    from tensorpress.quant import bct

    out = {}
    for name, m in model.named_modules():
        if isinstance(m, bct.BCTLinear | bct.BCTEmbedding | bct.BCTNorm):
            for attr, field in (("weight", "qweight"), ("bias", "qbias")):
                q = getattr(m, field, None)
                if q is not None:
                    out[f"{name}.{attr}"] = q
    return out


def capture(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(recipe, tensors to store)`` for ``model``; the recipe is empty for an untransformed one."""
    recipe: dict[str, Any] = {}
    state = dict(model.state_dict())
    rom = _rom_layers(model)
    if rom:
        recipe["rom"] = rom
    if any(type(m).__name__ == "TenderLinear" for m in model.modules()):
        recipe["tender"] = _tender_layers(model)
    if any(type(m).__name__.startswith("BCT") for m in model.modules()):
        from tensorpress.quant import bct

        quantized = _bct_quantized(model)
        configs = {
            m.config  # frozen dataclasses: equal configs collapse
            for m in model.modules()
            if isinstance(getattr(m, "config", None), bct.BCTConfig)
        }
        if len(configs) != 1:
            raise FormatError(f"a BCT model must use one BCTConfig, found {len(configs)}")
        (config,) = configs
        tensors_meta: dict[str, Any] = {}
        first_name: dict[int, str] = {}
        for name, q in quantized.items():
            if id(q) in first_name:  # tied weights: stored once
                tensors_meta[name] = {"alias": first_name[id(q)]}
                continue
            first_name[id(q)] = name
            tensors_meta[name] = {
                "shape": list(q.shape),
                "bits": q.bits,
                "block_size": q.block_size,
                "scale_format": q.scale_format,
                "unsigned": q.unsigned,
                "offsets": q.offsets is not None,
            }
            state[name + CODES_SUFFIX] = q.codes
            state[name + SCALES_SUFFIX] = q.scales
            if q.offsets is not None:
                state[name + OFFSETS_SUFFIX] = q.offsets
        for key in [k for k in state if k.endswith(".weight_codes")]:
            if key.removesuffix("_codes") in quantized:
                del state[key]  # the same codes, stored under the parameter's name
        recipe["bct"] = {"config": dataclasses.asdict(config), "tensors": tensors_meta}
    return recipe, state


def _field(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise FormatError(f"{where}: recipe field {key!r} is malformed ({value!r})")
    return value


def _replace(model: Any, name: str, new: Any) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _linear_at(model: Any, name: str, where: str) -> Any:
    nn = _nn()
    try:
        m = model.get_submodule(name)
    except AttributeError:
        raise FormatError(f"{where}: recipe names module {name!r}, which the model does not have") from None
    if not isinstance(m, nn.Linear):
        raise FormatError(f"{where}: recipe module {name!r} is a {type(m).__name__}, not a Linear")
    return m


def prepare(model: Any, recipe: Mapping[str, Any], state: dict[str, Any], where: str) -> None:
    """Apply the structural part of ``recipe`` to an empty (meta) ``model`` before its weights are
    loaded from ``state``. BCT codes are consumed from ``state``."""
    import torch

    nn = _nn()
    unknown = set(recipe) - {"rom", "tender", "bct"}
    if unknown:
        raise FormatError(f"{where}: unknown recipe {sorted(unknown)} (written by a newer tensorpress?)")
    for name, spec in dict(recipe.get("rom") or {}).items():
        linear = _linear_at(model, name, where)
        d_in, rank = _field(spec, "in_features", int, where), _field(spec, "rank", int, where)
        d_out, bias = _field(spec, "out_features", int, where), _field(spec, "bias", bool, where)
        if (d_in, d_out) != (linear.in_features, linear.out_features) or not 1 <= rank <= 1 << 20:
            raise FormatError(f"{where}: ROM layer {name!r} does not fit the model")
        with torch.device("meta"):
            new = nn.Sequential(nn.Linear(d_in, rank, bias=False), nn.Linear(rank, d_out, bias=bias))
        _replace(model, name, new.to(linear.weight.dtype))
    tender = dict(recipe.get("tender") or {})
    if tender:
        from tensorpress.quant.tender import TenderConfig, TenderLinear

        for name, spec in tender.items():
            linear = _linear_at(model, name, where)
            try:
                config = TenderConfig(**_field(spec, "config", dict, where))
            except (TypeError, ValueError) as exc:
                raise FormatError(f"{where}: Tender config of {name!r}: {exc}") from None
            layer = TenderLinear(linear, config)
            for buf in ("chunk_bias", "chunk_tmax", "chunk_group"):  # calibrated shapes
                value = state.get(f"{name}.{buf}")
                if value is not None:
                    setattr(layer, buf, torch.empty_like(value, device="meta"))
            layer.mode = str(spec.get("mode", "quantized"))
            _replace(model, name, layer)


def finish(model: Any, recipe: Mapping[str, Any], state: dict[str, Any], where: str) -> None:
    """After the weights are loaded: recompute Tender's dequantized weights, and swap in BCT's
    modules from the stored codes (removing them from ``state``)."""
    import torch

    for name in dict(recipe.get("tender") or {}):
        layer = model.get_submodule(name)
        layer.weight_dq = layer.weight_codes.to(torch.float32) * layer.weight_scale[:, None]
    spec = recipe.get("bct")
    if spec is None:
        return
    from tensorpress.quant import bct
    from tensorpress.quant.blockwise import QuantizedTensor

    try:
        config = bct.BCTConfig(**_field(spec, "config", dict, where))
    except (TypeError, ValueError) as exc:
        raise FormatError(f"{where}: BCT config: {exc}") from None
    by_name: dict[str, Any] = {}
    entries = _field(spec, "tensors", dict, where)
    for name, meta in entries.items():
        if "alias" in meta:
            continue
        codes, scales = state.get(name + CODES_SUFFIX), state.get(name + SCALES_SUFFIX)
        if codes is None or scales is None:
            raise FormatError(f"{where}: BCT codes or scales of {name!r} are missing")
        shape = tuple(_field(meta, "shape", list, where))
        if tuple(codes.shape) != shape:
            raise FormatError(f"{where}: BCT codes of {name!r} have shape {tuple(codes.shape)}, not {shape}")
        offsets = state.get(name + OFFSETS_SUFFIX) if meta.get("offsets") else None
        if meta.get("offsets") and (offsets is None or tuple(offsets.shape) != tuple(scales.shape)):
            raise FormatError(f"{where}: BCT offsets of {name!r} are missing or do not match its scales")
        by_name[name] = QuantizedTensor(
            codes=codes,
            scales=scales,
            shape=shape,
            bits=_field(meta, "bits", int, where),
            block_size=meta.get("block_size"),
            scale_format=_field(meta, "scale_format", str, where),
            unsigned=bool(meta.get("unsigned", False)),
            offsets=offsets,
        )
    for name, meta in entries.items():
        if "alias" in meta:
            target = meta["alias"]
            if target not in by_name:
                raise FormatError(f"{where}: BCT alias {name!r} points at missing {target!r}")
            by_name[name] = by_name[target]
    by_id = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if name in by_name:
            by_id[id(p)] = by_name[name]

    class _Stored(bct._QuantParams):
        def get(
            self, p: torch.Tensor, bits: int, clip_search: bool = False, zero_point: bool = False
        ) -> QuantizedTensor:
            # The stored codes (and offsets) are the result of whatever search made them.
            q = by_id.get(id(p))
            if q is None or q.bits != bits:
                raise FormatError(f"{where}: a BCT parameter of the model has no stored {bits}-bit codes")
            return q

    bct.quantize_model(model, config, quantized=_Stored(config))


def bct_state_names(recipe: Mapping[str, Any]) -> set[str]:
    """Names of the stored tensors consumed by the BCT recipe (not model parameters)."""
    spec = recipe.get("bct") or {}
    entries = dict(spec.get("tensors") or {})
    names = {n + s for n, m in entries.items() if "alias" not in m for s in (CODES_SUFFIX, SCALES_SUFFIX)}
    return names | {n + OFFSETS_SUFFIX for n, m in entries.items() if "alias" not in m and m.get("offsets")}


def bct_parameter_names(recipe: Mapping[str, Any]) -> set[str]:
    """Model parameters the BCT recipe rebuilds from codes (not loaded as floats)."""
    spec = recipe.get("bct") or {}
    return set(dict(spec.get("tensors") or {}))


__all__ = [
    "CODES_SUFFIX",
    "OFFSETS_SUFFIX",
    "SCALES_SUFFIX",
    "bct_parameter_names",
    "bct_state_names",
    "capture",
    "finish",
    "prepare",
]
