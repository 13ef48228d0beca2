"""GPTQ-style error compensation around the video codec: code a matrix in column blocks, and let
the columns not yet coded absorb each block's coding error through the calibration Hessian.

A video codec quantizes a whole frame at once, so GPTQ's column-by-column loop becomes a loop over
``column_blocks`` slices of the (optionally act-ordered) columns. For a linear layer ``y = W x`` with
input Hessian ``H = 2/n Σ x xᵀ`` (damped by ``damp · mean(diag H)``) and ``U`` the upper Cholesky
factor of ``H⁻¹``, after block ``S`` is coded with error ``E = W_S - Ŵ_S`` the remaining columns
``R`` get the optimal (OBS) update for a jointly fixed set,
``W_R -= E · U_SS⁻¹ · U_SR`` — the block form of GPTQ's ``(w - q)/U_jj · U_j,R``.

Each block is an ordinary :class:`~tensorpress.video.VideoTensor` (rotation, column scales, QP or
bit target: whatever :func:`tensorpress.video.encode` takes), so the stored format is unchanged: a
:class:`CompensatedMatrix` is a list of them plus the act-order permutation, all counted in
:attr:`CompensatedMatrix.nbytes`. ``compensate=False`` codes the same blocks without the update
(the ablation that isolates the split's cost).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tensorpress.errors import InvalidArgumentError


@dataclass
class CompensatedMatrix:
    """A matrix coded as column blocks (in ``perm`` order when act-ordered)."""

    parts: list[Any]  # VideoTensor per column block
    perm: np.ndarray | None
    shape: tuple[int, int]

    def decode(self) -> np.ndarray:
        """The decoded ``(rows, cols)`` float32 matrix in the original column order."""
        import tensorpress.video as tv

        out = np.concatenate([tv.decode(p) for p in self.parts], axis=1).astype(np.float32)
        if self.perm is not None:
            out = out[:, np.argsort(self.perm)]
        return out

    @property
    def nbytes(self) -> float:
        """Every part's payload plus the permutation (``ceil(log2 cols)`` bits per column)."""
        perm_bits = 0 if self.perm is None else self.shape[1] * max(1, math.ceil(math.log2(self.shape[1])))
        return sum(p.nbytes for p in self.parts) + perm_bits / 8

    @property
    def bits_per_value(self) -> float:
        return 8 * self.nbytes / (self.shape[0] * self.shape[1])

    @property
    def qps(self) -> list[int]:
        return [p.qp for p in self.parts if p.qp is not None]


def hessian_inverse_factor(hessian: np.ndarray, damp: float = 0.01) -> np.ndarray:
    """Upper Cholesky factor ``U`` of ``(H + damp·mean(diag H)·I)⁻¹`` (``H⁻¹ = Uᵀ U``); zero-diagonal
    (dead) inputs get 1 on the diagonal first, as GPTQ does."""
    h = np.array(hessian, dtype=np.float64, copy=True)
    if h.ndim != 2 or h.shape[0] != h.shape[1] or not np.all(np.isfinite(h)):
        raise InvalidArgumentError(f"hessian must be a finite square matrix, got shape {h.shape}")
    diag = np.diag(h).copy()
    dead = diag == 0
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += damp * float(np.mean(np.diag(h)))
    try:
        lower = np.linalg.cholesky(h)
        inv = np.linalg.inv(lower)
        hinv = inv.T @ inv
        return np.linalg.cholesky(hinv).T
    except np.linalg.LinAlgError as exc:
        raise InvalidArgumentError(f"hessian is not positive definite after damping ({exc})") from exc


def block_update(u: np.ndarray, a: int, b: int) -> np.ndarray:
    """``U_SS⁻¹ · U_SR`` for the block ``S = [a, b)`` and the later columns ``R = [b, cols)``: the
    remaining columns move by ``-E`` times this when block ``S`` is fixed with error ``E``. Equal to
    ``(H⁻¹_SS)⁻¹ H⁻¹_SR`` with ``H⁻¹`` the inverse of ``H`` restricted to the columns from ``a`` on."""
    return np.linalg.solve(u[a:b, a:b], u[a:b, b:])


def encode_compensated(
    weight: np.ndarray,
    hessian: np.ndarray,
    *,
    column_blocks: int = 4,
    act_order: bool = True,
    compensate: bool = True,
    damp: float = 0.01,
    col_scale: np.ndarray | None = None,
    **encode_kwargs: Any,
) -> CompensatedMatrix:
    """Code a 2-D ``weight`` in ``column_blocks`` column slices with
    :func:`tensorpress.video.encode` (``encode_kwargs``: ``qp`` or ``bits_per_value``, ``codec``,
    ``rotate``, ...), compensating each slice's error in the later slices (see the module doc).

    ``act_order`` visits columns by decreasing ``diag H`` (the permutation is stored). ``col_scale``
    (per original column) is permuted and sliced along with the columns.
    """
    import tensorpress.video as tv

    w = np.array(weight, dtype=np.float64, copy=True)
    if w.ndim != 2 or w.size == 0 or not np.all(np.isfinite(w)):
        raise InvalidArgumentError(f"weight must be a finite non-empty 2-D array, got shape {w.shape}")
    rows, cols = w.shape
    if np.shape(hessian) != (cols, cols):
        raise InvalidArgumentError(f"hessian must be {cols}x{cols}, got {np.shape(hessian)}")
    if not isinstance(column_blocks, int) or not 1 <= column_blocks <= cols:
        raise InvalidArgumentError(f"column_blocks must be an int in [1, {cols}], got {column_blocks!r}")
    h = np.asarray(hessian, dtype=np.float64)
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else None
    if perm is not None:
        w, h = w[:, perm], h[np.ix_(perm, perm)]
    cs = None
    if col_scale is not None:
        cs = np.asarray(col_scale, dtype=np.float32)
        if cs.shape != (cols,):
            raise InvalidArgumentError(f"col_scale must have {cols} entries, got shape {cs.shape}")
        cs = cs if perm is None else cs[perm]
    u = hessian_inverse_factor(h, damp) if compensate else None
    w[:, np.diag(h) == 0] = 0.0
    edges = np.linspace(0, cols, column_blocks + 1).round().astype(int)
    parts = []
    for a, b in itertools.pairwise(edges):
        block = w[:, a:b].astype(np.float32)
        part = tv.encode(block, col_scale=None if cs is None else cs[a:b], **encode_kwargs)
        parts.append(part)
        if u is not None and b < cols:
            err = w[:, a:b] - tv.decode(part).astype(np.float64)
            w[:, b:] -= err @ block_update(u, a, b)
    return CompensatedMatrix(parts, perm, (rows, cols))


__all__ = ["CompensatedMatrix", "block_update", "encode_compensated", "hessian_inverse_factor"]
