"""tensorpress: shrink the tensors of large language models.

Lossless entropy codes in Rust (:mod:`tensorpress.entropy`), tensor-aware compression and the
``.tpz`` container, video codecs as tensor codecs (:mod:`tensorpress.video`), blockwise and
grouped quantization (:mod:`tensorpress.quant`), reduced-order models
(:mod:`tensorpress.lowrank`) — one API. Heavy modules load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from tensorpress import entropy, errors
from tensorpress._core import __version__
from tensorpress.errors import (
    BackendUnavailableError,
    ChecksumError,
    CorruptDataError,
    FormatError,
    InvalidArgumentError,
    TensorpressError,
)

# Public names served lazily: name -> module that defines it.
_LAZY = {
    "compress": "tensorpress.tensors",
    "decompress": "tensorpress.tensors",
    "CompressedTensor": "tensorpress.tensors",
    "save": "tensorpress.container",
    "load": "tensorpress.container",
    "open": "tensorpress.container",
    "plan": "tensorpress.planner",
    "compress_model": "tensorpress.models",
    "save_model": "tensorpress.models",
    "load_model": "tensorpress.models",
    "video": "tensorpress.video",
    "quant": "tensorpress.quant",
    "lowrank": "tensorpress.lowrank",
    "distributed": "tensorpress.distributed",
    "samples": "tensorpress.samples",
    "models": "tensorpress.models",
    "planner": "tensorpress.planner",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'tensorpress' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value


__all__ = [
    "BackendUnavailableError",
    "ChecksumError",
    "CorruptDataError",
    "FormatError",
    "InvalidArgumentError",
    "TensorpressError",
    "__version__",
    "entropy",
    "errors",
    *_LAZY,
]
