"""LLM-ROM: rank rule, exact recovery of low-rank layers, SVD parameter parity, real model."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from tensorpress.errors import InvalidArgumentError  # noqa: E402
from tensorpress.lowrank import rom  # noqa: E402


@pytest.mark.parametrize(
    ("d_in", "d_out", "beta"),
    [(4096, 4096, 0.46), (576, 1536, 0.5), (576, 192, 0.3), (384, 384, 1.0), (7, 3, 0.01)],
)
def test_rank_rule(d_in, d_out, beta):
    r = rom.rank_for_budget(d_in, d_out, beta)
    assert r == max(1, math.floor(beta * d_in * d_out / (d_in + d_out)))
    if r > 1:
        assert rom.factorized_parameters(d_in, d_out, r, False) <= beta * d_in * d_out


def test_rank_rule_known_value():
    assert rom.rank_for_budget(4096, 4096, 0.46) == 942  # 0.46 * 2048 = 942.08


@pytest.mark.parametrize(("d_in", "d_out", "beta"), [(0, 4, 0.5), (4, 4, 0.0), (4, 4, 1.5), (4, 4, -0.1)])
def test_rank_rule_invalid(d_in, d_out, beta):
    with pytest.raises(InvalidArgumentError):
        rom.rank_for_budget(d_in, d_out, beta)


class _Block(torch.nn.Module):
    def __init__(self, d: int, rank: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = torch.nn.Linear(d, d)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(d, rank, generator=g) @ torch.randn(rank, d, generator=g) / d)
            self.fc.bias.copy_(self.fc.weight[:, 0])  # bias inside the column space of W

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.fc(x))


class _Net(torch.nn.Module):
    def __init__(self, d: int = 32, rank: int = 4, n: int = 3) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(_Block(d, rank, i) for i in range(n))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            input_ids = layer(input_ids)
        return input_ids


def test_rom_recovers_synthetic_low_rank_layer_exactly():
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(48, 40)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(40, 5, generator=g) @ torch.randn(5, 48, generator=g))
        lin.bias.copy_(lin.weight @ torch.randn(48, generator=g))  # in the output subspace
    x = torch.randn(500, 48, generator=g)
    y = lin(x).detach().double()
    new = rom.rom_factorize(lin, y.T @ y, 5)
    assert new[0].weight.shape == (5, 48) and new[1].weight.shape == (40, 5)
    torch.testing.assert_close(new(x), lin(x), rtol=1e-4, atol=1e-4)


def test_rom_eigenvectors_sorted_descending():
    d = 6
    c = torch.diag(torch.tensor([1.0, 9.0, 3.0, 7.0, 2.0, 5.0], dtype=torch.float64))
    lin = torch.nn.Linear(d, d, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(d))
    new = rom.rom_factorize(lin, c, 3)
    kept = new[1].weight.abs().argmax(0).tolist()  # V_r columns are unit vectors here
    assert kept == [1, 3, 5]


def test_rom_compress_synthetic_model_is_exact_and_sequential():
    net = _Net()
    x = torch.randn(4, 16, 32)
    ref = net(x)
    budget = rom.plan_budget(net, 0.7, n_blocks=3)
    # Ranks >= true rank (4) -> the compressed model reproduces the original.
    assert all(r >= 4 for r in budget.ranks.values())
    res = rom.rom_compress(net, [{"input_ids": x[:2]}, {"input_ids": x[2:]}], budget, progress=False)
    assert res.replaced == ["0.fc", "1.fc", "2.fc"]
    assert isinstance(net.layers[0].fc, torch.nn.Sequential)
    torch.testing.assert_close(net(x), ref, rtol=1e-4, atol=1e-4)
    assert res.parameters_after == budget.compressed_parameters


def test_svd_parameter_count_equals_rom():
    a, b = _Net(), _Net()
    x = torch.randn(2, 8, 32)
    budget = rom.plan_budget(a, 0.8, beta=0.5)
    r1 = rom.rom_compress(a, [{"input_ids": x}], budget, progress=False)
    r2 = rom.svd_compress(b, budget, progress=False)
    assert r1.parameters_after == r2.parameters_after == budget.compressed_parameters
    assert r1.replaced == r2.replaced


def test_plan_budget_hits_target():
    net = _Net(d=64, n=6)
    for keep in (0.9, 0.8):
        budget = rom.plan_budget(net, keep)
        assert budget.block_indices == sorted(budget.block_indices)
        assert budget.block_indices[-1] == 5  # the last blocks, as in the paper
        assert keep - 0.02 < budget.kept_fraction <= keep + 1e-9


@pytest.mark.parametrize("kwargs", [{"keep": 0.0}, {"keep": 1.0}, {"keep": 0.5, "n_blocks": 9}])
def test_plan_budget_invalid(kwargs):
    with pytest.raises(InvalidArgumentError):
        rom.plan_budget(_Net(), **kwargs)
    with pytest.raises(InvalidArgumentError):
        rom.plan_budget(_Net(), 0.8, n_blocks=1, beta=0.5)


def test_minilm_rom_beats_svd():
    ev = pytest.importorskip("tensorpress.evaluation")
    torch.set_num_threads(2)
    ref, tok = ev.load_minilm()
    texts = ev.calibration_texts(8)
    batches = [dict(tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt"))]
    model_rom, _ = ev.load_minilm()
    budget = rom.plan_budget(model_rom, 0.95, n_blocks=1)
    rom.rom_compress(model_rom, batches, budget, progress=False)
    model_svd, _ = ev.load_minilm()
    rom.svd_compress(model_svd, budget, progress=False)
    assert rom.count_parameters(model_rom) == rom.count_parameters(model_svd)
    eval_texts = ev.eval_texts(6)
    assert ev.embedding_cosine(ref, model_rom, tok, eval_texts) > ev.embedding_cosine(
        ref, model_svd, tok, eval_texts
    )
