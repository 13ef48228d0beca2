"""tensorpress: shrink the tensors of large language models.

Lossless entropy codes in Rust (:mod:`tensorpress.entropy`), tensor-aware compression and the
``.tpz`` container, video codecs as tensor codecs (:mod:`tensorpress.video`), blockwise and
grouped quantization (:mod:`tensorpress.quant`), reduced-order models
(:mod:`tensorpress.lowrank`) — one API. Heavy modules load on first use.

Folders (Hugging Face layout): :func:`save_pretrained` (model, folder or state dict → compressed
folder) and :func:`from_pretrained` (folder → ready transformers model).
Tensors: :func:`compress` / :func:`decompress`, :func:`plan`; files: :func:`save`, :func:`load`,
:func:`open`; whole models in one file: :func:`compress_model`, :func:`save_model`,
:func:`load_model`. Subpackages: ``video``, ``quant``, ``lowrank``, ``distributed``, ``samples``.
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
    "save_pretrained": "tensorpress.hf",
    "from_pretrained": "tensorpress.hf",
    "video": "tensorpress.video",
    "quant": "tensorpress.quant",
    "lowrank": "tensorpress.lowrank",
    "distributed": "tensorpress.distributed",
    "samples": "tensorpress.samples",
    "models": "tensorpress.models",
    "planner": "tensorpress.planner",
}


def __dir__() -> list[str]:
    """The public API (lazy names included), so ``dir()``/``help()`` show it before first use."""
    return sorted(__all__)


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
