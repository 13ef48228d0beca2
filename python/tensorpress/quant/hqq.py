"""HQQ: calibration-free weight quantization by half-quadratic optimization of the zero point.

After Badri & Shaji, *Half-Quadratic Quantization of Large Machine Learning Models* (2023), as in the
``hqq`` package's ``optimize_weights_proximal_legacy`` (the package itself is not a dependency):
per group of ``group_size`` consecutive values (row-major), start from min–max asymmetric parameters
(``W_q = round(W·s + z)``, ``s = (2^b-1)/(max-min)``), then alternate

1. ``W_q = clamp(round(W·s + z))``, ``W_r = (W_q - z)/s``;
2. ``W_e = shrink_p(W - W_r, β)`` — the generalized soft-threshold of the ``l_p`` (``p < 1``) error,
   ``sign(x)·relu(|x| - |x|^(p-1)/β)``;
3. ``z = mean(W_q - (W - W_e)·s)`` per group; ``β ← κ·β``,

stopping when the mean absolute error stops falling. The scale stays at its min–max value (the
``hqq`` default). Scale and zero are stored in fp16 (``+32/group_size`` bits per value).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tensorpress.errors import InvalidArgumentError


@dataclass(frozen=True)
class HQQConfig:
    """``hqq``'s defaults for the proximal solver: ``lp_norm=0.7, beta=10, kappa=1.01, iters=20``."""

    bits: int = 4
    group_size: int = 128
    lp_norm: float = 0.7
    beta: float = 10.0
    kappa: float = 1.01
    iters: int = 20

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise InvalidArgumentError(f"bits must be an int in [1, 8], got {self.bits!r}")
        if not isinstance(self.group_size, int) or self.group_size < 1:
            raise InvalidArgumentError(f"group_size must be a positive int, got {self.group_size!r}")
        if not 0 < self.lp_norm <= 1 or self.beta <= 0 or self.kappa < 1 or self.iters < 0:
            raise InvalidArgumentError("need 0 < lp_norm <= 1, beta > 0, kappa >= 1, iters >= 0")

    @property
    def bits_per_value(self) -> float:
        """Codes plus an fp16 scale and an fp16 zero per group."""
        return self.bits + 32 / self.group_size


def _shrink(x: torch.Tensor, beta: float, p: float) -> torch.Tensor:
    return torch.sign(x) * torch.relu(x.abs() - (1.0 / beta) * torch.pow(x.abs() + 1e-8, p - 1))


def quantize_hqq(weight: torch.Tensor, config: HQQConfig | None = None) -> torch.Tensor:
    """HQQ-quantize a 2-D ``weight`` holding a multiple of ``group_size`` values; returns the
    dequantized weight (fp16 scale and zero applied). Groups are ``group_size`` consecutive values
    of the row-major flattened weight, as ``hqq`` (and RTN-g128 in the video benchmarks) does, so
    a group may continue on the next row when the row length is not a multiple of it."""
    cfg = HQQConfig() if config is None else config
    if weight.dim() != 2 or weight.numel() == 0 or weight.numel() % cfg.group_size:
        raise InvalidArgumentError(
            f"weight must be 2-D with a multiple of group_size={cfg.group_size} values, "
            f"got {tuple(weight.shape)}"
        )
    w = weight.detach().to(torch.float32).reshape(-1, cfg.group_size)
    if not torch.isfinite(w).all():
        raise InvalidArgumentError("weight must be finite")
    maxq = float((1 << cfg.bits) - 1)
    lo, hi = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    scale = (maxq / (hi - lo)).clamp(max=2e4)  # hqq's cap for flat groups
    zero = -lo * scale
    beta, best = cfg.beta, float("inf")
    for _ in range(cfg.iters):
        wq = torch.clamp(torch.round(w * scale + zero), 0, maxq)
        wr = (wq - zero) / scale
        we = _shrink(w - wr, beta, cfg.lp_norm)
        zero = torch.mean(wq - (w - we) * scale, dim=1, keepdim=True)
        beta *= cfg.kappa
        err = float((w - wr).abs().mean())
        if err < best:
            best = err
        else:
            break
    wq = torch.clamp(torch.round(w * scale + zero), 0, maxq)
    step = (1.0 / scale).to(torch.float16).to(torch.float32)
    zero16 = zero.to(torch.float16).to(torch.float32)
    return ((wq - zero16) * step).reshape(weight.shape).to(weight.dtype)


__all__ = ["HQQConfig", "quantize_hqq"]
