"""Tender: grouped activation quantization with power-of-two scale ratios and shift-accumulate.

After Lee et al., *Tender: Accelerating Large Language Models via Tensor Decomposition and Runtime
Requantization* (ISCA 2024, arXiv 2406.12930). For the activation ``X`` (tokens × channels) entering
a linear layer, per *chunk* of ``chunk_size`` consecutive tokens:

1. subtract a per-channel bias ``b_c = (max_c + min_c) / 2`` (compensated exactly: the output gets
   ``b · Ŵᵀ`` added back, with ``Ŵ`` the dequantized weight);
2. with ``G`` groups and ``TMax`` the largest channel abs-max, thresholds
   ``t_i = TMax / 2^(G-1-i)``; channel ``c`` joins the smallest group ``i`` with ``t_i >= absmax_c``;
3. group ``i`` has scale ``s_i = t_i / (2^(b-1) - 1) = s_0 · 2^i`` — adjacent scales exactly 2×
   apart — and is quantized to INT-``b``;
4. weights are per-row (output channel) symmetric INT-``b``;
5. the matmul sums group partial products ``P_i = X_q[:, group i] · W_q[:, group i]ᵀ`` from the
   largest scale down with one shift between groups, ``acc = (acc << 1) + P_i``, so
   ``acc = Σ_i 2^i P_i`` and the output is ``s_0 · w_scale · acc`` — one rescale, no
   requantization (:func:`shift_accumulate_matmul`).

Calibration (:func:`calibrate`) runs sample data once and fixes, per layer and per chunk position,
the biases, ``TMax`` and the group index of every channel; at run time values beyond a group's
threshold saturate. ``groups=1, subtract_bias=False`` is the per-tensor static INT-b baseline.

**Choices the paper leaves open** (ours): chunk positions past the last calibrated one reuse the
last calibrated parameters; the calibrated abs-max of a chunk position is taken over all
calibration sequences, around a bias chosen by ``TenderConfig.bias_estimate`` (the authors' code
averages per-sequence midranges: ``"sequence_midrange"``); the LM head is left in float by default
(``skip``), as in the paper's evaluation; the fast forward path dequantizes (``s_g(c) · q``) and
uses a float matmul, which :func:`shift_accumulate_matmul` and the tests prove equal to the integer
pipeline.

**Where we differ from the authors' code, on purpose:** it adds the bias back as ``b · Wᵀ`` with
the *float* weight; we add ``b · Ŵᵀ``. With the float weight the output error of channel ``c`` is
``(x - b_c)(ŵ - w)`` instead of ``x (ŵ - w)``: on a massive-activation channel (``b_c`` in the
hundreds, ordinary tokens near 0) that multiplies the weight's quantization error by hundreds in
every ordinary token — SmolLM2 INT8 perplexity went from +2.1 % to +395 % (benches/RESULTS.md
§10.4). Per-token ``TMax`` (``TenderConfig.token_scale``) is our addition too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tensorpress.errors import InvalidArgumentError

BIAS_ESTIMATES = ("midrange", "sequence_midrange", "mean")
"""How calibration sets the channel bias (see :class:`TenderConfig`)."""


@dataclass(frozen=True)
class TenderConfig:
    """Tender settings: activation/weight bits, number of groups, chunk length (tokens).

    ``groups=8`` by default: SmolLM2's activations span ~2^9 between ordinary channels and its
    massive-activation channels; 4 groups (3 octaves) left INT8 perplexity +329 % calibrated /
    +43 % dynamic in a 4-window check, 8 groups +2.3 % / +0.7 %.

    ``dynamic=True`` computes each chunk's bias, ``TMax`` and groups at run time from the chunk
    itself (per sequence) instead of from calibration: no clipping of values calibration did not
    see, at the cost of a min/max pass per chunk (Tender's VPU can do it; we report both).

    ``headroom`` (calibrated mode) multiplies every calibrated channel abs-max before ``TMax`` and
    the groups are fixed: run-time values up to ``headroom``× what calibration saw are not clipped,
    at the cost of ``log2(headroom)`` bits of resolution in every group. On SmolLM2 INT8 it made
    things worse (+6.5 % → +33 % perplexity at 2×, benches/RESULTS.md §5): resolution, not
    clipping, is what static calibration loses there; the default is 1.

    ``token_scale=True`` (calibrated mode) keeps the calibrated bias and channel groups but gives
    every token (row) its own ``TMax``: the smallest that clips none of its values given the fixed
    groups, ``TMax_t = max_c |x_tc - b_c| · 2^(G-1-g(c))``. The scale ratios stay exact powers of
    two, so the shift-accumulate matmul is unchanged; the single final rescale becomes
    ``s_0,t · w_scale_r`` (an outer product, as in per-token activation quantization). The run-time
    cost is one abs-max per token; the offline part (which channel goes to which group) is what
    calibration still decides. On SmolLM2 INT8 (16 evaluation windows, 8 calibration windows) it
    took the calibrated perplexity increase from +8.4 % to +2.1 %, and to +0.50 % (dynamic
    statistics: +0.69 %) with the mean bias and 256 calibration windows (benches/RESULTS.md §10.4);
    it is off by default so that ``calibrated`` keeps meaning fully static scales.

    ``bias_estimate`` is how calibration sets the channel bias ``b_c`` of a chunk position:
    ``"midrange"``, the midpoint of the smallest and largest value any calibration sequence had
    (the tightest symmetric range: best for a static ``TMax``); ``"sequence_midrange"``, the
    mean over calibration sequences of each sequence's midrange (the paper's calibration);
    ``"mean"``, the channel's mean value. ``None`` (default) picks ``"mean"`` with
    ``token_scale`` and ``"midrange"`` without. Why: a massive-activation channel (one token at
    hundreds, the rest near 0) has its midrange far from every ordinary token, so with per-token
    scales each ordinary token would carry ``|x - b|`` of hundreds in that channel and a coarse
    ``TMax_t``; the mean keeps ordinary tokens near 0 there (SmolLM2 INT8, 8 calibration windows,
    token scales: +2.08 % midrange, +1.88 % sequence midrange, +1.27 % mean). Without token
    scales the spread around the bias sets one static ``TMax``, and the midrange minimizes it
    (sequence midrange: +19.5 % against +8.4 %).
    """

    bits: int = 8
    weight_bits: int = 8
    groups: int = 8
    chunk_size: int = 256
    subtract_bias: bool = True
    dynamic: bool = False
    headroom: float = 1.0
    token_scale: bool = False
    bias_estimate: str | None = None

    def __post_init__(self) -> None:
        if self.bias_estimate is not None and self.bias_estimate not in BIAS_ESTIMATES:
            raise InvalidArgumentError(
                f"bias_estimate must be one of {BIAS_ESTIMATES}, got {self.bias_estimate!r}"
            )
        if not isinstance(self.headroom, (int, float)) or not 1.0 <= self.headroom <= 256.0:
            raise InvalidArgumentError(f"headroom must be a number in [1, 256], got {self.headroom!r}")
        for name in ("bits", "weight_bits"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 16:
                raise InvalidArgumentError(f"{name} must be an int in [2, 16], got {value!r}")
        if not isinstance(self.groups, int) or not 1 <= self.groups <= 16:
            raise InvalidArgumentError(f"groups must be an int in [1, 16], got {self.groups!r}")
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise InvalidArgumentError(f"chunk_size must be a positive int, got {self.chunk_size!r}")

    @property
    def bias_estimate_used(self) -> str:
        """``bias_estimate``, or its default: ``"mean"`` with ``token_scale``, else ``"midrange"``."""
        if self.bias_estimate is not None:
            return self.bias_estimate
        return "mean" if self.token_scale else "midrange"

    @property
    def qmax(self) -> int:
        """Largest activation code, ``2^(bits-1) - 1``."""
        return (1 << (self.bits - 1)) - 1


# --------------------------------------------------------------------------- core math


def group_scales(tmax: torch.Tensor | float, groups: int, bits: int) -> torch.Tensor:
    """Scales ``s_i = TMax / 2^(G-1-i) / (2^(b-1)-1)`` for ``i = 0..G-1`` (last dim).

    Computed as ``s_{G-1} · 2^-(G-1-i)`` so each ratio ``s_{i+1}/s_i`` is exactly 2 in floating
    point (multiplying by a power of two is exact barring under/overflow).
    """
    if groups < 1:
        raise InvalidArgumentError(f"groups must be >= 1, got {groups}")
    tmax_t = torch.as_tensor(tmax, dtype=torch.float32)
    top = tmax_t / ((1 << (bits - 1)) - 1)
    top = torch.where(top > 0, top, torch.ones_like(top))
    powers = torch.exp2(torch.arange(-(groups - 1), 1, dtype=torch.float32))
    return top.unsqueeze(-1) * powers


def assign_groups(absmax: torch.Tensor, tmax: torch.Tensor, groups: int) -> torch.Tensor:
    """Group index per channel: the smallest ``i`` with ``t_i = TMax/2^(G-1-i) >= absmax_c``.

    ``absmax``: ``(..., C)``; ``tmax``: ``(...)``. Channels above ``TMax`` (run-time values beyond
    calibration) go to the last group.
    """
    tmax = torch.where(tmax > 0, tmax, torch.ones_like(tmax)).unsqueeze(-1)
    # Thresholds are TMax times exact powers of two; walking down keeps the smallest group that fits.
    idx = torch.full_like(absmax, groups - 1, dtype=torch.long)
    for i in range(groups - 1, -1, -1):
        threshold = tmax * (2.0 ** -(groups - 1 - i))
        idx = torch.where(absmax <= threshold, torch.full_like(idx, i), idx)
    return idx


def chunk_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(min, max)`` over the rows (tokens) of a ``(rows, C)`` chunk."""
    return x.amin(0), x.amax(0)


def quantize_weight_rows(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row symmetric INT-``bits``: ``(codes int64 (out, in), scale float32 (out,))``."""
    qmax = (1 << (bits - 1)) - 1
    w = w.detach().to(torch.float32)
    scale = w.abs().amax(1) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.clamp(torch.round(w / scale[:, None]), -qmax, qmax).to(torch.int64)
    return codes, scale


@dataclass
class ChunkQuant:
    """Tender quantization of one chunk: codes, group of each channel, scales, bias."""

    codes: torch.Tensor  # (rows, C) int64
    group: torch.Tensor  # (C,) int64
    scales: torch.Tensor  # (G,) float32, s_i = s_0 * 2^i
    bias: torch.Tensor  # (C,) float32

    def dequantize(self) -> torch.Tensor:
        """``s_{g(c)} · q + b`` (the activation the quantized matmul sees, bias restored)."""
        return self.codes.to(torch.float32) * self.scales[self.group] + self.bias


def quantize_chunk(
    x: torch.Tensor,
    config: TenderConfig,
    bias: torch.Tensor | None = None,
    tmax: torch.Tensor | None = None,
    group: torch.Tensor | None = None,
) -> ChunkQuant:
    """Quantize a ``(rows, C)`` chunk. Bias, ``TMax`` and groups come from calibration when given,
    else from the chunk itself (dynamic)."""
    x = x.detach().to(torch.float32)
    if bias is None:
        lo, hi = chunk_stats(x)
        bias = (hi + lo) / 2 if config.subtract_bias else torch.zeros_like(lo)
    xc = x - bias
    absmax = xc.abs().amax(0)
    if tmax is None:
        tmax = absmax.max()
    if group is None:
        group = assign_groups(absmax, tmax, config.groups)
    scales = group_scales(tmax, config.groups, config.bits)
    codes = torch.clamp(torch.round(xc / scales[group]), -config.qmax, config.qmax).to(torch.int64)
    return ChunkQuant(codes=codes, group=group, scales=scales, bias=bias)


def group_partial_products(
    codes: torch.Tensor, group: torch.Tensor, wcodes: torch.Tensor, groups: int
) -> list[torch.Tensor]:
    """Integer ``P_i = X_q[:, group i] · W_q[:, group i]ᵀ`` for every group (int64 matmuls)."""
    out = []
    for i in range(groups):
        cols = (group == i).nonzero().flatten()
        out.append(codes[:, cols] @ wcodes[:, cols].T)
    return out


def shift_accumulate(partials: Sequence[torch.Tensor]) -> torch.Tensor:
    """``acc = (acc << 1) + P_i`` from the largest-scale group (last) down to group 0 → ``Σ 2^i P_i``."""
    acc = torch.zeros_like(partials[0])
    for p in reversed(partials):
        acc = (acc << 1) + p
    return acc


def shift_accumulate_matmul(
    chunk: ChunkQuant, wcodes: torch.Tensor, wscale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer-exact Tender matmul of one chunk (without the bias compensation).

    Returns ``(acc, y)``: the int64 accumulator ``Σ_i 2^i P_i`` (in units of ``s_0 · w_scale``) and
    ``y = s_0 · w_scale_row · acc``, the single final rescale.
    """
    partials = group_partial_products(chunk.codes, chunk.group, wcodes, len(chunk.scales))
    acc = shift_accumulate(partials)
    return acc, acc.to(torch.float64) * (chunk.scales[0].double() * wscale.double())


# --------------------------------------------------------------------------- torch module


class TenderLinear(nn.Module):
    """``nn.Linear`` running Tender: calibrated grouped INT activations, per-row INT weights.

    Modes: ``"calibrate"`` runs in float and records per-chunk-position channel min/max;
    ``"quantized"`` (after :meth:`finalize`) runs Tender. ``integer=True`` makes the forward use the
    integer shift-accumulate pipeline (slow, exact); the default dequantize-and-matmul path is the
    same arithmetic (see tests).
    """

    weight_codes: torch.Tensor
    weight_scale: torch.Tensor
    weight_dq: torch.Tensor
    chunk_bias: torch.Tensor
    chunk_tmax: torch.Tensor
    chunk_group: torch.Tensor

    def __init__(self, linear: nn.Linear, config: TenderConfig) -> None:
        super().__init__()
        self.config = config
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight  # kept for calibration-time float forward
        self.bias = linear.bias
        wcodes, wscale = quantize_weight_rows(linear.weight, config.weight_bits)
        self.register_buffer("weight_codes", wcodes.to(torch.int32))
        self.register_buffer("weight_scale", wscale)
        self.register_buffer("weight_dq", wcodes.to(torch.float32) * wscale[:, None], persistent=False)
        self.mode = "calibrate"
        self.integer = False
        self._lo: list[torch.Tensor] = []
        self._hi: list[torch.Tensor] = []
        # Per chunk position: sums of per-sequence midranges and of all values, and their counts.
        self._mid_sum: list[torch.Tensor] = []
        self._value_sum: list[torch.Tensor] = []
        self._sequences: list[int] = []
        self._values: list[int] = []
        self.register_buffer("chunk_bias", torch.zeros(0, self.in_features))
        self.register_buffer("chunk_tmax", torch.zeros(0))
        self.register_buffer("chunk_group", torch.zeros(0, self.in_features, dtype=torch.long))

    # -- calibration
    def _observe(self, x: torch.Tensor) -> None:
        rows = x.detach().reshape(-1, x.shape[-2], x.shape[-1]).to(torch.float32)
        seq = rows.shape[1]
        for k, start in enumerate(range(0, seq, self.config.chunk_size)):
            part = rows[:, start : start + self.config.chunk_size]
            seq_lo, seq_hi = part.amin(1), part.amax(1)  # (sequences, C)
            lo, hi, mid = seq_lo.amin(0), seq_hi.amax(0), ((seq_lo + seq_hi) / 2).sum(0)
            total = part.sum((0, 1), dtype=torch.float64)
            if k < len(self._lo):
                self._lo[k] = torch.minimum(self._lo[k], lo)
                self._hi[k] = torch.maximum(self._hi[k], hi)
                self._mid_sum[k] = self._mid_sum[k] + mid
                self._value_sum[k] = self._value_sum[k] + total
                self._sequences[k] += part.shape[0]
                self._values[k] += part.shape[0] * part.shape[1]
            else:
                self._lo.append(lo)
                self._hi.append(hi)
                self._mid_sum.append(mid)
                self._value_sum.append(total)
                self._sequences.append(part.shape[0])
                self._values.append(part.shape[0] * part.shape[1])

    def finalize(self) -> None:
        """Fix per-chunk-position bias, ``TMax`` and group indices from the calibration data."""
        if not self._lo:
            raise InvalidArgumentError("TenderLinear.finalize() before any calibration data was seen")
        lo, hi = torch.stack(self._lo), torch.stack(self._hi)
        if not self.config.subtract_bias:
            bias = torch.zeros_like(lo)
        elif self.config.bias_estimate_used == "sequence_midrange":
            bias = torch.stack(self._mid_sum) / torch.tensor(self._sequences, dtype=torch.float32)[:, None]
        elif self.config.bias_estimate_used == "mean":
            counts = torch.tensor(self._values, dtype=torch.float64)[:, None]
            bias = (torch.stack(self._value_sum) / counts).to(torch.float32)
        else:
            bias = (hi + lo) / 2
        # Abs-max around the chosen bias over everything calibration saw: nothing it saw clips.
        absmax = torch.maximum(hi - bias, bias - lo) * self.config.headroom
        tmax = absmax.amax(-1)
        self.chunk_bias, self.chunk_tmax = bias, tmax
        self.chunk_group = assign_groups(absmax, tmax, self.config.groups)
        self._lo, self._hi, self._mid_sum, self._value_sum = [], [], [], []
        self._sequences, self._values = [], []
        self.mode = "quantized"

    # -- run
    def _chunk_params(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = min(k, self.chunk_tmax.shape[0] - 1)
        return self.chunk_bias[k], self.chunk_tmax[k], self.chunk_group[k]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "calibrate" and not self.config.dynamic:
            self._observe(x)
            return nn.functional.linear(x, self.weight, self.bias)
        shape = x.shape
        rows = x.reshape(-1, shape[-2], shape[-1]) if x.dim() > 1 else x.reshape(1, 1, -1)
        outs = []
        for k, start in enumerate(range(0, rows.shape[1], self.config.chunk_size)):
            outs.append(self._run_chunk(rows[:, start : start + self.config.chunk_size].to(torch.float32), k))
        y = torch.cat(outs, dim=1).reshape(*shape[:-1], self.out_features).to(x.dtype)
        return y if self.bias is None else y + self.bias

    def _run_chunk(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """One chunk position ``k`` of every sequence: ``x`` is ``(batch, rows, C)``."""
        cfg = self.config
        if cfg.dynamic:  # per-sequence chunk statistics, computed at run time
            lo, hi = x.amin(1), x.amax(1)
            bias = (hi + lo) / 2 if cfg.subtract_bias else torch.zeros_like(lo)
            absmax = (x - bias[:, None]).abs().amax(1)
            tmax = absmax.amax(-1)
            group = assign_groups(absmax, tmax, cfg.groups)
        else:
            b1, t1, g1 = self._chunk_params(k)
            bias, tmax, group = b1.expand(x.shape[0], -1), t1.expand(x.shape[0]), g1.expand(x.shape[0], -1)
            if cfg.token_scale:
                return self._run_chunk_token_scaled(x, b1, g1)
        scales = group_scales(tmax, cfg.groups, cfg.bits)  # (batch, G)
        channel_scale = torch.gather(scales, 1, group)  # (batch, C)
        codes = torch.clamp(torch.round((x - bias[:, None]) / channel_scale[:, None]), -cfg.qmax, cfg.qmax)
        compensation = (bias @ self.weight_dq.T)[:, None]  # exact bias compensation, once per chunk
        if self.integer:
            wcodes = self.weight_codes.to(torch.int64)
            ys = []
            for b in range(x.shape[0]):
                chunk = ChunkQuant(codes[b].to(torch.int64), group[b], scales[b], bias[b])
                ys.append(shift_accumulate_matmul(chunk, wcodes, self.weight_scale)[1].to(torch.float32))
            return torch.stack(ys) + compensation
        return (codes * channel_scale[:, None]) @ self.weight_dq.T + compensation

    def _run_chunk_token_scaled(
        self, x: torch.Tensor, bias: torch.Tensor, group: torch.Tensor
    ) -> torch.Tensor:
        """Calibrated bias and groups, one ``TMax`` per token (see :class:`TenderConfig`)."""
        cfg = self.config
        xc = x - bias
        shift = torch.exp2((cfg.groups - 1 - group).to(torch.float32))  # exact powers of two
        tmax = (xc.abs() * shift).amax(-1)  # (batch, rows): no value of the token clips
        scales = group_scales(tmax, cfg.groups, cfg.bits)  # (batch, rows, G)
        channel_scale = scales[..., 0:1] * torch.exp2(group.to(torch.float32))  # s_0,t · 2^g(c)
        codes = torch.clamp(torch.round(xc / channel_scale), -cfg.qmax, cfg.qmax)
        compensation = bias @ self.weight_dq.T
        if self.integer:
            wcodes = self.weight_codes.to(torch.int64)
            flat = codes.reshape(-1, codes.shape[-1]).to(torch.int64)
            acc = shift_accumulate(group_partial_products(flat, group, wcodes, cfg.groups))
            s0 = scales[..., 0].reshape(-1, 1).double()
            y = (acc.to(torch.float64) * s0 * self.weight_scale.double()).to(torch.float32)
            return y.reshape(*codes.shape[:-1], -1) + compensation
        return (codes * channel_scale) @ self.weight_dq.T + compensation

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"{self.in_features}, {self.out_features}, a{c.bits}w{c.weight_bits}, groups={c.groups}, "
            f"chunk={c.chunk_size}, bias={c.subtract_bias}, token_scale={c.token_scale}, mode={self.mode}"
        )


def convert_model(
    model: nn.Module,
    config: TenderConfig | None = None,
    skip: Iterable[str] = ("lm_head",),
    include: Callable[[str, nn.Linear], bool] | None = None,
) -> dict[str, TenderLinear]:
    """Replace every ``nn.Linear`` (except names ending with one in ``skip``, or rejected by
    ``include``) by a :class:`TenderLinear` in calibration mode. Returns them by name; run
    :func:`calibrate` next."""
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"model must be a torch nn.Module, got {type(model).__name__}")
    config = TenderConfig() if config is None else config
    skip = tuple(skip)
    targets = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear)
        and not (skip and name.endswith(skip))
        and (include is None or include(name, m))
    ]
    converted: dict[str, TenderLinear] = {}
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        new = TenderLinear(linear, config)
        setattr(parent, child, new)
        converted[name] = new
    return converted


def calibrate(model: nn.Module, batches: Iterable[dict[str, Any]]) -> None:
    """Run calibration ``batches`` (keyword arguments of ``model``) through a model converted by
    :func:`convert_model`, then fix every :class:`TenderLinear`'s groups (switch to quantized)."""
    layers = [m for m in model.modules() if isinstance(m, TenderLinear)]
    if not layers:
        raise InvalidArgumentError("model has no TenderLinear; call convert_model first")
    for m in layers:
        m.mode = "calibrate"
    if all(m.config.dynamic for m in layers):  # nothing to calibrate
        for m in layers:
            m.mode = "quantized"
        return
    n = 0
    with torch.no_grad():
        for batch in batches:
            model(**batch)
            n += 1
    if n == 0:
        raise InvalidArgumentError("calibrate() needs at least one batch")
    for m in layers:
        if m.config.dynamic:
            m.mode = "quantized"
        else:
            m.finalize()


def quantize_model(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    config: TenderConfig | None = None,
    skip: Iterable[str] = ("lm_head",),
) -> dict[str, TenderLinear]:
    """:func:`convert_model` then :func:`calibrate`: the one-call way to run a model with Tender."""
    layers = convert_model(model, config, skip)
    calibrate(model, batches)
    return layers


__all__ = [
    "ChunkQuant",
    "TenderConfig",
    "TenderLinear",
    "assign_groups",
    "calibrate",
    "chunk_stats",
    "convert_model",
    "group_partial_products",
    "group_scales",
    "quantize_chunk",
    "quantize_model",
    "quantize_weight_rows",
    "shift_accumulate",
    "shift_accumulate_matmul",
]
