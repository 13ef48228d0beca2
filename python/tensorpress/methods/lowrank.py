"""Method ``lowrank``: the factors of one factorized linear layer as one stored tensor.

A weight ``W`` (``d_out × d_in``) is stored as ``U`` (``d_out × r``) and ``V`` (``r × d_in``),
plus an optional bias (``d_out``) — what an SVD truncation or an LLM-ROM layer
(:mod:`tensorpress.lowrank.rom`) produces. Each factor is itself a stored tensor of method
``lossless`` or ``blockwise`` (never a nested ``lowrank`` or ``video``), so quantized factors are
possible. :meth:`LowRankTensor.decode` returns the dense product ``U @ V`` (accumulated in float32,
then cast to ``dtype``); :meth:`LowRankTensor.factors` returns the parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tensorpress.errors import InvalidArgumentError
from tensorpress.methods import base
from tensorpress.methods.arrays import FLOAT_DTYPES, dtype_from_name, dtype_name, to_numpy
from tensorpress.methods.blockwise import BlockwiseTensor
from tensorpress.methods.lossless import CompressedTensor, compress

METHOD = "lowrank"
#: Methods a factor may be stored with.
FACTOR_METHODS: dict[str, Any] = {"lossless": CompressedTensor, "blockwise": BlockwiseTensor}
#: Factor names, in payload order (``bias`` optional).
FACTOR_NAMES = ("u", "v", "bias")


@dataclass(repr=False)
class LowRankTensor:
    """``W ≈ U @ V`` (+ the layer's bias, kept alongside) with each factor a stored tensor."""

    dtype: str
    shape: tuple[int, int]
    rank: int
    u: Any
    v: Any
    bias: Any = None
    kind: str = "numpy"
    device: str | None = None
    method: ClassVar[str] = METHOD

    def _parts(self) -> list[tuple[str, Any]]:
        parts = [("u", self.u), ("v", self.v)]
        return parts + ([("bias", self.bias)] if self.bias is not None else [])

    @property
    def numel(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def nbytes(self) -> int:
        return sum(int(p.nbytes) for _, p in self._parts())

    @property
    def raw_nbytes(self) -> int:
        """Bytes of the dense weight this stands for."""
        return self.numel * dtype_from_name(self.dtype).itemsize

    @property
    def decoded_nbytes(self) -> int:
        """The dense product plus the decoded factors (all alive at once while decoding)."""
        return self.raw_nbytes + 4 * self.numel + sum(int(p.decoded_nbytes) for _, p in self._parts())

    @property
    def bits_per_value(self) -> float:
        return 8 * self.nbytes / self.numel if self.numel else 0.0

    @property
    def codec(self) -> str:
        return f"rank{self.rank}:" + "+".join(f"{n}={p.method}" for n, p in self._parts())

    def __repr__(self) -> str:
        return (
            f"LowRankTensor(shape={self.shape}, dtype={self.dtype}, method={self.method}, rank={self.rank}, "
            f"nbytes={self.nbytes}, ratio={self.nbytes / max(self.raw_nbytes, 1):.3f})"
        )

    def header(self) -> dict[str, Any]:
        factors = []
        at = 0
        for name, part in self._parts():
            n = len(part.payload())
            factors.append(
                {"name": name, "method": part.method, "params": part.header(), "offset": at, "length": n}
            )
            at += n
        return {
            "dtype": self.dtype,
            "shape": list(self.shape),
            "rank": self.rank,
            "factors": factors,
            "kind": self.kind,
            "device": self.device,
        }

    def payload(self) -> bytes:
        return b"".join(part.payload() for _, part in self._parts())

    @classmethod
    def from_parts(cls, header: dict[str, Any], payload: bytes | memoryview) -> LowRankTensor:
        """Validate ``header`` and every factor against ``payload`` (docs/format.md §2.5)."""
        m = METHOD
        h = base.need_dict(header, m)
        dtype = base.need_dtype(h, m, FLOAT_DTYPES)
        shape = base.need_shape(h, m)
        if len(shape) != 2:
            raise base.fail(m, f"shape must be [d_out, d_in], got {list(shape)}")
        d_out, d_in = shape
        rank = base.need_int(h, "rank", 1, max(1, min(d_out, d_in)), m)
        kind = base.need_kind(h, m)
        device = base.need_device(h, m)
        specs = h.get("factors")
        if not isinstance(specs, list) or len(specs) not in (2, 3):
            raise base.fail(m, "factors must be a list of u, v and an optional bias")
        view = memoryview(payload)
        want = {"u": (d_out, rank), "v": (rank, d_in), "bias": (d_out,)}
        parts: dict[str, Any] = {}
        at = 0
        for i, spec in enumerate(specs):
            spec = base.need_dict(spec, m, f"factor {i}")
            name = base.need_choice(spec, "name", FACTOR_NAMES[: len(specs)], m)
            if name != FACTOR_NAMES[i]:
                raise base.fail(m, f"factor {i} is {name!r}, expected {FACTOR_NAMES[i]!r}")
            method = base.need_choice(spec, "method", tuple(FACTOR_METHODS), m)
            offset = base.need_int(spec, "offset", 0, base.U64_MAX, m)
            length = base.need_int(spec, "length", 0, base.U64_MAX, m)
            if offset != at or offset + length > len(view):
                raise base.fail(m, f"factor {name} at [{offset}, {offset + length}) does not follow at {at}")
            part = FACTOR_METHODS[method].from_parts(spec.get("params"), view[offset : offset + length])
            if tuple(part.shape) != want[name] or part.dtype not in FLOAT_DTYPES:
                raise base.fail(
                    m, f"factor {name} is {part.dtype}{list(part.shape)}, expected float{list(want[name])}"
                )
            parts[name] = part
            at = offset + length
        if at != len(view):
            raise base.fail(m, f"factors end at {at}, the payload at {len(view)}")
        return cls(dtype, (d_out, d_in), rank, parts["u"], parts["v"], parts.get("bias"), kind, device)

    def factors(self, as_kind: str | None = None, device: str | None = None) -> dict[str, Any]:
        """``{"u": U, "v": V}`` (+ ``"bias"``) decoded, as ``as_kind`` (default: the stored kind)."""
        base.check_as_kind(as_kind)
        out = {}
        for name, part in self._parts():
            arr = part.decode(as_kind="numpy")
            out[name] = base.deliver(arr, self.kind, self.device, as_kind, device)
        return out

    def decode(self, as_kind: str | None = None, device: str | None = None) -> Any:
        """The dense ``U @ V`` (float32 accumulation) in ``dtype``; the bias is in :meth:`factors`."""
        base.check_as_kind(as_kind)
        u = np.asarray(self.u.decode(as_kind="numpy"), dtype=np.float32)
        v = np.asarray(self.v.decode(as_kind="numpy"), dtype=np.float32)
        dense = (u @ v).astype(dtype_from_name(self.dtype))
        return base.deliver(dense, self.kind, self.device, as_kind, device)


def from_factors(
    u: Any, v: Any, bias: Any = None, *, codec: str = "auto", dtype: str | None = None
) -> LowRankTensor:
    """Store the factors ``u`` (``d_out × r``) and ``v`` (``r × d_in``) losslessly (numpy or torch;
    the dense product's dtype is ``dtype`` or ``u``'s)."""
    u_arr, kind, device = to_numpy(u)
    v_arr, _, _ = to_numpy(v)
    if u_arr.ndim != 2 or v_arr.ndim != 2 or u_arr.shape[1] != v_arr.shape[0] or u_arr.shape[1] < 1:
        raise InvalidArgumentError(
            f"factors must be (d_out, r) and (r, d_in), got {u_arr.shape} and {v_arr.shape}"
        )
    name = dtype or dtype_name(u_arr.dtype)
    if name not in FLOAT_DTYPES or dtype_name(v_arr.dtype) not in FLOAT_DTYPES:
        raise InvalidArgumentError("low-rank factors and their product must be floating point")
    d_out, rank = u_arr.shape
    parts = [compress(u_arr, codec), compress(v_arr, codec)]
    b = None
    if bias is not None:
        b_arr, _, _ = to_numpy(bias)
        if b_arr.shape != (d_out,) or dtype_name(b_arr.dtype) not in FLOAT_DTYPES:
            raise InvalidArgumentError(f"bias must be a float vector of length {d_out}, got {b_arr.shape}")
        b = compress(b_arr, codec)
    return LowRankTensor(name, (d_out, v_arr.shape[1]), rank, parts[0], parts[1], b, kind, device)


def factorize(weight: Any, rank: int, bias: Any = None, *, codec: str = "auto") -> LowRankTensor:
    """Truncated SVD of ``weight``: ``U_r S_r`` and ``V_rᵀ`` (float32 factors), stored losslessly."""
    w, kind, device = to_numpy(weight)
    name = dtype_name(w.dtype)
    if w.ndim != 2 or name not in FLOAT_DTYPES:
        raise InvalidArgumentError(f"factorize takes a float matrix, got {name}{list(w.shape)}")
    if not 1 <= rank <= min(w.shape):
        raise InvalidArgumentError(f"rank must be in [1, {min(w.shape)}], got {rank}")
    left, s, right = np.linalg.svd(np.asarray(w, dtype=np.float64), full_matrices=False)
    u = (left[:, :rank] * s[:rank]).astype(np.float32)
    v = right[:rank].astype(np.float32)
    out = from_factors(
        u, v, None if bias is None else to_numpy(bias)[0].astype(np.float32), codec=codec, dtype=name
    )
    out.kind, out.device = kind, device
    return out


def from_module(module: Any, *, codec: str = "auto") -> LowRankTensor:
    """Store a two-linear factorized layer (``nn.Sequential(first, second)``, as
    :func:`tensorpress.lowrank.rom.rom_factorize` and ``svd_factorize`` build it): ``U`` is the
    second weight, ``V`` the first, the bias the second's; the dense product has their dtype and
    comes back on their device."""
    layers = list(module) if hasattr(module, "__iter__") else []
    if len(layers) != 2 or not all(hasattr(m, "weight") for m in layers):
        raise InvalidArgumentError("from_module takes a Sequential of two linear layers")
    first, second = layers
    if getattr(first, "bias", None) is not None:
        raise InvalidArgumentError("the first linear of a factorized layer has no bias")
    bias = getattr(second, "bias", None)
    return from_factors(
        second.weight.detach(), first.weight.detach(), None if bias is None else bias.detach(), codec=codec
    )


__all__ = ["FACTOR_METHODS", "METHOD", "LowRankTensor", "factorize", "from_factors", "from_module"]
