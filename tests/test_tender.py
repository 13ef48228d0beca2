"""Tender: exact integer claims (shift-accumulate, 2x scales, bias compensation) and a real model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tensorpress.errors import InvalidArgumentError  # noqa: E402
from tensorpress.quant import tender  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    groups=st.integers(1, 8),
    bits=st.sampled_from([4, 8]),
    rows=st.integers(1, 6),
    cols=st.integers(1, 24),
    out=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_shift_accumulate_equals_dequantize_and_sum(groups, bits, rows, cols, out, seed):
    g = torch.Generator().manual_seed(seed)
    qmax = (1 << (bits - 1)) - 1
    codes = torch.randint(-qmax, qmax + 1, (rows, cols), generator=g)
    wcodes = torch.randint(-qmax, qmax + 1, (out, cols), generator=g)
    group = torch.randint(0, groups, (cols,), generator=g)
    partials = tender.group_partial_products(codes, group, wcodes, groups)
    acc = tender.shift_accumulate(partials)
    # Dequantize-and-sum in units of s_0: channel c carries codes * 2^g(c) (an integer).
    direct = (codes * (1 << group)) @ wcodes.T
    assert torch.equal(acc, direct)
    # The same with Python integers (no int64 overflow assumptions at all).
    for i in range(rows):
        for o in range(out):
            ref = sum(int(codes[i, c]) * (2 ** int(group[c])) * int(wcodes[o, c]) for c in range(cols))
            assert int(acc[i, o]) == ref


def test_shift_accumulate_matmul_float_equals_dequantized_product():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 40, generator=g) * torch.logspace(-2, 1, 40)
    w = torch.randn(16, 40, generator=g)
    cfg = tender.TenderConfig(bits=8, groups=4)
    q = tender.quantize_chunk(x, cfg)
    wcodes, wscale = tender.quantize_weight_rows(w, 8)
    acc, y = tender.shift_accumulate_matmul(q, wcodes, wscale)
    xdq = q.codes.double() * q.scales[q.group].double()
    ref = xdq @ (wcodes.double() * wscale.double()[:, None]).T
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    # Exact in integer units: acc == sum_c q_c 2^g(c) w_c.
    assert torch.equal(acc, (q.codes * (1 << q.group)) @ wcodes.T)


@pytest.mark.parametrize("groups", [1, 2, 4, 8])
def test_group_scales_exactly_two_apart(groups):
    for tmax in (1.0, 0.3, 123.456, 7e-3):
        s = tender.group_scales(tmax, groups, 8)
        assert s.shape == (groups,)
        for i in range(groups - 1):
            assert float(s[i + 1]) == 2.0 * float(s[i])
        assert float(s[-1]) == pytest.approx(tmax / 127, rel=1e-7)


def test_assign_groups_smallest_threshold():
    tmax = torch.tensor(8.0)
    absmax = torch.tensor([0.1, 1.0, 1.01, 2.0, 4.0, 4.5, 8.0, 9.0])
    # thresholds for G=4: 1, 2, 4, 8
    got = tender.assign_groups(absmax, tmax, 4)
    assert got.tolist() == [0, 0, 1, 1, 2, 3, 3, 3]


def test_bias_compensation_is_exact():
    # Channels with a large offset: subtracting (max+min)/2 and adding b W^T back must reproduce
    # the unbiased result; with activations on the quantization grid the only error is rounding.
    g = torch.Generator().manual_seed(1)
    lin = torch.nn.Linear(16, 8, bias=True)
    cfg = tender.TenderConfig(bits=8, weight_bits=8, groups=2, chunk_size=64)
    layer = tender.TenderLinear(lin, cfg)
    x = torch.randn(1, 64, 16, generator=g) + torch.linspace(-50, 50, 16)
    layer(x)
    layer.finalize()
    bias = layer.chunk_bias[0]
    lo, hi = x[0].amin(0), x[0].amax(0)
    assert torch.equal(bias, (hi + lo) / 2)
    y = layer(x)
    q = tender.quantize_chunk(x[0], cfg, bias=bias, tmax=layer.chunk_tmax[0], group=layer.chunk_group[0])
    ref = q.dequantize() @ layer.weight_dq.T + lin.bias
    torch.testing.assert_close(y[0], ref, rtol=1e-5, atol=1e-4)
    # Without the offset the quantization error would be far larger: compare with no bias.
    nob = tender.TenderLinear(lin, tender.TenderConfig(bits=8, groups=2, chunk_size=64, subtract_bias=False))
    nob(x)
    nob.finalize()
    exact = x @ layer.weight_dq.T + lin.bias
    assert (y - exact).abs().max() < (nob(x) - exact).abs().max()


def test_bias_estimates():
    # Sequences with different offsets and one outlier: "sequence_midrange" averages the
    # sequences' midranges (the paper's calibration), "midrange" takes the midpoint of the overall
    # min and max, "mean" the mean value; every estimate keeps TMax and the groups wide enough that
    # nothing calibration saw clips.
    g = torch.Generator().manual_seed(12)
    lin = torch.nn.Linear(8, 4, bias=False)
    x = torch.randn(3, 32, 8, generator=g)
    x[0] += 10.0
    x[2, 5, 3] = -40.0  # one outlier moves the overall range, not the mean of midranges much
    assert tender.TenderConfig().bias_estimate_used == "midrange"
    assert tender.TenderConfig(token_scale=True).bias_estimate_used == "mean"
    assert tender.TenderConfig(token_scale=True, bias_estimate="midrange").bias_estimate_used == "midrange"
    for estimate in tender.BIAS_ESTIMATES:
        layer = tender.TenderLinear(lin, tender.TenderConfig(groups=4, chunk_size=32, bias_estimate=estimate))
        layer(x[:2])  # two calls: the statistics accumulate over calls
        layer(x[2:])
        layer.finalize()
        lo, hi = x.amin(1), x.amax(1)
        want = {
            "sequence_midrange": ((lo + hi) / 2).mean(0),
            "midrange": (lo.amin(0) + hi.amax(0)) / 2,
            "mean": x.mean((0, 1)),
        }[estimate]
        torch.testing.assert_close(layer.chunk_bias[0], want)
        centered = (x - layer.chunk_bias[0]).abs().amax((0, 1))
        assert float(centered.max()) == pytest.approx(float(layer.chunk_tmax[0]))
        thresholds = layer.chunk_tmax[0] * torch.exp2(layer.chunk_group[0].float() - 3)
        assert bool((centered <= thresholds * (1 + 1e-6)).all())


def test_integer_and_fast_paths_agree():
    g = torch.Generator().manual_seed(2)
    lin = torch.nn.Linear(48, 24, bias=False)
    x = torch.randn(2, 40, 48, generator=g) * torch.logspace(-1, 1.5, 48)
    cases = [(False, estimate) for estimate in tender.BIAS_ESTIMATES] + [(True, "midrange")]
    for dynamic, estimate in cases:
        cfg = tender.TenderConfig(bits=8, groups=4, chunk_size=16, dynamic=dynamic, bias_estimate=estimate)
        layer = tender.TenderLinear(lin, cfg)
        layer(x)
        if not dynamic:
            layer.finalize()
        layer.mode = "quantized"
        fast = layer(x)
        layer.integer = True
        exact = layer(x)
        torch.testing.assert_close(fast, exact, rtol=1e-5, atol=1e-5)


def test_more_groups_beat_per_tensor_on_outlier_channels():
    g = torch.Generator().manual_seed(3)
    lin = torch.nn.Linear(64, 32, bias=False)
    x = torch.randn(1, 128, 64, generator=g)
    x[..., :2] *= 200  # two outlier channels, as in LLM activations
    ref = x @ tender.TenderLinear(lin, tender.TenderConfig()).weight_dq.T
    errs = {}
    for groups in (1, 8):
        layer = tender.TenderLinear(lin, tender.TenderConfig(bits=8, groups=groups, subtract_bias=groups > 1))
        layer(x)
        layer.finalize()
        errs[groups] = float((layer(x) - ref).norm() / ref.norm())
    assert errs[8] < errs[1] / 4


def test_headroom_avoids_clipping_unseen_values():
    g = torch.Generator().manual_seed(4)
    lin = torch.nn.Linear(32, 16, bias=False)
    calib = torch.randn(1, 64, 32, generator=g)
    later = calib * 1.8  # run-time activations larger than anything calibration saw
    exact = later @ tender.TenderLinear(lin, tender.TenderConfig()).weight_dq.T
    errs, tmax = {}, {}
    for headroom in (1.0, 2.0):
        layer = tender.TenderLinear(
            lin, tender.TenderConfig(bits=8, groups=4, chunk_size=64, headroom=headroom)
        )
        layer(calib)
        layer.finalize()
        tmax[headroom] = float(layer.chunk_tmax[0])
        errs[headroom] = float((layer(later) - exact).norm() / exact.norm())
    assert tmax[2.0] == pytest.approx(2 * tmax[1.0])
    assert errs[2.0] < errs[1.0] / 4  # clipping dominates without headroom


def test_token_scale_integer_path_agrees_and_beats_static_on_unseen_ranges():
    g = torch.Generator().manual_seed(5)
    lin = torch.nn.Linear(48, 24, bias=False)
    calib = torch.randn(2, 32, 48, generator=g) * torch.logspace(-1, 1.5, 48)
    later = calib * torch.logspace(-1, 0.5, 32)[None, :, None]  # token ranges calibration did not see
    layer = tender.TenderLinear(lin, tender.TenderConfig(bits=8, groups=4, chunk_size=16, token_scale=True))
    layer(calib)
    layer.finalize()
    fast = layer(later)
    layer.integer = True
    torch.testing.assert_close(fast, layer(later), rtol=1e-5, atol=1e-5)
    # Each token's TMax is set so its own largest scaled value hits qmax exactly: nothing clips, so
    # the error per value is at most half a step of its group.
    exact = later @ layer.weight_dq.T
    static = tender.TenderLinear(lin, tender.TenderConfig(bits=8, groups=4, chunk_size=16))
    static(calib)
    static.finalize()
    err_token = float((fast - exact).norm() / exact.norm())
    err_static = float((static(later) - exact).norm() / exact.norm())
    assert err_token < err_static / 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bits": 1},
        {"bits": 17},
        {"groups": 0},
        {"groups": 17},
        {"chunk_size": 0},
        {"weight_bits": 3.5},
        {"headroom": 0.5},
        {"headroom": float("nan")},
        {"bias_estimate": "median"},
    ],
)
def test_invalid_config(kwargs):
    with pytest.raises(InvalidArgumentError):
        tender.TenderConfig(**kwargs)


def test_invalid_usage():
    with pytest.raises(InvalidArgumentError):
        tender.TenderLinear(torch.nn.Linear(4, 4), tender.TenderConfig()).finalize()
    with pytest.raises(InvalidArgumentError):
        tender.calibrate(torch.nn.Sequential(torch.nn.ReLU()), [])
    with pytest.raises(InvalidArgumentError):
        tender.convert_model("not a model")  # type: ignore[arg-type]


def test_minilm_int8_close_to_original():
    ev = pytest.importorskip("tensorpress.evaluation")
    torch.set_num_threads(2)
    ref, tok = ev.load_minilm()
    model, _ = ev.load_minilm()
    batches = [
        dict(tok(ev.calibration_texts(8), padding=True, truncation=True, max_length=64, return_tensors="pt"))
    ]
    layers = tender.quantize_model(model, batches, tender.TenderConfig(bits=8), skip=("pooler.dense",))
    assert len(layers) == 36
    cos = ev.embedding_cosine(ref, model, tok, ev.eval_texts(6))
    assert cos > 0.98
