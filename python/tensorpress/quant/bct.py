"""BCT: blockwise post-training quantization of a whole transformer, no retraining.

After Dong & Chen, *Blockwise Compression of Transformer-based Models without Retraining*
(arXiv 2304.01483). :func:`quantize_model` swaps, in place, every component of a BERT-family
(MiniLM) or Llama-family (SmolLM2) transformers model for a quantized one:

============================  ==============================================================
component                     what runs
============================  ==============================================================
``nn.Embedding``              blockwise int-``weight_bits`` table (lookups are exact codes)
``nn.Linear``                 blockwise int-``weight_bits`` weight, int-``param_bits`` bias;
                              input and output requantized to int-``act_bits``
GELU / SiLU / Tanh            lookup table with linear interpolation on a fixed domain;
                              input and output requantized
``LayerNorm`` / ``*RMSNorm``  integer statistics, ``rsqrt`` from a lookup table (mantissa LUT +
                              exponent shift); int-``param_bits`` gain/bias; output requantized
attention (Q·Kᵀ, Softmax, P·V) a registered attention function: Q, K, V, scores requantized,
                              ``exp`` as ``2^-n · LUT(2^-f)``, probabilities unsigned
                              int-``act_bits``, P·V output requantized
block outputs (residual)      requantized by a forward hook on every transformer block
============================  ==============================================================

Activations carry the *dequantized* values of integer codes (``code * block scale``) in float32:
the arithmetic is what an integer pipeline computes, simulated on CPU with float kernels.

**Choices the paper does not specify** (ours, all configurable in :class:`BCTConfig`):

- Blocks are ``block_size`` (default 64) contiguous values along the last dimension of weights
  (their input dimension), ``act_block_size`` (default 32) along the last dimension of
  activations (hidden/head dimension, key dimension of scores and probabilities) and
  ``residual_block_size`` for block outputs (default: as activations, at ``residual_bits``,
  default ``act_bits``). Codes are symmetric (``±(2^(b-1)-1)``), probabilities unsigned.
  Why 32 and a 4097-entry table: on SmolLM2 W8A8 (16 windows, ``benches/quant_eval.py --sections
  bct_ablation``) 64-blocks with a 1025-entry table cost +1.84 % perplexity, 32-blocks with
  4097 entries +0.60 %; activation block scales are computed at run time and stored nowhere, so
  the storage ratio is unchanged.
- Activation scales are dynamic (computed per block at run time, so no calibration data is
  needed); weight scales are fixed at conversion.
- Scales are stored as float16 (16 bits per block) or as power-of-two int8 exponents (8 bits);
  both costs are counted in :attr:`BCTReport.storage_ratio`.
- ``embedding_bits`` (default: ``weight_bits``) sets the embedding tables apart; with
  ``weight_clip_search`` each weight block's scale is the MSE-best clipped abs-max
  (:func:`quantize_clip_search`, same storage). Both exist for 4-bit weights (their effect on
  SmolLM2 is measured by ``--sections bct_ablation`` of ``benches/quant_eval.py``).
- ``weight_zero_point`` gives weight (and embedding) blocks an asymmetric min–max grid
  (:func:`~tensorpress.quant.blockwise.quantize_asymmetric`: ``2^b`` levels, a float16 offset per
  block, +16 bits per block). It is the grid of GGUF Q4_1 and of GPTQ/HQQ's asymmetric groups, and
  the 4-bit recipe: SmolLM2's decoder weights *are* Q4_1 blocks of 32, which the symmetric grid
  cannot represent (the W4A8 loss in benches/RESULTS.md §10.5) and the asymmetric one reproduces.
- Biases and norm gains/biases (< 0.2 % of the parameters) use ``param_bits`` (default 8), not
  ``weight_bits``: at 4 bits a norm gain error moves every activation of the layer.
- Non-linear ops: GELU on ``[-8, 8]``, SiLU on ``[-16, 16]``, tanh on ``[-8, 8]``, each a table of
  ``lut_size + 1`` entries with linear interpolation, saturating outside (GELU/SiLU → ``x`` above
  and ``0`` below; tanh → ±1). ``exp(x)`` for ``x <= 0`` (after the row max is subtracted) is
  ``2^(-n) · T(f)`` with ``x·log2(e) = -(n + f)`` and ``T`` a table of ``2^-f`` on ``[0, 1]``;
  ``rsqrt(v)`` writes ``v = m · 4^e`` with ``m ∈ [1, 4)`` and uses a table of ``m^-1/2``.
- Rotary position embeddings (Llama) stay in float: Q and K are requantized after them.
- Masked attention positions are excluded from the score block scales (hardware masks first).
- The storage ratio counts every parameter: quantized ones at their bits plus scales, anything
  left unquantized at 32 bits; tied weights (SmolLM2's embedding = LM head) are counted once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tensorpress.errors import InvalidArgumentError
from tensorpress.quant.blockwise import (
    QuantizedTensor,
    check_quant_args,
    fake_quantize,
    qmax_for,
    quantize,
    quantize_asymmetric,
)
from tensorpress.quant.blockwise import _scales as _block_scales  # storage-rounded scales

ATTENTION_NAME = "tensorpress_bct"
"""Name under which the quantized attention function is registered with transformers."""


@dataclass(frozen=True)
class BCTConfig:
    """What to quantize and how (see the module docstring for the defaults' rationale)."""

    weight_bits: int = 8
    act_bits: int = 8
    block_size: int | None = 64
    scale_format: str = "fp16"
    param_bits: int = 8
    lut_size: int = 4096
    quantize_attention: bool = True
    quantize_residual: bool = True
    act_block_size: int | None = 32
    residual_bits: int | None = None
    residual_block_size: int | None = -1
    embedding_bits: int | None = None
    weight_clip_search: bool = False
    weight_zero_point: bool = False

    def __post_init__(self) -> None:
        if self.weight_zero_point and self.weight_clip_search:
            raise InvalidArgumentError("weight_zero_point and weight_clip_search do not combine")
        for bits in (self.weight_bits, self.act_bits, self.param_bits, self.embedding_bits_used):
            check_quant_args(bits, self.block_size, self.scale_format)
        check_quant_args(self.act_bits, self.act_block, self.scale_format)
        check_quant_args(self.residual_bits_used, self.residual_block, self.scale_format)
        if not isinstance(self.lut_size, int) or not 16 <= self.lut_size <= 1 << 16:
            raise InvalidArgumentError(f"lut_size must be an int in [16, 65536], got {self.lut_size!r}")

    @property
    def act_block(self) -> int | None:
        """Block size of activations: ``act_block_size``, or ``block_size`` when it is -1."""
        return self.block_size if self.act_block_size == -1 else self.act_block_size

    @property
    def embedding_bits_used(self) -> int:
        """Bits of embedding tables: ``embedding_bits``, or ``weight_bits``. A table tied to the LM
        head (SmolLM2) is quantized once, so the head gets the same codes."""
        return self.weight_bits if self.embedding_bits is None else self.embedding_bits

    @property
    def residual_bits_used(self) -> int:
        """Bits of the block outputs (residual stream): ``residual_bits``, or ``act_bits``."""
        return self.act_bits if self.residual_bits is None else self.residual_bits

    @property
    def residual_block(self) -> int | None:
        """Block size of the block outputs: ``residual_block_size``, or :attr:`act_block` at -1."""
        return self.act_block if self.residual_block_size == -1 else self.residual_block_size

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """Requantize a transformer block's output (the residual stream)."""
        return fake_quantize(x, self.residual_bits_used, self.residual_block, self.scale_format)

    def act(self, x: torch.Tensor, unsigned: bool = False) -> torch.Tensor:
        """Requantize an activation (blockwise along the last dim, dynamic scales)."""
        return fake_quantize(x, self.act_bits, self.act_block, self.scale_format, unsigned)


@dataclass
class BCTReport:
    """Outcome of :func:`quantize_model`: swapped modules and honest storage accounting."""

    swapped: dict[str, int] = field(default_factory=dict)
    original_bits: int = 0
    quantized_bits: int = 0
    unquantized_parameters: list[str] = field(default_factory=list)

    @property
    def storage_ratio(self) -> float:
        """Original fp32 size over quantized size (codes + scales + unquantized parameters)."""
        return self.original_bits / self.quantized_bits if self.quantized_bits else float("nan")

    @property
    def bits_per_parameter(self) -> float:
        """Average stored bits per original parameter, scales included."""
        return 32.0 * self.quantized_bits / self.original_bits if self.original_bits else float("nan")


# --------------------------------------------------------------------------- lookup tables


class _LUT:
    """Uniform table of ``f`` on ``[lo, hi]`` with ``size + 1`` entries, linear interpolation."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], lo: float, hi: float, size: int) -> None:
        self.lo, self.hi, self.size = lo, hi, size
        grid = torch.linspace(lo, hi, size + 1, dtype=torch.float64)
        self.table = fn(grid).to(torch.float32)
        self.step = (hi - lo) / size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        pos = ((x.clamp(self.lo, self.hi) - self.lo) / self.step).to(torch.float32)
        idx = pos.floor().clamp(max=self.size - 1)
        frac = pos - idx
        i = idx.long()
        return torch.lerp(self.table[i], self.table[i + 1], frac)


_LUT_CACHE: dict[tuple[str, int], _LUT] = {}


def _lut(kind: str, size: int) -> _LUT:
    key = (kind, size)
    if key not in _LUT_CACHE:
        if kind == "gelu":
            _LUT_CACHE[key] = _LUT(lambda t: torch.nn.functional.gelu(t), -8.0, 8.0, size)
        elif kind == "silu":
            _LUT_CACHE[key] = _LUT(torch.nn.functional.silu, -16.0, 16.0, size)
        elif kind == "tanh":
            _LUT_CACHE[key] = _LUT(torch.tanh, -8.0, 8.0, size)
        elif kind == "exp2neg":  # 2^-f on f in [0, 1]
            _LUT_CACHE[key] = _LUT(lambda t: torch.exp2(-t), 0.0, 1.0, size)
        elif kind == "rsqrt":  # m^-1/2 on m in [1, 4]
            _LUT_CACHE[key] = _LUT(torch.rsqrt, 1.0, 4.0, size)
        else:  # pragma: no cover - internal
            raise InvalidArgumentError(f"unknown LUT {kind!r}")
    return _LUT_CACHE[key]


def lut_activation(x: torch.Tensor, kind: str, lut_size: int = 1024) -> torch.Tensor:
    """GELU / SiLU / tanh by table lookup with interpolation, saturating outside the domain."""
    table = _lut(kind, lut_size)
    y = table(x)
    if kind in ("gelu", "silu"):
        y = torch.where(x > table.hi, x, torch.where(x < table.lo, torch.zeros_like(x), y))
    return y.to(x.dtype)


def lut_exp(x: torch.Tensor, lut_size: int = 1024) -> torch.Tensor:
    """``exp(x)`` for ``x <= 0``: ``2^-n · T(2^-f)`` with ``n`` an integer shift (underflow to 0
    at 2^-64) and ``f ∈ [0, 1)`` looked up."""
    # Clamp first: masked scores are -inf, and 2^-64 is already below every requantization step.
    t = (-x.to(torch.float32) * math.log2(math.e)).clamp(0.0, 64.0)
    n = torch.floor(t)
    y = torch.ldexp(_lut("exp2neg", lut_size)(t - n), -n)
    return torch.where(n >= 64, torch.zeros_like(y), y)


def lut_rsqrt(v: torch.Tensor, lut_size: int = 1024) -> torch.Tensor:
    """``1/sqrt(v)`` for ``v > 0``: ``v = m · 4^e``, ``m ∈ [1, 4)`` → ``2^-e · T(m)``."""
    _, exponent = torch.frexp(v.to(torch.float32))  # v = mant * 2^exponent, mant in [0.5, 1)
    e = torch.div(exponent - 1, 2, rounding_mode="floor")
    m = torch.ldexp(v.to(torch.float32), -2 * e)
    return torch.ldexp(_lut("rsqrt", lut_size)(m), -e)


def lut_softmax(scores: torch.Tensor, lut_size: int = 1024) -> torch.Tensor:
    """Softmax along the last dim with :func:`lut_exp` (row max subtracted first)."""
    z = scores - scores.amax(-1, keepdim=True)
    e = lut_exp(z, lut_size)
    return e / e.sum(-1, keepdim=True)


# --------------------------------------------------------------------------- modules


class _QuantParams:
    """Shared weight-quantization cache so tied parameters are quantized (and counted) once."""

    def __init__(self, config: BCTConfig) -> None:
        self.config = config
        self.by_id: dict[int, QuantizedTensor] = {}

    def get(
        self, p: torch.Tensor, bits: int, clip_search: bool = False, zero_point: bool = False
    ) -> QuantizedTensor:
        key = id(p)
        if key not in self.by_id:
            cfg = self.config
            if zero_point:
                self.by_id[key] = quantize_asymmetric(p, bits, cfg.block_size, cfg.scale_format)
            elif clip_search and cfg.block_size is not None and p.dim() >= 1:
                self.by_id[key] = quantize_clip_search(p, bits, cfg.block_size, cfg.scale_format)
            else:
                self.by_id[key] = quantize(p, bits, cfg.block_size, cfg.scale_format)
        return self.by_id[key]


CLIP_RATIOS = tuple(1.0 - 0.025 * i for i in range(21))
"""Candidate clipping ratios (of the block abs-max) tried by :func:`quantize_clip_search`."""


def quantize_clip_search(x: torch.Tensor, bits: int, block_size: int, scale_format: str) -> QuantizedTensor:
    """Blockwise symmetric quantization whose per-block scale is ``r · absmax / qmax`` with the ratio
    ``r`` in :data:`CLIP_RATIOS` that minimizes the block's squared error (values beyond the clipped
    range saturate). Same storage as :func:`~tensorpress.quant.blockwise.quantize`; at 4 bits the
    abs-max scale wastes most of the 15 levels on a block's one or two largest values."""
    qmax = qmax_for(bits)
    xf = x.detach().to(torch.float32)
    last = xf.shape[-1]
    pad = (-last) % block_size
    blocks = torch.nn.functional.pad(xf, (0, pad)).reshape(*xf.shape[:-1], -1, block_size)
    absmax = blocks.abs().amax(-1)
    best_err = torch.full_like(absmax, math.inf)
    best_scale = torch.ones_like(absmax)
    for ratio in CLIP_RATIOS:
        scale = _block_scales(absmax * ratio, qmax, scale_format)
        q = torch.clamp(torch.round(blocks / scale.unsqueeze(-1)), -qmax, qmax) * scale.unsqueeze(-1)
        err = ((q - blocks) ** 2).sum(-1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
    codes = torch.clamp(torch.round(blocks / best_scale.unsqueeze(-1)), -qmax, qmax)
    codes = codes.reshape(*xf.shape[:-1], -1)[..., :last]
    return QuantizedTensor(
        codes=codes.to(torch.int8 if bits <= 8 else torch.int32),
        scales=best_scale,
        shape=tuple(xf.shape),
        bits=bits,
        block_size=block_size,
        scale_format=scale_format,
    )


class BCTLinear(nn.Module):
    """``nn.Linear`` with blockwise integer weight (codes kept as a buffer) and requantized
    input/output. The dequantized weight is cached (non-persistent) for a fast float kernel."""

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, linear: nn.Linear, config: BCTConfig, params: _QuantParams) -> None:
        super().__init__()
        self.config = config
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.qweight = params.get(
            linear.weight, config.weight_bits, config.weight_clip_search, config.weight_zero_point
        )
        self.qbias = None if linear.bias is None else params.get(linear.bias, config.param_bits)
        self.register_buffer("weight_codes", self.qweight.codes, persistent=True)
        self.register_buffer("weight", self.qweight.dequantize(), persistent=False)
        self.register_buffer(
            "bias", None if self.qbias is None else self.qbias.dequantize(), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.linear(self.config.act(x), self.weight.to(x.dtype), self.bias)
        return self.config.act(y)

    def extra_repr(self) -> str:
        c = self.config
        return f"{self.in_features}, {self.out_features}, w{c.weight_bits}a{c.act_bits}, block={c.block_size}"


class BCTEmbedding(nn.Module):
    """``nn.Embedding`` with a blockwise integer table (rows split into blocks of the hidden dim)."""

    weight: torch.Tensor

    def __init__(self, emb: nn.Embedding, config: BCTConfig, params: _QuantParams) -> None:
        super().__init__()
        self.padding_idx = emb.padding_idx
        self.qweight = params.get(
            emb.weight, config.embedding_bits_used, config.weight_clip_search, config.weight_zero_point
        )
        self.register_buffer("weight_codes", self.qweight.codes, persistent=True)
        self.register_buffer("weight", self.qweight.dequantize(), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(ids, self.weight, self.padding_idx)


class BCTActivation(nn.Module):
    """GELU / SiLU / tanh by table lookup, input and output requantized."""

    def __init__(self, kind: str, config: BCTConfig) -> None:
        super().__init__()
        self.kind, self.config = kind, config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.config.act(lut_activation(self.config.act(x), self.kind, self.config.lut_size))

    def extra_repr(self) -> str:
        return f"{self.kind}, lut={self.config.lut_size}"


class BCTNorm(nn.Module):
    """LayerNorm (``rms=False``) or RMSNorm (``rms=True``) with integer statistics and a LUT rsqrt.

    Mean and variance of integer codes are exact integer sums in hardware; here they are computed
    in float32 on the dequantized values. Gain and bias use ``param_bits``.
    """

    weight: torch.Tensor | None
    bias: torch.Tensor | None

    def __init__(
        self,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        eps: float,
        rms: bool,
        config: BCTConfig,
        params: _QuantParams,
    ) -> None:
        super().__init__()
        self.eps, self.rms, self.config = float(eps), rms, config
        self.qweight = None if weight is None else params.get(weight, config.param_bits)
        self.qbias = None if bias is None else params.get(bias, config.param_bits)
        self.register_buffer("weight", None if self.qweight is None else self.qweight.dequantize(), False)
        self.register_buffer("bias", None if self.qbias is None else self.qbias.dequantize(), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq = self.config.act(x).to(torch.float32)
        if not self.rms:
            xq = xq - xq.mean(-1, keepdim=True)
        var = xq.pow(2).mean(-1, keepdim=True)
        y = xq * lut_rsqrt(var + self.eps, self.config.lut_size)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return self.config.act(y).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{'rms' if self.rms else 'layer'}norm, eps={self.eps}"


def _mask_bool(mask: torch.Tensor | None, scores: torch.Tensor) -> torch.Tensor | None:
    if mask is None:
        return None
    if mask.dtype == torch.bool:  # True = attend
        return ~mask
    return mask < torch.finfo(mask.dtype).min / 2


def bct_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantized eager attention (transformers ``AttentionInterface`` signature).

    The :class:`BCTConfig` is read from ``module._tensorpress_bct``; a module without one runs the
    float eager path (quantization is per model, the registry is global).
    """
    config: BCTConfig | None = getattr(module, "_tensorpress_bct", None)
    groups = int(getattr(module, "num_key_value_groups", 1))
    if groups > 1:  # grouped-query attention: share each K/V head among `groups` query heads
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    masked = _mask_bool(attention_mask, query)
    if config is None:
        scores = torch.matmul(query, key.transpose(2, 3)) * scaling
        if masked is not None:
            scores = scores.masked_fill(masked, float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    else:
        q, k, v = config.act(query), config.act(key), config.act(value)
        scores = torch.matmul(q, k.transpose(2, 3)) * scaling
        if masked is not None:
            scores = scores.masked_fill(masked, 0.0)  # masked entries must not set block scales
        scores = config.act(scores)
        if masked is not None:
            scores = scores.masked_fill(masked, float("-inf"))
        probs = config.act(lut_softmax(scores, config.lut_size), unsigned=True).to(query.dtype)
        value = v
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs, value)
    if config is not None:
        out = config.act(out)
    return out.transpose(1, 2).contiguous(), probs


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION_NAME, bct_attention_forward)
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)  # 4-D additive masks, like eager


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The repeated transformer blocks: the longest ``nn.ModuleList`` in the model (Llama's
    ``model.layers``, BERT's ``encoder.layer``)."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise InvalidArgumentError("model has no nn.ModuleList of transformer blocks")
    return max(lists, key=len)


def _activation_kind(module: nn.Module) -> str | None:
    name = type(module).__name__
    if isinstance(module, nn.GELU) or name in ("GELUActivation", "GELUTanh", "NewGELUActivation"):
        return "gelu"
    if isinstance(module, nn.SiLU) or name == "SiLUActivation":
        return "silu"
    if isinstance(module, nn.Tanh):
        return "tanh"
    return None


def _swap(module: nn.Module, config: BCTConfig, params: _QuantParams, report: BCTReport) -> nn.Module | None:
    """The quantized replacement of ``module``, or None to recurse into its children."""
    new: nn.Module
    if isinstance(module, nn.Linear):
        kind, new = "linear", BCTLinear(module, config, params)
    elif isinstance(module, nn.Embedding):
        kind, new = "embedding", BCTEmbedding(module, config, params)
    elif isinstance(module, nn.LayerNorm):
        kind = "layernorm"
        new = BCTNorm(module.weight, module.bias, module.eps, False, config, params)
    elif type(module).__name__.endswith("RMSNorm") and hasattr(module, "weight"):
        eps = getattr(module, "variance_epsilon", getattr(module, "eps", 1e-6))
        weight = module.weight if isinstance(module.weight, torch.Tensor) else None
        kind, new = "rmsnorm", BCTNorm(weight, None, float(eps), True, config, params)
    elif (act := _activation_kind(module)) is not None:
        kind, new = act, BCTActivation(act, config)
    else:
        return None
    report.swapped[kind] = report.swapped.get(kind, 0) + 1
    return new


def _replace_children(module: nn.Module, config: BCTConfig, params: _QuantParams, report: BCTReport) -> None:
    for name, child in list(module.named_children()):
        new = _swap(child, config, params, report)
        if new is None:
            _replace_children(child, config, params, report)
        else:
            setattr(module, name, new)


def _requantize_output_hook(config: BCTConfig) -> Callable[..., Any]:
    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        if isinstance(output, torch.Tensor):
            return config.residual(output)
        if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
            return (config.residual(output[0]), *output[1:])
        return output

    return hook


def quantize_model(
    model: nn.Module, config: BCTConfig | None = None, *, quantized: _QuantParams | None = None
) -> BCTReport:
    """Quantize ``model`` in place (BCT) and return a :class:`BCTReport`.

    ``quantized`` supplies weights quantized earlier (its ``get`` is asked for each parameter);
    :func:`tensorpress.from_pretrained` uses it to rebuild a saved BCT model from its codes.

    Swaps embeddings, linears, norms and activations; registers the quantized attention function
    (transformers models with an ``AttentionInterface``, i.e. ``config._attn_implementation``);
    hooks every transformer block to requantize its output. The model must be in float32/bf16 and
    is left in eval mode.
    """
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"model must be a torch nn.Module, got {type(model).__name__}")
    config = BCTConfig() if config is None else config
    model.eval()
    report = BCTReport()
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            report.original_bits += 32 * p.numel()
    params = _QuantParams(config) if quantized is None else quantized
    _replace_children(model, config, params, report)

    if config.quantize_attention:
        attention = [m for m in model.modules() if hasattr(m, "config") and _is_attention(m)]
        if attention and hasattr(model, "config"):
            _register_attention()
            for m in attention:
                m._tensorpress_bct = config  # type: ignore[assignment]  # read by bct_attention_forward
            hf_model: Any = model
            if hasattr(hf_model, "set_attn_implementation"):
                hf_model.set_attn_implementation(ATTENTION_NAME)
            else:  # pragma: no cover - older transformers
                hf_model.config._attn_implementation = ATTENTION_NAME
            report.swapped["attention"] = len(attention)
    if config.quantize_residual:
        try:
            blocks = transformer_blocks(model)
        except InvalidArgumentError:
            blocks = nn.ModuleList()
        for block in blocks:
            block.register_forward_hook(_requantize_output_hook(config))
        report.swapped["block_output"] = len(blocks)

    report.quantized_bits = sum(q.storage_bits() for q in params.by_id.values())
    for name, p in model.named_parameters():  # anything not swapped stays fp32
        report.unquantized_parameters.append(name)
        report.quantized_bits += 32 * p.numel()
    return report


def _is_attention(module: nn.Module) -> bool:
    name = type(module).__name__
    return name.endswith(("SelfAttention", "Attention")) and any(
        isinstance(c, BCTLinear) for c in module.children()
    )


def model_storage_ratio(model: nn.Module, config: BCTConfig) -> float:
    """Storage ratio BCT would reach on ``model`` (computed on a deep copy; ``model`` untouched)."""
    import copy

    return quantize_model(copy.deepcopy(model), config).storage_ratio


__all__ = [
    "ATTENTION_NAME",
    "CLIP_RATIOS",
    "BCTActivation",
    "BCTConfig",
    "BCTEmbedding",
    "BCTLinear",
    "BCTNorm",
    "BCTReport",
    "bct_attention_forward",
    "lut_activation",
    "lut_exp",
    "lut_rsqrt",
    "lut_softmax",
    "model_storage_ratio",
    "quantize_clip_search",
    "quantize_model",
    "transformer_blocks",
]
