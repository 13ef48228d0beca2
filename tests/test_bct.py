"""BCT: blockwise quantizer, storage accounting, LUT ops, module swap on MiniLM and SmolLM2."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from tensorpress.errors import InvalidArgumentError  # noqa: E402
from tensorpress.quant import bct, blockwise  # noqa: E402


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("block", [1, 7, 64, None])
@pytest.mark.parametrize("fmt", ["fp16", "pow2"])
def test_blockwise_roundtrip_error_bound(bits, block, fmt):
    g = torch.Generator().manual_seed(bits + (block or 0))
    x = torch.randn(5, 100, generator=g) * torch.logspace(-3, 2, 100)
    q = blockwise.quantize(x, bits, block, fmt)
    qmax = (1 << (bits - 1)) - 1
    assert q.codes.abs().max() <= qmax
    xd = q.dequantize()
    assert xd.shape == x.shape
    # Error per value is at most half a step of its block's scale.
    blocks = 1 if block is None else math.ceil(100 / block)
    scale = q.scales.reshape(-1, 1).expand(-1, block or 500).reshape(-1)
    if block is not None:
        scale = q.scales.reshape(5, blocks, 1).expand(5, blocks, block).reshape(5, -1)[:, :100]
    else:
        scale = q.scales.reshape(1, 1).expand(5, 100)
    assert bool(((xd - x).abs() <= scale.reshape(5, 100) / 2 * (1 + 1e-6)).all())
    torch.testing.assert_close(blockwise.fake_quantize(x, bits, block, fmt), xd)
    if fmt == "pow2":
        assert bool((torch.log2(q.scales) == torch.round(torch.log2(q.scales))).all())


def test_blockwise_beats_per_tensor_on_outliers():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 256, generator=g)
    x[:, 3] *= 100
    e_block = (blockwise.fake_quantize(x, 4, 64) - x).norm()
    e_tensor = (blockwise.fake_quantize(x, 4, None) - x).norm()
    assert e_block < e_tensor / 2


def test_unsigned_codes_and_zero_blocks():
    x = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.1, 0.5, 1.0, 0.25]])
    q = blockwise.quantize(x, 4, 4, unsigned=True)
    assert q.codes.min() >= 0 and q.codes.max() == 15
    assert float(q.scales[0, 0]) == 1.0  # all-zero block
    assert torch.equal(q.dequantize()[0, :4], torch.zeros(4))


def test_storage_bits_counts_scales():
    assert blockwise.storage_bits(4096, 4, 64, "fp16", (64, 64)) == 4096 * 4 + 64 * 16
    assert blockwise.storage_bits(100, 4, 64, "pow2", (1, 100)) == 400 + 2 * 8  # partial block
    assert blockwise.storage_bits(4096, 4, None, "fp16") == 4096 * 4 + 16
    ratio = 32 * 4096 / blockwise.storage_bits(4096, 4, None, "fp16")
    assert 7.98 < ratio < 8.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weight_bits": 1},
        {"act_bits": 17},
        {"block_size": 0},
        {"block_size": -4},
        {"scale_format": "fp8"},
        {"lut_size": 4},
        {"weight_bits": True},
        {"act_block_size": 0},
        {"residual_bits": 1},
        {"residual_block_size": -3},
        {"embedding_bits": 1},
    ],
)
def test_invalid_config(kwargs):
    with pytest.raises(InvalidArgumentError):
        bct.BCTConfig(**kwargs)


@pytest.mark.parametrize("bits", [4, 8])
def test_clip_search_never_worse_and_same_storage(bits):
    g = torch.Generator().manual_seed(bits)
    w = torch.randn(48, 100, generator=g) * (1 + 3 * (torch.rand(48, 100, generator=g) > 0.98))
    plain = blockwise.quantize(w, bits, 32)
    clipped = bct.quantize_clip_search(w, bits, 32, "fp16")
    err_plain = ((plain.dequantize() - w) ** 2).reshape(48, -1)
    err_clip = ((clipped.dequantize() - w) ** 2).reshape(48, -1)
    assert float(err_clip.sum()) <= float(err_plain.sum())  # ratio 1.0 is a candidate
    assert clipped.storage_bits() == plain.storage_bits()
    assert int(clipped.codes.abs().max()) <= (1 << (bits - 1)) - 1
    # The scales are what is stored: fp16-representable.
    assert torch.equal(clipped.scales, clipped.scales.half().float())
    if bits == 4:  # spiky blocks: clipping the one large value pays
        assert float(err_clip.sum()) < 0.95 * float(err_plain.sum())


@pytest.mark.parametrize("bits", [3, 4, 8])
@pytest.mark.parametrize("block", [32, 45, None])
@pytest.mark.parametrize("fmt", ["fp16", "pow2"])
def test_asymmetric_roundtrip_error_bound_and_storage(bits, block, fmt):
    g = torch.Generator().manual_seed(bits * 100 + (block or 0))
    x = torch.randn(6, 100, generator=g) * torch.logspace(-2, 1, 100) + 0.3  # offset, not centred
    q = blockwise.quantize_asymmetric(x, bits, block, fmt)
    assert q.unsigned and q.offsets is not None and q.offsets.shape == q.scales.shape
    assert int(q.codes.min()) >= 0 and int(q.codes.max()) <= (1 << bits) - 1
    assert torch.equal(q.offsets, q.offsets.half().float())  # what is stored: float16
    xd = q.dequantize()
    if block is None:
        n_blocks, scale = 1, q.scales.reshape(1, 1).expand(6, 100)
    else:
        n_blocks = 6 * math.ceil(100 / block)
        scale = q.scales.reshape(6, -1, 1).expand(6, n_blocks // 6, block).reshape(6, -1)[:, :100]
    # Half a step, plus the float16 rounding of the offset (half an fp16 ulp of the minimum).
    slack = float(x.abs().amax()) * 2.0**-11 + 1e-7
    assert bool(((xd - x).abs() <= scale / 2 * (1 + 1e-6) + slack).all())
    assert q.storage_bits() == 600 * bits + n_blocks * (blockwise.OFFSET_BITS + blockwise.SCALE_BITS[fmt])


def test_asymmetric_reproduces_a_q4_1_grid_exactly():
    # GGUF Q4_1: per block of 32, float16 d and m, values d·q + m with q in 0..15. A block holding
    # both q = 0 and q = 15 is reproduced bit for bit, which the symmetric grid cannot do.
    g = torch.Generator().manual_seed(7)
    d = (torch.rand(8, 4, generator=g) * 0.1 + 0.01).half().float()
    m = (torch.randn(8, 4, generator=g) * 0.1).half().float()
    codes = torch.randint(0, 16, (8, 4, 32), generator=g)
    codes[..., 0], codes[..., 1] = 0, 15
    w = (codes * d[..., None] + m[..., None]).reshape(8, 128)
    assert torch.equal(blockwise.quantize_asymmetric(w, 4, 32).dequantize(), w)
    assert float((blockwise.quantize(w, 4, 32).dequantize() - w).abs().max()) > 0


def test_weight_zero_point_in_bct():
    with pytest.raises(InvalidArgumentError):
        bct.BCTConfig(4, 8, 32, weight_zero_point=True, weight_clip_search=True)

    def small_model() -> torch.nn.Sequential:
        return torch.nn.Sequential(torch.nn.Embedding(16, 64), torch.nn.Linear(64, 64, bias=True))

    sym = bct.quantize_model(small_model(), bct.BCTConfig(4, 8, 32))
    model = small_model()
    report = bct.quantize_model(model, bct.BCTConfig(4, 8, 32, weight_zero_point=True))
    assert model[1].qweight.offsets is not None and model[0].qweight.offsets is not None
    assert model[1].qbias is not None and model[1].qbias.offsets is None  # params stay symmetric
    extra = 16 * (model[0].qweight.n_blocks + model[1].qweight.n_blocks)  # one float16 offset per block
    assert report.quantized_bits == sym.quantized_bits + extra


def test_embedding_bits_apply_to_tied_head():
    emb = torch.nn.Embedding(16, 64)
    head = torch.nn.Linear(64, 16, bias=False)
    head.weight = emb.weight
    model = torch.nn.Sequential(emb, head)
    cfg = bct.BCTConfig(4, 8, 32, embedding_bits=8)
    assert cfg.embedding_bits_used == 8 and bct.BCTConfig(4, 8, 32).embedding_bits_used == 4
    bct.quantize_model(model, cfg)
    assert model[0].qweight.bits == 8 and model[1].qweight is model[0].qweight


def test_residual_stream_precision_and_blocks():
    x = torch.randn(3, 5, 128) * torch.logspace(-2, 2, 128)  # outlier channels, like a residual stream
    default = bct.BCTConfig()
    assert default.residual_bits_used == 8 and default.residual_block == default.act_block == 32
    torch.testing.assert_close(default.residual(x), default.act(x))
    err8 = (default.residual(x) - x).abs().max()
    wide = bct.BCTConfig(residual_bits=16)
    assert wide.act_block == wide.residual_block == 32 and wide.act_bits == 8
    assert (wide.residual(x) - x).abs().max() < err8 / 100  # 8 more bits: ~256x finer steps
    fine = bct.BCTConfig(residual_block_size=16)
    assert (fine.residual(x) - x).abs().mean() < (default.residual(x) - x).abs().mean()
    assert bct.BCTConfig(act_block_size=-1).act_block == 64
    assert bct.BCTConfig(act_block_size=None).residual_block is None


def test_invalid_model():
    with pytest.raises(InvalidArgumentError):
        bct.quantize_model("model")  # type: ignore[arg-type]


def test_lut_ops_accuracy():
    x = torch.linspace(-20, 20, 20001)
    assert (bct.lut_activation(x, "gelu") - torch.nn.functional.gelu(x)).abs().max() < 1e-4
    assert (bct.lut_activation(x, "silu") - torch.nn.functional.silu(x)).abs().max() < 2e-4
    assert (bct.lut_activation(x, "tanh") - torch.tanh(x)).abs().max() < 1e-4
    z = -torch.linspace(0, 44, 5001)  # 2^-64 = e^-44.4 is the designed underflow point
    assert ((bct.lut_exp(z) - torch.exp(z)).abs() / torch.exp(z)).max() < 1e-5
    assert float(bct.lut_exp(torch.tensor([-45.0, -1e9, float("-inf")])).abs().max()) == 0.0
    v = torch.logspace(-12, 12, 5001)
    assert ((bct.lut_rsqrt(v) * torch.sqrt(v)) - 1).abs().max() < 1e-5
    s = torch.randn(4, 9, 33) * 5
    s[0, 0, 5:] = float("-inf")
    torch.testing.assert_close(bct.lut_softmax(s), torch.softmax(s, -1), rtol=1e-4, atol=1e-6)


def test_minilm_swap_8bit_within_tolerance_and_ratio():
    ev = pytest.importorskip("tensorpress.evaluation")
    torch.set_num_threads(2)
    ref, tok = ev.load_minilm()
    model, _ = ev.load_minilm()
    report = bct.quantize_model(model, bct.BCTConfig(weight_bits=8, act_bits=8, block_size=64))
    assert report.swapped["linear"] == 37 and report.swapped["embedding"] == 3
    assert report.swapped["layernorm"] == 13 and report.swapped["gelu"] == 6
    assert report.swapped["attention"] == 6
    assert report.unquantized_parameters == []
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    # 8 bits + fp16 scale per 64 values (+ 8-bit small params) -> 32 / 8.25 = 3.879x
    assert report.storage_ratio == pytest.approx(32 / 8.25, rel=2e-3)
    texts = ev.eval_texts(4)
    enc = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        a, b = ref(**enc).last_hidden_state, model(**enc).last_hidden_state
    # Stated tolerance at 8 bits: relative error of the last hidden state below 10 %, cosine > 0.99.
    assert float((a - b).norm() / a.norm()) < 0.10
    assert ev.embedding_cosine(ref, model, tok, texts) > 0.99


def test_minilm_blockwise_4bit_beats_per_tensor_and_ratio():
    ev = pytest.importorskip("tensorpress.evaluation")
    ref, tok = ev.load_minilm()
    texts = ev.eval_texts(4)
    cos = {}
    for block in (64, None):
        model, _ = ev.load_minilm()
        rep = bct.quantize_model(model, bct.BCTConfig(weight_bits=4, act_bits=8, block_size=block))
        cos[block] = ev.embedding_cosine(ref, model, tok, texts)
        if block is None:
            assert rep.storage_ratio == pytest.approx(7.988, abs=0.01)
    assert cos[64] > cos[None] + 0.2


def test_smollm2_8bit_one_window():
    ev = pytest.importorskip("tensorpress.evaluation")
    torch.set_num_threads(2)
    model, tok = ev.load_smollm2()
    texts = ev.eval_texts(3)
    base = ev.perplexity(model, tok, texts, seq_len=64, max_windows=1)
    # Counted before the swap (after it the float parameters are gone); model.parameters() yields
    # the tied embedding / LM head once, and so must the report.
    params_before = sum(p.numel() for p in model.parameters())
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    report = bct.quantize_model(model, bct.BCTConfig())
    assert report.swapped["rmsnorm"] == 61 and report.swapped["silu"] == 30
    assert report.swapped["attention"] == 30
    assert report.original_bits == 32 * params_before
    q = ev.perplexity(model, tok, texts, seq_len=64, max_windows=1)
    assert math.isfinite(q) and abs(q / base - 1) < 0.10


def test_zero_point_codes_saved_and_offsets_required():
    from tensorpress import recipes
    from tensorpress.errors import FormatError

    def small_model() -> torch.nn.Sequential:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))

    cfg = bct.BCTConfig(4, 8, 32, weight_zero_point=True)
    model = small_model()
    bct.quantize_model(model, cfg)
    recipe, state = recipes.capture(model)
    assert "0.weight" + recipes.OFFSETS_SUFFIX in state
    assert "0.weight" + recipes.OFFSETS_SUFFIX in recipes.bct_state_names(recipe)
    rebuilt = small_model()
    recipes.finish(rebuilt, recipe, dict(state), "test")
    assert torch.equal(rebuilt[0].weight, model[0].weight)  # offsets restored: the same weights
    missing = {k: v for k, v in state.items() if not k.endswith(recipes.OFFSETS_SUFFIX)}
    with pytest.raises(FormatError, match="offsets"):
        recipes.finish(small_model(), recipe, missing, "test")
    wrong = dict(state, **{"0.weight" + recipes.OFFSETS_SUFFIX: torch.zeros(3)})
    with pytest.raises(FormatError, match="offsets"):
        recipes.finish(small_model(), recipe, wrong, "test")
