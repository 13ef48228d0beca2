"""Model-level API (MiniLM via transformers, tied weights) and the KV-cache helper."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tensorpress as tp  # noqa: E402
from tensorpress import cli, models, planner  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def minilm() -> Any:
    transformers = pytest.importorskip("transformers")
    from tensorpress import samples

    try:
        path = samples.minilm_dir()
    except ImportError:
        pytest.skip("MiniLM weights not installed")
    torch.set_num_threads(1)
    return transformers.AutoModel.from_pretrained(path)


def test_minilm_save_load_bit_exact(minilm: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import transformers

    from tensorpress import samples

    path = tmp_path / "minilm.tpz"
    packed = tp.save_model(minilm, path)
    assert packed.nbytes < 0.9 * packed.raw_nbytes
    assert set(packed.plans) == set(packed)
    fresh = transformers.AutoModel.from_pretrained(samples.minilm_dir())
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    state = tp.load_model(path, fresh)
    ref = minilm.state_dict()
    assert set(state) == set(ref)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, ref[k]), k
    plans = models.read_plans(path)
    assert set(plans) == set(ref) and all("lossless" in p["summary"] for p in plans.values())
    assert cli.main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "plan" in out.splitlines()[0] and "lossless fp32-exponent" in out


def test_minilm_lossy_respects_bound(minilm: Any) -> None:
    sd = {k: v for k, v in minilm.state_dict().items() if k.startswith("encoder.layer.0.")}
    packed = tp.compress_model(sd, max_rel_error=1e-3, video=False, sample=1 << 14)
    assert packed.nbytes < 0.3 * packed.raw_nbytes
    for name, obj in packed.items():
        back = tp.decompress(obj)
        assert planner.rel_mse(sd[name].numpy(), back.numpy()) <= 1e-3, name


class Tied(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(50, 16)
        self.mid = torch.nn.Linear(16, 16)
        self.head = torch.nn.Linear(16, 50, bias=False)
        self.head.weight = self.emb.weight
        self.register_buffer("steps", torch.arange(4))

    def forward(self, ids: Any) -> Any:
        return self.head(self.mid(self.emb(ids)))


def test_tied_weights_stored_once(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = Tied()
    packed = tp.save_model(m, tmp_path / "t.tpz")
    assert packed.aliases == {"head.weight": "emb.weight"}
    with tp.open(tmp_path / "t.tpz") as f:
        assert "head.weight" not in list(f)
    m2 = Tied()
    state = tp.load_model(tmp_path / "t.tpz", m2)
    assert state["head.weight"] is state["emb.weight"]
    assert m2.head.weight is m2.emb.weight
    ids = torch.arange(10).reshape(2, 5)
    assert torch.equal(m(ids), m2(ids))
    assert torch.equal(m2.steps, torch.arange(4))


def _greedy(model: Any, first_logits: Any, cache: Any, steps: int = 8) -> tuple[list[int], Any]:
    tok = first_logits[:, -1].argmax(-1, keepdim=True)
    toks, logits = [], []
    with torch.no_grad():
        for _ in range(steps):
            out = model(tok, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits.append(out.logits)
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            toks.append(int(tok))
    return toks, torch.cat(logits)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_kv_cache_lossless_generation_identical(dtype: str, tiny_llama: Callable[..., Any]) -> None:
    torch.set_num_threads(1)
    model = tiny_llama().to(getattr(torch, dtype))
    ids = torch.randint(0, 200, (1, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(ids, use_cache=True)
    packed = models.compress_kv_cache(out.past_key_values)
    assert packed.kind == "dynamic" and packed.nbytes <= packed.raw_nbytes * 1.1
    restored = models.restore_kv_cache(packed)
    assert type(restored).__name__ == "DynamicCache"
    a = _greedy(model, out.logits, restored)
    b = _greedy(model, out.logits, out.past_key_values)
    assert a[0] == b[0] and torch.equal(a[1], b[1])


def test_kv_cache_legacy_and_lossy(tmp_path: Path) -> None:
    torch.manual_seed(2)
    legacy = tuple((torch.randn(1, 2, 40, 32), torch.randn(1, 2, 40, 32)) for _ in range(3))
    packed = models.compress_kv_cache(legacy)
    back = models.restore_kv_cache(packed)
    assert isinstance(back, tuple) and all(
        torch.equal(x, y) for (a, b), (c, d) in zip(back, legacy, strict=True) for x, y in ((a, c), (b, d))
    )
    lossy = models.compress_kv_cache(legacy, max_rel_error=1e-2)
    assert lossy.nbytes < lossy.raw_nbytes / 4
    for (k, v), (k0, v0) in zip(models.restore_kv_cache(lossy), legacy, strict=True):
        assert planner.rel_mse(k0.numpy(), k.numpy()) <= 1e-2
        assert planner.rel_mse(v0.numpy(), v.numpy()) <= 1e-2
    tp.save(lossy.as_dict(), tmp_path / "kv.tpz")
    assert len(tp.load(tmp_path / "kv.tpz")) == 6


def test_constraint_errors() -> None:
    from tensorpress.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        tp.compress_model({"w": torch.ones(3)}, lossless=True, max_rel_error=0.1)
    with pytest.raises(tp.errors.InvalidTypeError):
        tp.compress_model(42)


def test_repr_is_short(minilm: Any) -> None:
    packed = tp.compress_model(minilm)
    text = repr(packed)
    assert len(text) < 300 and text.startswith("CompressedModel(") and "lossless" in text
    assert str(packed) == text


def test_bits_per_value_is_the_model_average(minilm: Any) -> None:
    sd = {k: v for k, v in minilm.state_dict().items() if k.startswith("encoder.layer.0.")}
    packed = tp.compress_model(sd, bits_per_value=3.0)
    values = sum(v.numel() for v in sd.values())
    assert 8 * packed.nbytes / values <= 3.0
    for name, v in sd.items():  # norms and biases stay exact; matrices get unequal shares
        if v.dim() == 1:
            assert packed[name].method == "lossless"
            assert torch.equal(tp.decompress(packed[name]), v)
    rates = {n: 8 * packed[n].nbytes / sd[n].numel() for n in sd if sd[n].dim() == 2}
    assert max(rates.values()) - min(rates.values()) > 0.2, rates
    assert all("model bits_per_value=3" in packed.plans[n].constraint for n in rates)


def test_unreachable_budget_warns_or_raises() -> None:
    w = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    with pytest.warns(UserWarning, match="cannot be met"):
        p = tp.plan(w, bits_per_value=0.5, video=False)
    assert not p.budget_met and "NOT MET" in p.summary() and f"{p.chosen.bits_per_value:.2f}" in p.summary()
    with pytest.raises(tp.InvalidArgumentError, match="cannot be met"):
        tp.plan(w, bits_per_value=0.5, video=False, strict=True)
    with pytest.warns(UserWarning, match="cannot be met"):
        tp.compress_model({"w": torch.from_numpy(w)}, bits_per_value=0.5)
    with pytest.raises(tp.InvalidArgumentError, match="cannot be met"):
        tp.compress_model({"w": torch.from_numpy(w)}, bits_per_value=0.5, strict=True)


def test_plan_repr_is_one_line() -> None:
    p = tp.plan(np.ones((64, 64), dtype=np.float32), video=False)
    assert "\n" not in repr(p) and repr(p).startswith("Plan(float32[64x64]: ") and len(repr(p)) < 200
