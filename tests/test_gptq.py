"""GPTQ and HQQ: a hand-checked GPTQ step, GPTQ beating RTN on calibrated output error, grid and
storage claims, typed errors, and the sequential model-level driver on a tiny model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tensorpress.errors import InvalidArgumentError  # noqa: E402
from tensorpress.quant import gptq, hqq  # noqa: E402


def _correlated_inputs(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) * 0.3 + torch.eye(d)
    return (torch.randn(n, d, generator=g) @ mix) * torch.logspace(-1, 0.5, d)


def test_hand_checked_three_columns():
    # 4-bit, one group: range [min(x,0), max(x,0)] = [0, 15] -> scale 1, zero 0.
    # H = [[2,1,0],[1,2,0],[0,0,1]]: the OBS update after column 0 adds (w0-q0)·(-H⁻¹01/H⁻¹00) = +e/2
    # to column 1 and nothing to column 2. w0 = 0.45 -> q0 = 0, e = 0.45; w1 = 7.3 + 0.225 = 7.525
    # -> 8 (RTN: 7); w2 = 15 -> 15.
    w = torch.tensor([[0.45, 7.3, 15.0]], dtype=torch.float64)
    h = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    res = gptq.quantize_gptq(w, h, bits=4, group_size=128, damp=0.0)
    assert res.weight.tolist() == [[0.0, 8.0, 15.0]]
    rtn = gptq.quantize_rtn(w, bits=4, group_size=128)
    assert rtn.tolist() == [[0.0, 7.0, 15.0]]
    # e·H·eᵀ by hand: GPTQ e = (0.45, -0.7, 0) -> 0.755; RTN e = (0.45, 0.3, 0) -> 0.855.
    assert gptq.output_error(w, res.weight, h) == pytest.approx(0.755)
    assert gptq.output_error(w, rtn, h) == pytest.approx(0.855)


@pytest.mark.parametrize("bits", [3, 4])
def test_gptq_beats_rtn_on_calibrated_output_error(bits):
    x = _correlated_inputs(1024, 256, seed=bits)
    w = torch.randn(48, 256, generator=torch.Generator().manual_seed(7))
    acc = gptq.HessianAccumulator(256)
    for part in x.split(300):
        acc.add(part)
    h = acc.hessian
    torch.testing.assert_close(h, 2 * x.double().T @ x.double() / x.shape[0])
    rtn = gptq.output_error(w, gptq.quantize_rtn(w, bits, 128), h)
    plain = gptq.output_error(w, gptq.quantize_gptq(w, h, bits, 128).weight, h)
    act = gptq.output_error(w, gptq.quantize_gptq(w, h, bits, 128, act_order=True).weight, h)
    assert plain < rtn
    assert act < 0.8 * rtn


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_codes_lie_on_a_grid_per_group(act_order):
    x = _correlated_inputs(512, 256, seed=3)
    w = torch.randn(8, 256, generator=torch.Generator().manual_seed(1))
    h = 2 * x.double().T @ x.double() / 512
    res = gptq.quantize_gptq(w, h, bits=3, group_size=64, act_order=act_order)
    q = res.weight if res.perm is None else res.weight[:, res.perm]
    for start in range(0, 256, 64):
        for row in q[:, start : start + 64]:
            assert len(torch.unique(row)) <= 8
    assert res.bits_per_value == pytest.approx(3 + 32 / 64 + (256 * 8 / (8 * 256) if act_order else 0))


def test_act_order_with_descending_diagonal_is_plain_gptq():
    x = _correlated_inputs(512, 64, seed=5).double()
    h = 2 * x.T @ x / 512
    h = h / torch.diag(h).max() + torch.diag(torch.linspace(20, 2, 64, dtype=torch.float64))
    assert torch.all(torch.diff(torch.diag(h)) < 0)
    w = torch.randn(16, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    a = gptq.quantize_gptq(w, h, 4, 32, act_order=True)
    b = gptq.quantize_gptq(w, h, 4, 32, act_order=False)
    assert torch.equal(a.perm, torch.arange(64))
    torch.testing.assert_close(a.weight, b.weight)


def test_dead_inputs_zero_their_columns():
    x = _correlated_inputs(256, 32, seed=9)
    x[:, 5] = 0
    h = 2 * x.double().T @ x.double() / 256
    w = torch.randn(4, 32, dtype=torch.float64)
    res = gptq.quantize_gptq(w, h, 4, 32)
    assert torch.all(res.weight[:, 5] == 0)


def test_gptq_typed_errors():
    w = torch.randn(4, 8)
    with pytest.raises(InvalidArgumentError):
        gptq.quantize_gptq(w, torch.eye(7), 4, 8)
    with pytest.raises(InvalidArgumentError):
        gptq.quantize_gptq(w, torch.eye(8), 1, 8)
    with pytest.raises(InvalidArgumentError):
        gptq.quantize_gptq(w, -torch.eye(8), 4, 8, damp=0.0)
    with pytest.raises(InvalidArgumentError):
        gptq.quantize_gptq(torch.full((4, 8), float("nan")), torch.eye(8), 4, 8)
    with pytest.raises(InvalidArgumentError):
        gptq.quantize_rtn(torch.randn(8), 4, 8)


@pytest.mark.parametrize("bits", [3, 4])
def test_hqq_improves_min_max_rtn_and_uses_at_most_2b_levels(bits):
    g = torch.Generator().manual_seed(bits)
    w = torch.randn(64, 256, generator=g) ** 3  # heavy tails, where the l_p fit matters
    cfg = hqq.HQQConfig(bits=bits, group_size=128)
    out = hqq.quantize_hqq(w, cfg)
    for grp in out.reshape(-1, 128):
        assert len(torch.unique(grp)) <= 2**bits
    minmax = hqq.quantize_hqq(w, hqq.HQQConfig(bits=bits, group_size=128, iters=0))
    assert float((out - w).abs().mean()) < float((minmax - w).abs().mean())
    assert cfg.bits_per_value == bits + 0.25
    with pytest.raises(InvalidArgumentError):
        hqq.quantize_hqq(torch.randn(4, 100), cfg)  # 400 values: not whole groups of 128
    assert hqq.quantize_hqq(torch.randn(4, 96), cfg).shape == (4, 96)  # 384 = 3 groups
    with pytest.raises(InvalidArgumentError):
        hqq.HQQConfig(bits=0)


def test_sequential_quantize_measures_inputs_after_quantized_blocks():
    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList(
                torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.Tanh()) for _ in range(2)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for b in self.blocks:
                x = b(x)
            return x

    model = Tiny()
    data = [{"x": torch.randn(64, 32)} for _ in range(3)]
    seen: dict[str, torch.Tensor] = {}

    def quantize(name: str, w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        seen[name] = h
        return gptq.quantize_gptq(w, h, 4, 32).weight

    diag = gptq.sequential_quantize(model, model.blocks, data, quantize)
    assert list(diag) == ["blocks.0.0", "blocks.1.0"]
    # Block 1's Hessian is that of the inputs through the *quantized* block 0.
    with torch.no_grad():
        inner = torch.cat([model.blocks[0](d["x"]) for d in data]).double()
    torch.testing.assert_close(seen["blocks.1.0"], 2 * inner.T @ inner / inner.shape[0])
    with pytest.raises(InvalidArgumentError):
        gptq.sequential_quantize(model, model.blocks, [], quantize)
