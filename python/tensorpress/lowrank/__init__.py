"""Low-rank decomposition of model layers.

- :mod:`tensorpress.lowrank.rom` — LLM-ROM: layer-by-layer PCA of layer outputs (reduced-order
  modelling), with a weight-space SVD baseline at the same parameter count.

The submodule imports torch; it loads on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

from tensorpress.errors import BackendUnavailableError

_SUBMODULES = ("rom",)


def __getattr__(name: str) -> Any:
    if name not in _SUBMODULES:
        raise AttributeError(f"module 'tensorpress.lowrank' has no attribute {name!r}")
    try:
        import torch  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise BackendUnavailableError(f"tensorpress.lowrank.{name} needs torch", extra="torch") from exc
    module = importlib.import_module(f"tensorpress.lowrank.{name}")
    globals()[name] = module
    return module


__all__ = ["rom"]
