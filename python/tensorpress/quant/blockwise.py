"""Blockwise symmetric/unsigned integer quantization of torch tensors (the BCT primitive).

A *block* is ``block_size`` contiguous values along the last dimension; each block has its own scale
``s = absmax / qmax`` (``qmax = 2^(bits-1) - 1`` signed, ``2^bits - 1`` unsigned) and codes
``q = clamp(round(x / s), -qmax, qmax)`` (``[0, qmax]`` unsigned). ``block_size=None`` means one
scale for the whole tensor (the per-tensor baseline). A last dimension that is not a multiple of
``block_size`` ends in one shorter block (zero-padded internally, which leaves its absmax unchanged;
it still costs a whole scale in :func:`storage_bits`).

Scale formats (stored cost per block is counted by :func:`storage_bits`):

- ``"fp16"`` (16 bits): the scale is rounded to float16 *upwards* if needed, so no code overflows.
- ``"pow2"`` (8 bits): the scale is the next power of two ``2^ceil(log2(absmax/qmax))``, stored as
  an int8 exponent; requantization is then a shift. Costs up to 1 bit of resolution per block.

An all-zero block gets scale 1 (its codes are 0 either way).

Asymmetric blocks (:func:`quantize_asymmetric`, for weights): codes ``[0, 2^bits-1]`` on the grid
``offset + s·q`` from the block minimum to its maximum (``s = (max-min)/(2^bits-1)``), the offset
stored as float16 (:data:`OFFSET_BITS` more per block). This is the grid of GGUF's Q4_1/Q5_1 and of
GPTQ/HQQ's asymmetric groups: 2^bits levels where the symmetric grid has 2^bits - 1 around zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from tensorpress.errors import InvalidArgumentError

ScaleFormat = Literal["fp16", "pow2"]
SCALE_BITS: dict[str, int] = {"fp16": 16, "pow2": 8}
_FP16_MAX = 65504.0
OFFSET_BITS = 16
"""Stored bits of an asymmetric block's offset (float16)."""


def check_quant_args(bits: int, block_size: int | None, scale_format: str) -> None:
    """Raise :class:`InvalidArgumentError` unless ``2 <= bits <= 16``, ``block_size`` is ``None`` or
    positive and ``scale_format`` is known."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 16:
        raise InvalidArgumentError(f"bits must be an int in [2, 16], got {bits!r}")
    if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
        raise InvalidArgumentError(f"block_size must be a positive int or None, got {block_size!r}")
    if scale_format not in SCALE_BITS:
        raise InvalidArgumentError(f"scale_format must be one of {sorted(SCALE_BITS)}, got {scale_format!r}")


def qmax_for(bits: int, unsigned: bool = False) -> int:
    """Largest code magnitude: ``2^bits - 1`` unsigned, ``2^(bits-1) - 1`` signed (symmetric)."""
    return (1 << bits) - 1 if unsigned else (1 << (bits - 1)) - 1


def _blocks(x: torch.Tensor, block_size: int | None) -> tuple[torch.Tensor, int]:
    """View ``x`` as ``(..., n_blocks, block)`` with zero padding to a whole block; returns the
    padding so the caller can strip it."""
    if block_size is None:
        return x.reshape(1, -1), 0
    last = x.shape[-1]
    pad = (-last) % block_size
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    return x.reshape(*x.shape[:-1], -1, block_size), pad


def _scales(absmax: torch.Tensor, qmax: int, scale_format: str) -> torch.Tensor:
    raw = absmax / qmax
    if scale_format == "pow2":
        scale = torch.exp2(torch.ceil(torch.log2(raw.clamp_min(2.0**-126))))
    else:
        scale = raw.clamp(max=_FP16_MAX).to(torch.float16).to(torch.float32)
        # Round up to the next fp16 value where rounding went down, so |x|/scale <= qmax holds.
        low = scale < raw
        if bool(low.any()):
            up = torch.nextafter(scale.to(torch.float16), torch.tensor(math.inf, dtype=torch.float16))
            scale = torch.where(low, up.to(torch.float32), scale)
    return torch.where(absmax > 0, scale, torch.ones_like(scale))


@dataclass
class QuantizedTensor:
    """Integer codes (int8 for ``bits <= 8``, else int16/int32) plus per-block float32 scales."""

    codes: torch.Tensor
    scales: torch.Tensor
    shape: tuple[int, ...]
    bits: int
    block_size: int | None
    scale_format: str
    unsigned: bool = False
    offsets: torch.Tensor | None = None  # per block (asymmetric codes), same shape as ``scales``

    def dequantize(self) -> torch.Tensor:
        """``codes * scale (+ offset)`` per block, in float32, with the original shape."""
        blocks, pad = _blocks(self.codes.to(torch.float32), self.block_size)
        values = blocks * self.scales.unsqueeze(-1)
        if self.offsets is not None:
            values = values + self.offsets.unsqueeze(-1)
        out = values.reshape(*self.codes.shape[:-1], -1)
        if pad:
            out = out[..., : self.shape[-1]]
        return out.reshape(self.shape)

    @property
    def n_blocks(self) -> int:
        """Number of scales stored."""
        return self.scales.numel()

    def storage_bits(self) -> int:
        """Packed size in bits: ``bits`` per value plus one stored scale (and offset) per block."""
        bits = storage_bits(math.prod(self.shape), self.bits, self.block_size, self.scale_format, self.shape)
        return bits if self.offsets is None else bits + OFFSET_BITS * self.n_blocks


def storage_bits(
    numel: int, bits: int, block_size: int | None, scale_format: str, shape: tuple[int, ...] | None = None
) -> int:
    """Packed size of a blockwise-quantized tensor: ``numel * bits`` plus ``SCALE_BITS`` per block
    (blocks run along the last dimension of ``shape``; a partial last block still costs a scale)."""
    if block_size is None:
        n_blocks = 1
    elif shape:
        n_blocks = math.prod(shape[:-1]) * math.ceil(shape[-1] / block_size)
    else:
        n_blocks = math.ceil(numel / block_size)
    return numel * bits + n_blocks * SCALE_BITS[scale_format]


def quantize(
    x: torch.Tensor,
    bits: int,
    block_size: int | None = 64,
    scale_format: str = "fp16",
    unsigned: bool = False,
) -> QuantizedTensor:
    """Blockwise quantization of ``x`` (blocks of ``block_size`` along the last dim; ``None`` =
    per tensor). ``unsigned`` uses codes ``[0, 2^bits-1]`` for non-negative data (softmax output)."""
    check_quant_args(bits, block_size, scale_format)
    qmax = qmax_for(bits, unsigned)
    xf = x.detach().to(torch.float32)
    blocks, _ = _blocks(xf, block_size)
    absmax = blocks.abs().amax(-1)
    scale = _scales(absmax, qmax, scale_format)
    lo = 0 if unsigned else -qmax
    codes = torch.clamp(torch.round(blocks / scale.unsqueeze(-1)), lo, qmax)
    codes = codes.reshape(*blocks.shape[:-2], -1)
    if block_size is not None and codes.shape[-1] != xf.shape[-1]:
        codes = codes[..., : xf.shape[-1]]
    code_dtype = torch.int8 if bits <= 7 or (bits == 8 and not unsigned) else torch.int32
    return QuantizedTensor(
        codes=codes.reshape(xf.shape).to(code_dtype),
        scales=scale,
        shape=tuple(xf.shape),
        bits=bits,
        block_size=block_size,
        scale_format=scale_format,
        unsigned=unsigned,
    )


def quantize_asymmetric(
    x: torch.Tensor, bits: int, block_size: int | None = 32, scale_format: str = "fp16"
) -> QuantizedTensor:
    """Blockwise min–max quantization: ``q = clamp(round((x - offset) / s), 0, 2^bits - 1)`` with
    ``offset`` = the block minimum (float16) and ``s = (max - offset) / (2^bits - 1)``."""
    check_quant_args(bits, block_size, scale_format)
    qmax = qmax_for(bits, unsigned=True)
    xf = x.detach().to(torch.float32)
    blocks, pad = _blocks(xf, block_size)
    if pad and block_size is not None:
        # Zero padding would widen the last block's range: repeat its last real value instead.
        blocks = blocks.reshape(*blocks.shape[:-2], -1)
        last = xf.shape[-1]
        blocks[..., last:] = blocks[..., last - 1 : last]
        blocks = blocks.reshape(*blocks.shape[:-1], -1, block_size)
    offset = blocks.amin(-1).clamp(-_FP16_MAX, _FP16_MAX).to(torch.float16).to(torch.float32)
    span = (blocks.amax(-1) - offset).clamp_min(0.0)
    if scale_format == "fp16":  # nearest float16 (codes are clamped, so rounding down is harmless)
        scale = (span / qmax).clamp(max=_FP16_MAX).to(torch.float16).to(torch.float32)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    else:
        scale = _scales(span, qmax, scale_format)
    codes = torch.clamp(torch.round((blocks - offset.unsqueeze(-1)) / scale.unsqueeze(-1)), 0, qmax)
    codes = codes.reshape(*blocks.shape[:-2], -1)
    if block_size is not None and codes.shape[-1] != xf.shape[-1]:
        codes = codes[..., : xf.shape[-1]]
    return QuantizedTensor(
        codes=codes.reshape(xf.shape).to(torch.uint8 if bits <= 8 else torch.int32),
        scales=scale,
        shape=tuple(xf.shape),
        bits=bits,
        block_size=block_size,
        scale_format=scale_format,
        unsigned=True,
        offsets=offset,
    )


def fake_quantize(
    x: torch.Tensor,
    bits: int,
    block_size: int | None = 64,
    scale_format: str = "fp16",
    unsigned: bool = False,
) -> torch.Tensor:
    """Quantize then dequantize (same dtype as ``x``): the values an integer pipeline would carry.

    Fast path for activations (no code tensor kept); equal to ``quantize(...).dequantize()``.
    """
    qmax = qmax_for(bits, unsigned)
    xf = x.to(torch.float32)
    blocks, pad = _blocks(xf, block_size)
    scale = _scales(blocks.abs().amax(-1, keepdim=True), qmax, scale_format)
    lo = 0 if unsigned else -qmax
    out = torch.clamp(torch.round(blocks / scale), lo, qmax) * scale
    out = out.reshape(*blocks.shape[:-2], -1) if block_size is not None else out
    if pad:
        out = out[..., : xf.shape[-1]]
    return out.reshape(x.shape).to(x.dtype)


__all__ = [
    "OFFSET_BITS",
    "SCALE_BITS",
    "QuantizedTensor",
    "ScaleFormat",
    "check_quant_args",
    "fake_quantize",
    "qmax_for",
    "quantize",
    "quantize_asymmetric",
    "storage_bits",
]
