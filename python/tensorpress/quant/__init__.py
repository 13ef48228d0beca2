"""Quantization that makes models smaller *and* cheaper to run.

- :mod:`tensorpress.quant.blockwise` — blockwise integer quantization of tensors (per-block scales).
- :mod:`tensorpress.quant.bct` — BCT: blockwise post-training quantization of a whole transformer.
- :mod:`tensorpress.quant.gptq` — GPTQ: weight quantization with Hessian-based error compensation.
- :mod:`tensorpress.quant.hqq` — HQQ: calibration-free half-quadratic zero-point optimization.
- :mod:`tensorpress.quant.tender` — Tender: grouped activation quantization with power-of-two
  scale ratios and shift-accumulate integer matmuls.

Submodules import torch; they load on first attribute access so ``import tensorpress.quant`` stays
cheap and works without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from tensorpress.errors import BackendUnavailableError

_SUBMODULES = ("bct", "blockwise", "gptq", "hqq", "tender")


def __getattr__(name: str) -> Any:
    if name not in _SUBMODULES:
        raise AttributeError(f"module 'tensorpress.quant' has no attribute {name!r}")
    try:
        import torch  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise BackendUnavailableError(f"tensorpress.quant.{name} needs torch", extra="torch") from exc
    module = importlib.import_module(f"tensorpress.quant.{name}")
    globals()[name] = module
    return module


__all__ = ["bct", "blockwise", "gptq", "hqq", "tender"]
