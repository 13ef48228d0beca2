"""The stored-tensor protocol and the strict checks every stored header goes through.

Every method's stored class implements :class:`StoredTensor`. Its ``from_parts(header, payload)``
validates the whole header against the payload *before* allocating anything: integer fields are
real ``int`` values (not bool, float, string or Infinity) within documented bounds, enumerated
fields hold a known value, and every size is checked against the payload length and the declared
shape × dtype. Failures are :class:`~tensorpress.errors.FormatError` (or
:class:`~tensorpress.errors.CorruptDataError` where the header is sound and the payload is not).

Device strings are data: a recorded ``cuda:N`` is honoured only when that device exists here;
otherwise the tensor is delivered on the CPU with a warning (a caller's ``device=`` always wins).
"""

from __future__ import annotations

import json
import math
import re
import reprlib
import warnings
from typing import Any, ClassVar, Protocol, TypeGuard, runtime_checkable

import numpy as np

from tensorpress import _core
from tensorpress.errors import FormatError, InvalidArgumentError
from tensorpress.methods.arrays import dtype_from_name, from_numpy, torch_module

#: Deepest JSON nesting accepted in any header (containers, packed objects, video, plan records).
MAX_JSON_DEPTH = 32
#: Most dimensions a stored shape may have.
MAX_DIMS = 32
#: Largest element count of one stored tensor (and so of any one dimension).
MAX_NUMEL = 1 << 40
#: Largest unsigned 64-bit value (offsets and lengths in headers).
U64_MAX = (1 << 64) - 1
#: Tensor kinds a stored tensor may come back as.
KINDS = ("numpy", "torch")
#: Device strings a header may record: a torch device type and an optional index.
DEVICE_PATTERN = re.compile(r"(cpu|cuda|mps|xpu)(:(0|[1-9][0-9]{0,3}))?")


@runtime_checkable
class StoredTensor(Protocol):
    """What the container, :func:`tensorpress.decompress` and packed messages rely on."""

    method: ClassVar[str]

    def header(self) -> dict[str, Any]:
        """JSON-able parameters; with :meth:`payload` everything needed to decode."""
        ...

    def payload(self) -> bytes:
        """The stored bytes."""
        ...

    @classmethod
    def from_parts(cls, header: dict[str, Any], payload: bytes | memoryview) -> Any:
        """Validate ``header`` against ``payload``, then build (no decoding)."""
        ...

    def decode(self, as_kind: str | None = None, device: str | None = None) -> Any:
        """The tensor: numpy or torch (``as_kind``; default: the kind it came from)."""
        ...

    @property
    def nbytes(self) -> int:
        """Stored payload bytes."""
        ...

    @property
    def raw_nbytes(self) -> int:
        """Bytes of the uncompressed tensor (int4/uint4: packed two values per byte)."""
        ...

    @property
    def decoded_nbytes(self) -> int:
        """Bytes the decoder allocates for its output (what ``max_size`` limits)."""
        ...

    @property
    def bits_per_value(self) -> float:
        """Stored payload bits per element."""
        ...


# --- JSON ------------------------------------------------------------------------------------


def json_depth(data: bytes) -> int:
    """Deepest ``[``/``{`` nesting of JSON text ``data`` (brackets inside strings ignored)."""
    return _core.json_depth(data)


def _no_constant(name: str) -> Any:
    raise FormatError(f"JSON constant {name} is not allowed in a tensorpress header")


def parse_json(data: bytes | memoryview | str, what: str) -> Any:
    """Parse a header's JSON: UTF-8, nesting at most :data:`MAX_JSON_DEPTH`, no NaN/Infinity."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise FormatError(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH}")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, long ints
        raise FormatError(f"{what} is not valid JSON: {exc}") from None


# --- field checks ----------------------------------------------------------------------------

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 3, 40, 40, 6, 6


def show(value: Any) -> str:
    """A short repr of a header value for error messages: bounded in depth and length, and safe
    for values whose plain repr fails (ints past Python's digit limit)."""
    try:
        return _SHORT.repr(value)
    except (ValueError, RecursionError):
        return f"<{type(value).__name__}>"


def fail(method: str, what: str) -> FormatError:
    """The error for a bad ``method`` header field."""
    return FormatError(f"invalid {method} header: {what}")


def need_dict(value: Any, method: str, what: str = "header") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(method, f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def is_int(value: Any) -> TypeGuard[int]:
    """A real integer: ``int`` but not ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def need_int(h: dict[str, Any], key: str, lo: int, hi: int, method: str) -> int:
    """``h[key]``, which must be an int in ``[lo, hi]``."""
    value = h.get(key)
    if not is_int(value) or not lo <= value <= hi:
        raise fail(method, f"{key} must be an integer in [{lo}, {hi}], got {show(value)}")
    return int(value)


def need_choice(h: dict[str, Any], key: str, choices: tuple[Any, ...] | dict[str, Any], method: str) -> Any:
    """``h[key]``, which must be one of ``choices`` (compared with its type: ``1`` is not ``True``)."""
    value = h.get(key)
    if type(value) is str and value in choices:
        return value  # the common case, without the typed scan (a str equals only a str)
    if not any(type(value) is type(c) and value == c for c in choices):
        names = ", ".join(repr(c) for c in choices)
        raise fail(method, f"unknown {key} {show(value)} (known: {names})")
    return value


def need_float(h: dict[str, Any], key: str, method: str, *, positive: bool = False) -> float:
    """``h[key]``: a finite JSON number (int or float, not bool), ``> 0`` if ``positive``."""
    value: Any = h.get(key)
    if not (is_int(value) or isinstance(value, float)):
        raise fail(method, f"{key} must be a number, got {show(value)}")
    try:
        out = float(value)
    except OverflowError:
        raise fail(method, f"{key} is out of range") from None
    if not math.isfinite(out) or (positive and not out > 0) or out < 0:
        raise fail(method, f"{key} must be finite and {'> 0' if positive else '>= 0'}, got {show(value)}")
    return out


def need_shape(h: dict[str, Any], method: str, key: str = "shape") -> tuple[int, ...]:
    """A shape: at most :data:`MAX_DIMS` ints ≥ 0 whose product is at most :data:`MAX_NUMEL`."""
    shape = h.get(key)
    if not isinstance(shape, list) or len(shape) > MAX_DIMS:
        raise fail(method, f"{key} must be a list of at most {MAX_DIMS} integers, got {show(shape)}")
    numel = 1
    for d in shape:
        if not is_int(d) or not 0 <= d <= MAX_NUMEL:
            raise fail(method, f"{key} holds {show(d)}, not an integer in [0, 2^40]")
        numel *= d
    if numel > MAX_NUMEL:
        raise fail(method, f"{key} {shape} holds more than 2^40 elements")
    return tuple(int(d) for d in shape)


def need_dtype(h: dict[str, Any], method: str, allowed: tuple[str, ...] | None = None) -> str:
    """A known dtype name (of ``allowed`` when given)."""
    name = h.get("dtype")
    if not isinstance(name, str) or (allowed is not None and name not in allowed):
        raise fail(method, f"dtype {show(name)} is not one of {', '.join(allowed or ())}")
    dtype_from_name(name)
    return name


def need_kind(h: dict[str, Any], method: str) -> str:
    return str(need_choice(h, "kind", KINDS, method))


def need_device(h: dict[str, Any], method: str) -> str | None:
    """The recorded device: ``null`` or a well-formed device string (FormatError otherwise)."""
    device = h.get("device")
    if device is None:
        return None
    if not isinstance(device, str) or DEVICE_PATTERN.fullmatch(device) is None:
        raise fail(method, f"malformed device {show(device)}")
    return device


def numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


# --- delivering decoded tensors --------------------------------------------------------------


def check_as_kind(as_kind: str | None) -> None:
    if as_kind is not None and as_kind not in KINDS:
        raise InvalidArgumentError(f"as_kind must be 'numpy' or 'torch', got {show(as_kind)}")


def device_available(device: str) -> bool:
    """Whether torch can place a tensor on ``device`` in this process."""
    kind, _, index = device.partition(":")
    if kind == "cpu":
        return True
    torch = torch_module()
    n = int(index) if index else 0
    if kind == "cuda":
        return bool(torch.cuda.is_available()) and n < int(torch.cuda.device_count())
    if kind == "mps":
        return bool(torch.backends.mps.is_available()) and n == 0
    backend = getattr(torch, kind, None)
    return backend is not None and bool(backend.is_available()) and n < int(backend.device_count())


def target_device(kind: str, recorded: str | None, as_kind: str | None, device: str | None) -> str | None:
    """Where a decoded tensor goes: None for numpy output; else ``device`` if given, the recorded
    device when it exists here, or the CPU (with a warning when the recorded one is missing)."""
    check_as_kind(as_kind)
    if (as_kind or kind) == "numpy":
        return None
    if device is not None:
        return str(device)
    if recorded is not None and recorded != "cpu":
        if device_available(recorded):
            return recorded
        warnings.warn(
            f"tensor was stored from {recorded}, which this machine does not have: "
            "returning it on the CPU (pass device= to choose)",
            stacklevel=4,
        )
    return "cpu"


def gpu_decode_target(kind: str, recorded: str | None, as_kind: str | None, device: str | None) -> str | None:
    """The CUDA device to decode on directly (only compressed bytes uploaded), or None when the
    output is numpy, belongs on the CPU, or Triton cannot run here (then decode on the CPU)."""
    target = target_device(kind, recorded, as_kind, device)
    if target is None or not target.startswith("cuda"):
        return None
    try:
        import triton  # noqa: F401
    except ImportError:
        return None
    return target


def deliver(arr: np.ndarray, kind: str, recorded: str | None, as_kind: str | None, device: str | None) -> Any:
    """``arr``, a fresh decode output the caller hands over, as the requested kind: ``as_kind``
    (default the recorded ``kind``); a torch tensor goes to ``device`` if given, else to the
    recorded device when it exists here, else to the CPU with a warning. A CPU torch tensor
    shares ``arr``'s memory."""
    target = target_device(kind, recorded, as_kind, device)
    if target is None:
        return arr
    return from_numpy(arr, "torch", None if target == "cpu" else target, copy=False)


__all__ = [
    "DEVICE_PATTERN",
    "KINDS",
    "MAX_DIMS",
    "MAX_JSON_DEPTH",
    "MAX_NUMEL",
    "StoredTensor",
    "check_as_kind",
    "deliver",
    "device_available",
    "fail",
    "gpu_decode_target",
    "is_int",
    "json_depth",
    "need_choice",
    "need_device",
    "need_dict",
    "need_dtype",
    "need_float",
    "need_int",
    "need_kind",
    "need_shape",
    "numel",
    "parse_json",
    "target_device",
]
