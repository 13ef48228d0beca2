"""Stored tensors: one protocol (:class:`~tensorpress.methods.base.StoredTensor`), one registry.

Every way tensorpress stores a tensor is a *method* with a stored class:

========== ============================================= =====================================
method     class                                         what it stores
========== ============================================= =====================================
lossless   :class:`~tensorpress.methods.lossless.CompressedTensor`   byte planes + entropy codes
blockwise  :class:`~tensorpress.methods.blockwise.BlockwiseTensor`   INT-b codes + fp16 scales/groups
video      :class:`tensorpress.video.VideoTensor`                    a video bitstream (LLM.265)
lowrank    :class:`~tensorpress.methods.lowrank.LowRankTensor`       U, V (and bias) of one linear
========== ============================================= =====================================

The container, :func:`tensorpress.decompress`, packed messages and the CLI find a method's class
here, by name, and nowhere else. Classes are imported on first use (``video`` pulls in its
pipeline, never PyAV, until a tensor is decoded).
"""

from __future__ import annotations

import importlib
from typing import Any

from tensorpress.errors import FormatError, InvalidArgumentError
from tensorpress.methods.base import StoredTensor, show

#: method name -> (module, class name) of its stored class.
REGISTRY: dict[str, tuple[str, str]] = {
    "lossless": ("tensorpress.methods.lossless", "CompressedTensor"),
    "blockwise": ("tensorpress.methods.blockwise", "BlockwiseTensor"),
    "video": ("tensorpress.video", "VideoTensor"),
    "lowrank": ("tensorpress.methods.lowrank", "LowRankTensor"),
}
METHODS = tuple(REGISTRY)


def stored_class(method: Any) -> Any:
    """The stored class of ``method`` (FormatError for a name this version does not know)."""
    if not isinstance(method, str) or method not in REGISTRY:
        raise FormatError(f"unknown tensor method {show(method)} (written by a newer tensorpress?)")
    module, name = REGISTRY[method]
    return getattr(importlib.import_module(module), name)


def is_stored(obj: Any) -> bool:
    """Whether ``obj`` is a stored tensor of a registered method."""
    method = getattr(type(obj), "method", None)
    return isinstance(method, str) and method in REGISTRY and isinstance(obj, stored_class(method))


def check_max_size(obj: Any, max_size: int | None) -> None:
    """Refuse ``obj`` before decoding when its decoded bytes exceed ``max_size``."""
    if max_size is None:
        return
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
        raise InvalidArgumentError(f"max_size must be a non-negative int, got {show(max_size)}")
    size = int(obj.decoded_nbytes)
    if size > max_size:
        raise FormatError(f"{obj.method} tensor decodes to {size:,} bytes, more than max_size={max_size:,}")


def from_parts(method: Any, header: Any, payload: bytes | memoryview, *, max_size: int | None = None) -> Any:
    """Validate and build the stored tensor of ``method`` from its header and payload."""
    obj = stored_class(method).from_parts(header, payload)
    check_max_size(obj, max_size)
    return obj


def decode(
    obj: Any,
    *,
    as_kind: str | None = None,
    device: str | None = None,
    max_size: int | None = None,
    threads: int | None = None,
) -> Any:
    """Decode a stored tensor of any method (``threads`` reaches the entropy decoders)."""
    if not is_stored(obj):
        raise TypeError(f"not a tensorpress stored tensor: {type(obj).__name__}")
    check_max_size(obj, max_size)
    if threads is not None and obj.method == "lossless":
        return obj.decode(as_kind=as_kind, device=device, threads=threads)
    return obj.decode(as_kind=as_kind, device=device)


__all__ = [
    "METHODS",
    "REGISTRY",
    "StoredTensor",
    "check_max_size",
    "decode",
    "from_parts",
    "is_stored",
    "stored_class",
]
