"""Dtype names and the numpy/torch adapters every stored method shares.

A tensorpress dtype name is the numpy/ml_dtypes name (torch names without the ``torch.`` prefix
are the same strings). Tensors are handled as numpy arrays inside; :func:`to_numpy` records the
kind (numpy or torch) and torch device a tensor came from, :func:`from_numpy` gives it back.
"""

from __future__ import annotations

import sys
from typing import Any

import ml_dtypes
import numpy as np

from tensorpress.errors import BackendUnavailableError, FormatError, InvalidArgumentError, InvalidTypeError

NAMED_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(t)
    for name, t in {
        "float64": np.float64,
        "float32": np.float32,
        "float16": np.float16,
        "bfloat16": ml_dtypes.bfloat16,
        "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
        "float8_e5m2": ml_dtypes.float8_e5m2,
        "int64": np.int64,
        "int32": np.int32,
        "int16": np.int16,
        "int8": np.int8,
        "uint64": np.uint64,
        "uint32": np.uint32,
        "uint16": np.uint16,
        "uint8": np.uint8,
        "bool": np.bool_,
        "int4": ml_dtypes.int4,
        "uint4": ml_dtypes.uint4,
    }.items()
}
#: torch has int4/uint4 dtypes without a defined memory layout (one value per byte, or two?),
#: and its own ops disagree about it; refused rather than silently losing a nibble.
_TORCH_SHELL_DTYPES = ("int4", "uint4")
#: Floating-point dtypes the lossy methods accept and produce.
FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")


def dtype_from_name(name: str) -> np.dtype:
    """The numpy dtype of a tensorpress dtype name (FormatError for an unknown name)."""
    try:
        return NAMED_DTYPES[name]
    except (KeyError, TypeError):
        shown = repr(name[:40]) if isinstance(name, str) else f"of type {type(name).__name__}"
        raise FormatError(f"unsupported dtype {shown}") from None


def dtype_name(dtype: np.dtype) -> str:
    """The tensorpress name of a numpy dtype, or InvalidArgumentError if it is not supported."""
    for name, known in NAMED_DTYPES.items():
        if known == dtype:
            return name
    raise InvalidArgumentError(
        f"dtype {dtype} is not supported; supported: {', '.join(sorted(NAMED_DTYPES))}"
    )


def torch_module() -> Any:
    """torch, or BackendUnavailableError naming the extra that installs it."""
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError("torch is not installed", extra="torch") from None
    return torch


def is_torch_tensor(obj: Any) -> bool:
    """True for a torch.Tensor, without importing torch when it is not loaded."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def to_numpy(tensor: Any) -> tuple[np.ndarray, str, str | None]:
    """(numpy view of the tensor's values, "numpy"|"torch", torch device or None)."""
    if is_torch_tensor(tensor):
        torch = torch_module()
        t = tensor.detach()
        if t.layout != torch.strided:
            raise InvalidArgumentError(
                f"torch {t.layout} tensors are not supported; convert with .to_dense() first"
            )
        if t.device.type == "meta":
            raise InvalidArgumentError("a meta tensor has no values to compress")
        device = str(t.device)
        name = str(t.dtype).removeprefix("torch.")
        if name not in NAMED_DTYPES or name in _TORCH_SHELL_DTYPES:
            raise InvalidArgumentError(
                f"torch dtype {t.dtype} is not supported"
                + (
                    " (torch's sub-byte dtypes have no defined memory layout; use ml_dtypes.int4/uint4 "
                    "numpy arrays or widen to int8/uint8)"
                    if name in ("int4", "uint4")
                    else ""
                )
            )
        flat = t.cpu().contiguous().reshape(-1)
        raw = flat.view(torch.uint8).numpy() if flat.dtype != torch.bool else flat.numpy().view(np.uint8)
        return raw.view(NAMED_DTYPES[name]).reshape(tuple(t.shape)), "torch", device
    if isinstance(tensor, np.ndarray | np.generic):
        arr = np.asarray(tensor)
        dtype_name(arr.dtype)  # object, complex, structured...: InvalidArgumentError
        return arr, "numpy", None
    raise InvalidTypeError(f"expected a numpy array or torch tensor, got {type(tensor).__name__}")


def from_numpy(arr: np.ndarray, kind: str, device: str | None, *, copy: bool = True) -> Any:
    """Return ``arr`` as a numpy array or a torch tensor on ``device`` (None: the CPU).

    A CPU torch tensor is a copy of ``arr``'s bytes unless ``copy=False``: then it shares the
    memory of a writable C-contiguous ``arr`` (a fresh decode output handed over; copying
    a model's weights once more would cost as much as decoding them)."""
    if kind == "numpy":
        return arr
    torch = torch_module()
    name = dtype_name(arr.dtype)
    torch_dtype = getattr(torch, name, None)
    if torch_dtype is None:
        raise InvalidArgumentError(f"this torch has no dtype {name}")
    if arr.size == 0:
        out = torch.empty(arr.shape, dtype=torch_dtype)
    else:
        flat = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
        shared = not copy and flat.flags.writeable and np.may_share_memory(flat, arr)  # a view, not a copy
        raw = torch.from_numpy(flat if shared else flat.copy())
        out = (raw.bool() if name == "bool" else raw.view(torch_dtype)).reshape(arr.shape)
    return out.to(device) if device and device != "cpu" else out


__all__ = [
    "FLOAT_DTYPES",
    "NAMED_DTYPES",
    "dtype_from_name",
    "dtype_name",
    "from_numpy",
    "is_torch_tensor",
    "to_numpy",
    "torch_module",
]
