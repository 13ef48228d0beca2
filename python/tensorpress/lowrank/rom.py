"""LLM-ROM: reduced-order modelling of transformer linears from their output statistics.

After Chavan et al., *Rethinking Compression: Reduced Order Modelling of Latent Features in Large
Language Models* (arXiv 2312.07046). For each ``nn.Linear`` chosen for compression, in forward
order and *sequentially* (each layer's calibration outputs are produced by the model whose earlier
layers are already compressed):

1. run the calibration data and accumulate ``C = YᵀY`` of the layer outputs ``Y`` (tokens × d_out)
   in float64, batch by batch — memory is one ``d_out × d_out`` matrix, never all outputs;
2. ``torch.linalg.eigh(C)``, eigenvalues sorted descending, keep the top-``r`` eigenvectors ``V_r``
   with ``r = ⌊β · d_in · d_out / (d_in + d_out)⌋`` (:func:`rank_for_budget`);
3. replace ``W`` by ``nn.Sequential(Linear(d_in, r) with W1 = V_rᵀ W, Linear(r, d_out) with
   W2 = V_r)`` and the bias ``b`` by ``V_r V_rᵀ b`` (on the second linear).

:func:`plan_budget` picks the last ``n`` transformer blocks and ``β`` for a global parameter budget
(the paper keeps 80 % of LLaMA-7B by compressing its last 12 of 32 blocks at β = 0.46).
:func:`svd_compress` is the weight-space baseline: truncated SVD of ``W`` at the same ranks, so
exactly the same parameter count.

Choices the paper leaves open (ours): the covariance is the *uncentered* second moment ``YᵀY`` (the
projection then minimizes the reconstruction error of ``Y`` itself, mean included); padded tokens
are excluded via the ``attention_mask`` of each batch when present; a layer whose rank would not
save parameters (``r · (d_in + d_out) >= d_in · d_out``) is left alone; block inputs are captured
once and blocks run one at a time, so only the chosen blocks (not the whole model) are re-run per
layer.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from tensorpress.errors import InvalidArgumentError


def rank_for_budget(d_in: int, d_out: int, beta: float) -> int:
    """``r = ⌊β · d_in · d_out / (d_in + d_out)⌋``: the rank at which the two factors hold a
    fraction ``β`` of the original ``d_in · d_out`` weights. At least 1."""
    if d_in < 1 or d_out < 1:
        raise InvalidArgumentError(f"dimensions must be positive, got {d_in}x{d_out}")
    if not 0 < beta <= 1:
        raise InvalidArgumentError(f"beta must be in (0, 1], got {beta}")
    return max(1, math.floor(beta * d_in * d_out / (d_in + d_out)))


def factorized_parameters(d_in: int, d_out: int, rank: int, bias: bool) -> int:
    """Parameters of the two-linear replacement: ``r·d_in + d_out·r`` (+ ``d_out`` bias)."""
    return rank * (d_in + d_out) + (d_out if bias else 0)


def _factorized(
    w1: torch.Tensor, w2: torch.Tensor, bias: torch.Tensor | None, like: nn.Linear
) -> nn.Sequential:
    first = nn.Linear(w1.shape[1], w1.shape[0], bias=False)
    second = nn.Linear(w2.shape[1], w2.shape[0], bias=bias is not None)
    dtype, device = like.weight.dtype, like.weight.device
    first.weight = nn.Parameter(w1.to(dtype=dtype, device=device).contiguous(), requires_grad=False)
    second.weight = nn.Parameter(w2.to(dtype=dtype, device=device).contiguous(), requires_grad=False)
    if bias is not None:
        second.bias = nn.Parameter(bias.to(dtype=dtype, device=device), requires_grad=False)
    return nn.Sequential(first, second)


def rom_factorize(linear: nn.Linear, covariance: torch.Tensor, rank: int) -> nn.Sequential:
    """Two-linear ROM replacement of ``linear`` from its output second moment ``YᵀY``."""
    d_out = linear.out_features
    if covariance.shape != (d_out, d_out):
        raise InvalidArgumentError(f"covariance must be {d_out}x{d_out}, got {tuple(covariance.shape)}")
    if not 1 <= rank <= d_out:
        raise InvalidArgumentError(f"rank must be in [1, {d_out}], got {rank}")
    evals, evecs = torch.linalg.eigh(covariance.to(torch.float64))
    order = torch.argsort(evals, descending=True)  # eigh returns ascending order
    v = evecs[:, order[:rank]]  # (d_out, r)
    w = linear.weight.detach().to(torch.float64)
    b = None if linear.bias is None else v @ (v.T @ linear.bias.detach().to(torch.float64))
    return _factorized(v.T @ w, v, b, linear)


def svd_factorize(linear: nn.Linear, rank: int) -> nn.Sequential:
    """Weight-space baseline: ``W ≈ U_r S_r V_rᵀ`` as ``W1 = S_r V_rᵀ``, ``W2 = U_r``; bias kept."""
    if not 1 <= rank <= min(linear.in_features, linear.out_features):
        raise InvalidArgumentError(f"rank must be in [1, {min(linear.in_features, linear.out_features)}]")
    u, s, vh = torch.linalg.svd(linear.weight.detach().to(torch.float64), full_matrices=False)
    bias = None if linear.bias is None else linear.bias.detach().to(torch.float64)
    return _factorized(s[:rank, None] * vh[:rank], u[:, :rank], bias, linear)


@dataclass
class Budget:
    """Which blocks to compress, at which β, and the resulting parameter counts."""

    block_indices: list[int]
    beta: float
    original_parameters: int
    compressed_parameters: int
    ranks: dict[str, int] = field(default_factory=dict)

    @property
    def kept_fraction(self) -> float:
        """Compressed / original parameter count (tied weights counted once)."""
        return self.compressed_parameters / self.original_parameters


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters (``parameters()`` already skips tied duplicates)."""
    return sum(p.numel() for p in model.parameters())


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The repeated blocks: the longest ``nn.ModuleList`` (Llama ``model.layers``, BERT
    ``encoder.layer``)."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise InvalidArgumentError("model has no nn.ModuleList of transformer blocks")
    return max(lists, key=len)


def _block_linears(block: nn.Module, prefix: str) -> dict[str, nn.Linear]:
    return {
        f"{prefix}.{name}" if name else prefix: m
        for name, m in block.named_modules()
        if isinstance(m, nn.Linear)
    }


def _plan_ranks(model: nn.Module, indices: Sequence[int], beta: float) -> tuple[dict[str, int], int]:
    """Ranks of the compressible linears of the chosen blocks, and the parameters saved."""
    blocks = transformer_blocks(model)
    ranks: dict[str, int] = {}
    saved = 0
    for i in indices:
        for name, lin in _block_linears(blocks[i], str(i)).items():
            r = rank_for_budget(lin.in_features, lin.out_features, beta)
            new = factorized_parameters(lin.in_features, lin.out_features, r, False)
            if new < lin.in_features * lin.out_features:
                ranks[name] = r
                saved += lin.in_features * lin.out_features - new
    return ranks, saved


def plan_budget(
    model: nn.Module, keep: float, *, n_blocks: int | None = None, beta: float | None = None
) -> Budget:
    """Choose the last blocks and β so that about ``keep`` of the parameters remain.

    Give ``n_blocks`` (β is solved for), ``beta`` (the fewest last blocks whose compression at β
    reaches the budget are taken, then β is re-solved for them), or neither (``beta=0.5``). The
    floor in the rank rule keeps slightly less than ``keep`` (under one rank per layer);
    :attr:`Budget.kept_fraction` is the exact figure.
    """
    if not 0 < keep < 1:
        raise InvalidArgumentError(f"keep must be in (0, 1), got {keep}")
    if n_blocks is not None and beta is not None:
        raise InvalidArgumentError("give n_blocks or beta, not both")
    blocks = transformer_blocks(model)
    total = count_parameters(model)
    to_remove = (1 - keep) * total
    linear_params = [sum(m.weight.numel() for m in _block_linears(b, "").values()) for b in blocks]
    if n_blocks is None:
        beta0 = 0.5 if beta is None else beta
        if not 0 < beta0 < 1:
            raise InvalidArgumentError(f"beta must be in (0, 1), got {beta0}")
        removed, n_blocks = 0.0, 0
        while removed < to_remove and n_blocks < len(blocks):
            n_blocks += 1
            removed += (1 - beta0) * linear_params[-n_blocks]
    if not 1 <= n_blocks <= len(blocks):
        raise InvalidArgumentError(f"n_blocks must be in [1, {len(blocks)}], got {n_blocks}")
    indices = list(range(len(blocks) - n_blocks, len(blocks)))
    available = sum(linear_params[i] for i in indices)
    solved = 1 - to_remove / available
    if solved <= 0:
        raise InvalidArgumentError(
            f"keeping {keep:.0%} needs more than the last {n_blocks} blocks can give; use more blocks"
        )
    ranks, saved = _plan_ranks(model, indices, solved)
    return Budget(indices, solved, total, total - saved, ranks)


@dataclass
class CompressionResult:
    """What :func:`rom_compress` / :func:`svd_compress` did."""

    budget: Budget
    replaced: list[str]
    parameters_before: int
    parameters_after: int


class _StopForwardError(Exception):
    """Raised by a hook to end a forward pass once the needed tensor was seen."""


def _capture_block_inputs(
    model: nn.Module, block: nn.Module, batches: Iterable[dict[str, Any]]
) -> list[tuple[tuple, dict, torch.Tensor | None]]:
    """Run the model up to ``block`` for every batch; keep (args, kwargs, token mask)."""
    captured: list[tuple[tuple, dict, torch.Tensor | None]] = []
    mask: list[torch.Tensor | None] = [None]

    def pre_hook(_m: nn.Module, args: tuple, kwargs: dict) -> None:
        # A KV cache would grow on every re-run of the block: drop it.
        kwargs = {k: (None if "past_key" in k else v) for k, v in kwargs.items() if k != "use_cache"}
        captured.append((args, kwargs, mask[0]))
        raise _StopForwardError

    handle = block.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        with torch.no_grad():
            for batch in batches:
                mask[0] = batch.get("attention_mask")
                with contextlib.suppress(_StopForwardError):
                    model(**batch)
    finally:
        handle.remove()
    if not captured:
        raise InvalidArgumentError("no calibration batches were given")
    return captured


def _run_block(block: nn.Module, args: tuple, kwargs: dict) -> Any:
    out = block(*args, **kwargs)
    return out[0] if isinstance(out, tuple) else out


def _with_hidden(args: tuple, kwargs: dict, hidden: torch.Tensor) -> tuple[tuple, dict]:
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


def _output_moment(
    block: nn.Module, linear: nn.Module, inputs: list[tuple[tuple, dict, torch.Tensor | None]]
) -> torch.Tensor:
    """``YᵀY`` (float64) of ``linear``'s outputs over all calibration tokens, one batch at a time."""
    acc: list[torch.Tensor] = []
    token_mask: list[torch.Tensor | None] = [None]

    def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        y = out.detach().reshape(-1, out.shape[-1]).to(torch.float64)
        if token_mask[0] is not None and token_mask[0].numel() == y.shape[0]:
            y = y[token_mask[0].reshape(-1).bool()]
        moment = y.T @ y
        if acc:
            acc[0] += moment
        else:
            acc.append(moment)
        raise _StopForwardError  # the rest of the block is not needed for this layer

    handle = linear.register_forward_hook(hook)
    try:
        with torch.no_grad():
            for args, kwargs, mask in inputs:
                token_mask[0] = mask
                with contextlib.suppress(_StopForwardError):
                    _run_block(block, args, kwargs)
    finally:
        handle.remove()
    if not acc:
        raise InvalidArgumentError("a target linear was not reached by the calibration forward pass")
    return acc[0]


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def rom_compress(
    model: nn.Module,
    batches: Sequence[dict[str, Any]],
    budget: Budget,
    progress: bool = True,
) -> CompressionResult:
    """Compress ``model`` in place with LLM-ROM following ``budget`` (from :func:`plan_budget`).

    ``batches`` are keyword arguments of ``model`` (``input_ids``, optionally ``attention_mask``).
    Inputs of the first chosen block are captured once; then, block by block and layer by layer in
    forward order, each layer's output moment is accumulated with all earlier layers already
    compressed, the layer is replaced, and the block's (compressed) outputs feed the next block.
    """
    if not budget.block_indices:
        raise InvalidArgumentError("budget selects no blocks")
    blocks = transformer_blocks(model)
    before = count_parameters(model)
    model.eval()
    inputs = _capture_block_inputs(model, blocks[budget.block_indices[0]], batches)
    replaced: list[str] = []
    bar = tqdm(total=len(budget.ranks), desc="LLM-ROM layers", disable=not progress)
    for idx in budget.block_indices:
        block = blocks[idx]
        for name, linear in _block_linears(block, str(idx)).items():
            if name not in budget.ranks:
                continue
            moment = _output_moment(block, linear, inputs)
            _replace(block, name.partition(".")[2], rom_factorize(linear, moment, budget.ranks[name]))
            replaced.append(name)
            bar.update(1)
        with torch.no_grad():  # compressed outputs become the next block's inputs
            inputs = [(*_with_hidden(a, k, _run_block(block, a, k)), m) for a, k, m in inputs]
    bar.close()
    return CompressionResult(budget, replaced, before, count_parameters(model))


def svd_compress(model: nn.Module, budget: Budget, progress: bool = True) -> CompressionResult:
    """Weight-space truncated-SVD baseline at exactly the ranks of ``budget`` (same parameters as
    ROM)."""
    blocks = transformer_blocks(model)
    before = count_parameters(model)
    replaced: list[str] = []
    for idx in tqdm(budget.block_indices, desc="SVD blocks", disable=not progress):
        for name, linear in _block_linears(blocks[idx], str(idx)).items():
            if name in budget.ranks:
                _replace(blocks[idx], name.partition(".")[2], svd_factorize(linear, budget.ranks[name]))
                replaced.append(name)
    return CompressionResult(budget, replaced, before, count_parameters(model))


__all__ = [
    "Budget",
    "CompressionResult",
    "count_parameters",
    "factorized_parameters",
    "plan_budget",
    "rank_for_budget",
    "rom_compress",
    "rom_factorize",
    "svd_compress",
    "svd_factorize",
    "transformer_blocks",
]
