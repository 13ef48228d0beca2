"""GPTQ: post-training weight quantization with second-order error compensation (reference).

After Frantar et al., *GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers* (ICLR 2023, arXiv 2210.17323), following the authors' reference implementation
(``fasterquant``): for a linear layer ``y = W x`` and the calibration Hessian ``H = 2/n Σ x xᵀ``
(plus ``damp · mean(diag H)`` on the diagonal), the columns of ``W`` are quantized one at a time;
the error of column ``j`` is spread over the not-yet-quantized columns through the upper Cholesky
factor ``U`` of ``H⁻¹`` (``W[:, j:] -= (w_j - q_j)/U_jj · U_j,j:``), in lazy blocks of
``block_size`` columns. With ``act_order`` the columns are visited by decreasing ``diag H``.

The grid is the reference quantizer's: asymmetric, per output row and per group of ``group_size``
consecutive (visited) columns, range ``[min(x, 0), max(x, 0)]``, integer zero point in
``[0, 2^b - 1]``; group parameters are taken when the walk reaches the group's first column, from
the already-updated weights. Our one change: the scale is rounded to fp16 (what is stored).

Storage (:func:`gptq_bits_per_value`): ``b`` bits per value, an fp16 scale and a zero per group
(counted as 16 bits, as for RTN/HQQ, though a ``b``-bit integer suffices), and with ``act_order``
the column permutation (``ceil(log2 cols)`` bits per column).

:func:`sequential_quantize` runs the published model-level procedure: decoder blocks in order, each
block's Hessians measured on calibration inputs that went through the already-quantized blocks
(block inputs cached, as the reference does).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tensorpress.errors import InvalidArgumentError


@dataclass(frozen=True)
class GroupGrid:
    """Asymmetric grid of one group for every row: ``x̂ = scale · (clamp(round(x/scale) + zero) - zero)``."""

    scale: torch.Tensor  # (rows, 1), fp16-representable
    zero: torch.Tensor  # (rows, 1), integers in [0, maxq]
    maxq: int

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Dequantized grid value nearest to each entry of ``x`` (``(rows,)`` or ``(rows, k)``)."""
        scale, zero = (self.scale, self.zero) if x.dim() == 2 else (self.scale[:, 0], self.zero[:, 0])
        q = torch.clamp(torch.round(x / scale) + zero, 0, self.maxq)
        return scale * (q - zero)


def find_grid(w: torch.Tensor, bits: int) -> GroupGrid:
    """The reference GPTQ quantizer's per-row parameters for the columns of ``w`` (``(rows, k)``)."""
    maxq = (1 << bits) - 1
    zeros = torch.zeros(w.shape[0], dtype=w.dtype)
    xmin = torch.minimum(w.amin(1), zeros)
    xmax = torch.maximum(w.amax(1), zeros)
    both_zero = (xmin == 0) & (xmax == 0)
    xmin[both_zero], xmax[both_zero] = -1.0, 1.0
    scale = ((xmax - xmin) / maxq).to(torch.float16).to(w.dtype)
    scale = torch.where(scale > 0, scale, torch.full_like(scale, 2.0**-24))  # fp16 underflow guard
    zero = torch.clamp(torch.round(-xmin / scale), 0, maxq)
    return GroupGrid(scale[:, None], zero[:, None], maxq)


@dataclass
class GPTQResult:
    """Dequantized weight (original column order) and what the quantizer stored."""

    weight: torch.Tensor
    perm: torch.Tensor | None  # visiting order with act_order, else None
    bits_per_value: float


def gptq_bits_per_value(rows: int, cols: int, bits: int, group_size: int, act_order: bool) -> float:
    """Storage per value: codes, fp16 scale and 16-bit zero per group, permutation with act-order."""
    groups_per_row = math.ceil(cols / group_size)
    total = rows * cols * bits + rows * groups_per_row * 32
    if act_order:
        total += cols * max(1, math.ceil(math.log2(max(cols, 2))))
    return total / (rows * cols)


def _check(w: torch.Tensor, bits: int, group_size: int) -> None:
    if w.dim() != 2 or w.numel() == 0:
        raise InvalidArgumentError(f"weight must be a non-empty 2-D tensor, got shape {tuple(w.shape)}")
    if not isinstance(bits, int) or not 2 <= bits <= 8:
        raise InvalidArgumentError(f"bits must be an int in [2, 8], got {bits!r}")
    if not isinstance(group_size, int) or group_size < 1:
        raise InvalidArgumentError(f"group_size must be a positive int, got {group_size!r}")


def quantize_gptq(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    bits: int = 4,
    group_size: int = 128,
    act_order: bool = False,
    damp: float = 0.01,
    block_size: int = 128,
) -> GPTQResult:
    """GPTQ-quantize ``weight`` (``(out, in)``) against the input Hessian ``hessian`` (``(in, in)``).

    ``damp`` is the reference's ``percdamp`` (fraction of the mean diagonal added to it); columns
    whose inputs are always zero (``H_jj = 0``) are set to zero, as in the reference.
    """
    _check(weight, bits, group_size)
    if damp < 0 or not math.isfinite(damp):
        raise InvalidArgumentError(f"damp must be a finite number >= 0, got {damp!r}")
    if block_size < 1:
        raise InvalidArgumentError(f"block_size must be >= 1, got {block_size}")
    rows, cols = weight.shape
    if hessian.shape != (cols, cols):
        raise InvalidArgumentError(f"hessian must be {cols}x{cols}, got {tuple(hessian.shape)}")
    w = weight.detach().to(torch.float64).clone()
    h = hessian.detach().to(torch.float64).clone()
    if not (torch.isfinite(w).all() and torch.isfinite(h).all()):
        raise InvalidArgumentError("weight and hessian must be finite")
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    perm = None
    if act_order:
        perm = torch.argsort(torch.diag(h), descending=True, stable=True)
        w, h = w[:, perm], h[perm][:, perm]
    idx = torch.arange(cols)
    h[idx, idx] += damp * torch.mean(torch.diag(h))
    try:
        hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    except RuntimeError as exc:  # torch.linalg.LinAlgError subclasses RuntimeError
        raise InvalidArgumentError(f"hessian is not positive definite after damping ({exc})") from exc
    if group_size < cols:  # group boundaries must coincide with lazy-block boundaries
        block_size = group_size
    q = torch.zeros_like(w)
    grid = find_grid(w, bits) if group_size >= cols else None
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            if grid is None or (group_size < cols and (i1 + i) % group_size == 0):
                grid = find_grid(w1[:, i : i + group_size], bits)
            col = w1[:, i]
            qc = grid.quantize(col)
            q[:, i1 + i] = qc
            e = (col - qc) / hinv1[i, i]
            w1[:, i:] -= e[:, None] * hinv1[i, i:][None, :]
            err1[:, i] = e
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    if perm is not None:
        q = q[:, torch.argsort(perm)]
    bpv = gptq_bits_per_value(rows, cols, bits, group_size, act_order)
    return GPTQResult(q.to(weight.dtype), perm, bpv)


def quantize_rtn(weight: torch.Tensor, bits: int = 4, group_size: int = 128) -> torch.Tensor:
    """Round-to-nearest on the same grid as :func:`quantize_gptq` (no error compensation)."""
    _check(weight, bits, group_size)
    w = weight.detach().to(torch.float64)
    out = torch.empty_like(w)
    for start in range(0, w.shape[1], group_size):
        part = w[:, start : start + group_size]
        out[:, start : start + group_size] = find_grid(part, bits).quantize(part)
    return out.to(weight.dtype)


def output_error(weight: torch.Tensor, approx: torch.Tensor, hessian: torch.Tensor) -> float:
    """``tr((Ŵ-W) H (Ŵ-W)ᵀ)``: the squared layer-output error GPTQ minimizes (up to the 2/n)."""
    d = (approx - weight).to(torch.float64)
    return float(torch.einsum("ri,ij,rj->", d, hessian.to(torch.float64), d))


class HessianAccumulator:
    """Running ``H = 2/n Σ x xᵀ`` over the rows of every input batch (the reference's ``add_batch``)."""

    def __init__(self, columns: int) -> None:
        self.hessian = torch.zeros(columns, columns, dtype=torch.float64)
        self.samples = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).to(torch.float64)
        n = x.shape[0]
        total = self.samples + n
        self.hessian *= self.samples / total
        x = x * math.sqrt(2.0 / total)
        self.hessian += x.T @ x
        self.samples = total


class _StopForwardError(Exception):
    """Raised by a hook to end a calibration forward once the first block's inputs are captured."""


def sequential_quantize(
    model: nn.Module,
    blocks: Sequence[nn.Module],
    calibration: Iterable[dict[str, Any]],
    quantize: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor],
    progress: Callable[[str], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Quantize every ``nn.Linear`` inside ``blocks`` (in order), GPTQ's model-level procedure.

    The calibration batches (keyword arguments of ``model``) run once up to the first block, whose
    inputs are cached. For block ``k``: run it on the cached inputs, accumulating each linear's
    input Hessian; replace each weight by ``quantize(name, weight, hessian)``; run the *quantized*
    block again to produce the next block's inputs. ``blocks`` must be applied one after another
    to the hidden state (its first positional argument, or the ``hidden_states`` keyword), as in
    transformers decoder stacks. Returns the Hessians' diagonals by linear name.
    """
    batches = list(calibration)
    if not batches:
        raise InvalidArgumentError("sequential_quantize needs at least one calibration batch")
    if not blocks:
        return {}
    names = {id(m): n for n, m in model.named_modules()}
    inputs: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def capture(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        inputs.append((args, kwargs))
        raise _StopForwardError

    handle = blocks[0].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.no_grad():
            for batch in batches:
                with contextlib.suppress(_StopForwardError):
                    model(**batch)
    finally:
        handle.remove()
    diag: dict[str, torch.Tensor] = {}
    for k, block in enumerate(blocks):
        linears = {names[id(m)]: m for m in block.modules() if isinstance(m, nn.Linear)}
        acc = {n: HessianAccumulator(m.in_features) for n, m in linears.items()}
        handles = [m.register_forward_hook(_collector(acc[n])) for n, m in linears.items()]
        try:
            with torch.no_grad():
                for args, kwargs in inputs:
                    block(*args, **kwargs)
        finally:
            for h in handles:
                h.remove()
        with torch.no_grad():
            for n, m in linears.items():
                hessian = acc[n].hessian
                diag[n] = torch.diag(hessian).clone()
                m.weight.copy_(quantize(n, m.weight.detach(), hessian).to(m.weight.dtype))
            inputs = [_next_inputs(block(*args, **kwargs), args, kwargs) for args, kwargs in inputs]
        if progress is not None:
            progress(f"block {k}: {len(linears)} linears quantized")
    return diag


def _next_inputs(
    out: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    hidden = out[0] if isinstance(out, (tuple, list)) else out
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


def _collector(acc: HessianAccumulator) -> Callable[..., None]:
    def hook(_m: nn.Module, args: tuple[Any, ...], _out: Any) -> None:
        acc.add(args[0])

    return hook


__all__ = [
    "GPTQResult",
    "GroupGrid",
    "HessianAccumulator",
    "find_grid",
    "gptq_bits_per_value",
    "output_error",
    "quantize_gptq",
    "quantize_rtn",
    "sequential_quantize",
]
