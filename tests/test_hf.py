"""Folders in, ready models out: save_pretrained / from_pretrained on the real MiniLM and SmolLM2."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tensorpress as tp
from tensorpress import hf, hf_folder, samples

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
evaluation = pytest.importorskip("tensorpress.evaluation")


@pytest.fixture(scope="module")
def minilm() -> tuple[Any, Any]:
    return evaluation.load_minilm()


@pytest.fixture(scope="module")
def texts() -> list[str]:
    # identity checks need few tokens (BCT's simulated integer forward is slow on CPU)
    return [t[:300] for t in evaluation.eval_texts(6)]


@pytest.fixture(scope="module")
def lossless_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("minilm") / "lossless"
    tp.save_pretrained(samples.minilm_dir(), out)
    return out


def _embeddings(model: Any, tok: Any, texts: list[str]) -> Any:
    return evaluation.sentence_embeddings(model, tok, texts)


def test_lossless_folder_gives_identical_outputs(
    lossless_folder: Path, minilm: tuple[Any, Any], texts: list[str]
) -> None:
    names = set(os.listdir(lossless_folder))
    assert {"model.tpz", "config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json"} <= names
    model = tp.from_pretrained(lossless_folder)
    ref, tok = minilm
    assert not model.training
    assert torch.equal(_embeddings(model, tok, texts), _embeddings(ref, tok, texts))
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_four_bits_model_average_keeps_embeddings(
    tmp_path: Path, minilm: tuple[Any, Any], texts: list[str]
) -> None:
    saved = tp.save_pretrained(samples.minilm_dir(), tmp_path / "b4", bits_per_value=4.0)
    ref, tok = minilm
    values = sum(p.numel() for p in ref.parameters())
    stored_bits = 8 * (tmp_path / "b4" / "model.tpz").stat().st_size
    assert stored_bits / values <= 4.3, stored_bits / values  # every parameter counted
    assert "payload" not in repr(saved) and len(repr(saved)) < 300
    with tp.open(tmp_path / "b4" / "model.tpz") as f:
        methods = {e["name"]: e["method"] for e in f.entries()}
    assert all(m == "lossless" for n, m in methods.items() if "LayerNorm" in n or n.endswith(".bias"))
    assert methods["embeddings.word_embeddings.weight"] != "lossless"
    model = tp.from_pretrained(tmp_path / "b4")
    cos = evaluation.embedding_cosine(ref, model, tok, evaluation.eval_texts(32))
    assert cos >= 0.95, cos


def test_keep_patterns_stay_lossless(tmp_path: Path) -> None:
    weights = samples.minilm_weights()
    state = {k: torch.from_numpy(v) for k, v in weights.items() if k.startswith("encoder.layer.0.")}
    tp.save_pretrained(state, tmp_path / "k", bits_per_value=4.0, keep=["*attention.self.query*"])
    back = hf.load_state(tmp_path / "k")
    exact = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(back[exact], state[exact])
    lossy = "encoder.layer.0.attention.self.key.weight"
    assert not torch.equal(back[lossy], state[lossy])


@pytest.mark.parametrize("zero_point", [False, True], ids=["w8a8", "w4a8-zero-point"])
def test_bct_saved_as_is(tmp_path: Path, minilm: tuple[Any, Any], texts: list[str], zero_point: bool) -> None:
    from tensorpress.quant import bct

    model, tok = evaluation.load_minilm()
    config = bct.BCTConfig(4, 8, 32, weight_zero_point=True) if zero_point else bct.BCTConfig()
    bct.quantize_model(model, config)
    tp.save_pretrained(model, tmp_path / "bct", tokenizer=tok)
    back = tp.from_pretrained(tmp_path / "bct")
    assert any(isinstance(m, bct.BCTLinear) for m in back.modules())
    expected = _embeddings(model, tok, texts)
    assert torch.equal(_embeddings(back, tok, texts), expected)
    tp.save_pretrained(tmp_path / "bct", tmp_path / "again")  # a folder re-saved keeps its recipe
    assert torch.equal(_embeddings(tp.from_pretrained(tmp_path / "again"), tok, texts), expected)


def test_rom_and_tender_saved_as_is(tmp_path: Path, texts: list[str]) -> None:
    from tensorpress.lowrank import rom
    from tensorpress.quant import tender

    model, tok = evaluation.load_minilm()
    calibration = evaluation.calibration_texts(4)
    enc = tok(calibration, return_tensors="pt", padding=True, truncation=True, max_length=32)
    budget = rom.plan_budget(model, 0.9, n_blocks=2)  # 90 % of the parameters kept
    rom.rom_compress(model, [dict(enc)], budget, progress=False)
    expected = _embeddings(model, tok, texts)
    tp.save_pretrained(model, tmp_path / "rom")
    back = tp.from_pretrained(tmp_path / "rom")
    assert torch.equal(_embeddings(back, tok, texts), expected)

    # Tender on the last block, whose linears ROM has factored: both recipes replay, in order
    layers = tender.convert_model(back, tender.TenderConfig(), include=lambda name, _m: ".5." in name)
    tender.calibrate(back, [dict(enc)])
    assert any(name.endswith("query.0") for name in layers)
    expected = _embeddings(back, tok, texts)
    tp.save_pretrained(back, tmp_path / "rom_tender")
    again = tp.from_pretrained(tmp_path / "rom_tender")
    assert sum(isinstance(m, tender.TenderLinear) for m in again.modules()) == len(layers)
    assert torch.equal(_embeddings(again, tok, texts), expected)


def test_lossy_refused_for_transformed_models(tmp_path: Path) -> None:
    from tensorpress.quant import bct

    model, _ = evaluation.load_minilm()
    bct.quantize_model(model)
    with pytest.raises(tp.InvalidArgumentError, match="as it is"):
        tp.save_pretrained(model, tmp_path / "x", bits_per_value=4.0)


def test_sharded_folder_round_trip(tmp_path: Path, lossless_folder: Path) -> None:
    state = hf.load_state(lossless_folder)
    saved = tp.save_pretrained(lossless_folder, tmp_path / "sharded", max_shard_size=20 << 20)
    index = hf_folder.read_json(tmp_path / "sharded" / hf_folder.TPZ_INDEX)
    assert len(set(index["weight_map"].values())) == len(saved.files) - 1 >= 3
    back = hf.load_state(tmp_path / "sharded")
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    model = tp.from_pretrained(tmp_path / "sharded")
    assert model.embeddings.word_embeddings.weight.shape == (30522, 384)
    # saving again unsharded into the same folder removes the old shards
    tp.save_pretrained(lossless_folder, tmp_path / "sharded")
    assert sorted(p.name for p in (tmp_path / "sharded").glob("model*")) == ["model.tpz"]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _make_sharded_index(folder: Path, shard: str) -> None:
    (folder / "model.tpz").rename(folder / "model-00001-of-00001.tpz")
    with tp.open(folder / "model-00001-of-00001.tpz") as f:
        names = list(f)
    hf_folder.write_json(folder / hf_folder.TPZ_INDEX, {"weight_map": dict.fromkeys(names, shard)})


@pytest.mark.parametrize("shard", ["../model.tpz", "/etc/passwd", "sub/model.tpz", "..", ""])
def test_index_shard_names_are_plain_files(tmp_path: Path, lossless_folder: Path, shard: str) -> None:
    folder = _copy(lossless_folder, tmp_path / "f")
    _make_sharded_index(folder, shard)
    with pytest.raises(tp.FormatError, match=r"model\.tpz\.index\.json"):
        tp.from_pretrained(folder)


def test_index_symlink_out_of_folder_refused(tmp_path: Path, lossless_folder: Path) -> None:
    folder = _copy(lossless_folder, tmp_path / "f")
    _make_sharded_index(folder, "model-00001-of-00001.tpz")
    outside = tmp_path / "outside.tpz"
    (folder / "model-00001-of-00001.tpz").rename(outside)
    (folder / "model-00001-of-00001.tpz").symlink_to(outside)
    with pytest.raises(tp.FormatError, match="outside the folder"):
        tp.from_pretrained(folder)


@pytest.mark.parametrize(
    ("file", "text"),
    [("config.json", "{not json"), ("config.json", "[1, 2]"), ("model.tpz.index.json", '{"weight_map": 3}')],
)
def test_malformed_json_names_the_file(tmp_path: Path, lossless_folder: Path, file: str, text: str) -> None:
    folder = _copy(lossless_folder, tmp_path / "f")
    (folder / file).write_text(text)
    with pytest.raises(tp.FormatError, match=file.replace(".", r"\.")):
        tp.from_pretrained(folder)


def test_hostile_config_sizes_refused_before_building(tmp_path: Path, lossless_folder: Path) -> None:
    folder = _copy(lossless_folder, tmp_path / "f")
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 1 << 40  # would allocate a 8 TB position_ids buffer
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(tp.FormatError, match="max_position_embeddings"):
        tp.from_pretrained(folder)


def test_remote_code_never_runs(tmp_path: Path, lossless_folder: Path) -> None:
    folder = _copy(lossless_folder, tmp_path / "f")
    marker = tmp_path / "ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["EvilModel"]
    config["auto_map"] = {"AutoModel": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(tp.FormatError, match="trust_remote_code"):
        tp.from_pretrained(folder)
    assert not marker.exists()


def test_weights_must_match_the_model(tmp_path: Path, lossless_folder: Path) -> None:
    state = hf.load_state(lossless_folder)
    config = hf_folder.read_json(lossless_folder / "config.json")
    extra = dict(state, **{"encoder.bogus.weight": torch.zeros(3)})
    tp.save_pretrained(extra, tmp_path / "extra", config=config)
    with pytest.raises(tp.FormatError, match="bogus"):
        tp.from_pretrained(tmp_path / "extra")
    missing = {k: v for k, v in state.items() if k != "pooler.dense.weight"}
    tp.save_pretrained(missing, tmp_path / "missing", config=config)
    with pytest.raises(tp.FormatError, match=r"pooler\.dense\.weight"):
        tp.from_pretrained(tmp_path / "missing")
    state["pooler.dense.weight"] = torch.zeros(2, 2)
    tp.save_pretrained(state, tmp_path / "shape", config=config)
    with pytest.raises(tp.FormatError, match="shape"):
        tp.from_pretrained(tmp_path / "shape")


def test_smollm2_bf16_lossless_identical_logits(tmp_path: Path) -> None:
    model, tok = evaluation.load_smollm2(torch.bfloat16)
    saved = tp.save_pretrained(model, tmp_path / "smol", tokenizer=tok)
    assert saved.tensors == len(model.state_dict()) - 1  # the tied LM head is stored once
    back = tp.from_pretrained(tmp_path / "smol")
    assert back.lm_head.weight is back.model.embed_tokens.weight
    ids = tok("The BBC reported on Monday that", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(back(ids).logits, model(ids).logits)


@settings(max_examples=100, deadline=None)
@given(name=st.text(alphabet=st.sampled_from("ab./\\\0.-_~ "), max_size=8))
def test_member_names_stay_inside(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    folder = tmp_path_factory.mktemp("names")
    try:
        path = hf_folder.member(folder, name, "index")
    except tp.FormatError:
        return
    assert path.resolve().parent == folder.resolve() and "/" not in name and name not in ("", ".", "..")


def test_video_coded_model_reloads_identically(tmp_path: Path, texts: list[str]) -> None:
    """A model whose matrices were coded by video.encode_many (model budget) is saved as it is and
    comes back with exactly the in-memory decoded weights (so the same outputs and perplexity)."""
    video = pytest.importorskip("tensorpress.video")
    model, tok = evaluation.load_minilm()
    names = [f"encoder.layer.5.attention.self.{p}.weight" for p in ("query", "key", "value")]
    state = model.state_dict()
    try:
        coded = video.encode_many({n: state[n] for n in names}, 3.0, codec="av1", qp_step=20)
    except tp.BackendUnavailableError:
        pytest.skip("no AV1 encoder")
    with torch.no_grad():
        for n in names:
            state[n].copy_(torch.as_tensor(tp.decompress(coded[n], as_kind="torch")))
    expected = _embeddings(model, tok, texts)
    saved = tp.save_pretrained({**state, **coded}, tmp_path / "video", config=model.config)
    assert "3 tensors precoded" in saved.constraint
    with tp.open(tmp_path / "video" / "model.tpz") as f:
        assert {e["name"] for e in f.entries() if e["method"] == "video"} == set(names)
    back = tp.from_pretrained(tmp_path / "video")
    assert torch.equal(_embeddings(back, tok, texts), expected)


def test_plain_safetensors_folder_is_refused_with_a_way_forward(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(
        tp.errors.FormatError, match="uncompressed safetensors weights: load it with transformers"
    ):
        tp.from_pretrained(tmp_path)


#: The calibration tests' model: big enough for video frames, a small (lossless) tied embedding.
CALIBRATION_LLAMA = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "vocab_size": 64,
    "max_position_embeddings": 64,
    "tie_word_embeddings": True,
}


def test_calibrated_video_recipe_in_one_call(tmp_path: Path, tiny_llama: Callable[..., Any]) -> None:
    """save_pretrained(method='video', calibration=ids) codes the linear weights with rotation,
    column scales and a Fisher-weighted allocation; the tied head and everything else stay
    lossless; the folder loads back close to the original."""
    pytest.importorskip("tensorpress.video")
    model = tiny_llama(**CALIBRATION_LLAMA)
    calibration = torch.randint(0, 64, (4, 32), generator=torch.Generator().manual_seed(1))
    try:
        saved = tp.save_pretrained(
            model, tmp_path / "v", bits_per_value=6.0, method="video", calibration=calibration
        )
    except tp.BackendUnavailableError:
        pytest.skip("no AV1 encoder")
    assert saved.nbytes * 8 <= 6.0 * saved.values
    linear = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    with tp.open(tmp_path / "v" / "model.tpz") as f:
        entries = {e["name"]: e for e in f.entries()}
    video = {n for n, e in entries.items() if e["method"] == "video"}
    assert (
        "model.layers.0.mlp.down_proj.weight" in video and "model.layers.1.self_attn.q_proj.weight" in video
    )
    assert video <= linear - {"lm_head.weight"}
    for n in video:
        assert entries[n]["params"]["rotate"] is True and entries[n]["params"]["col_scale"] is True
    assert entries["model.embed_tokens.weight"]["method"] == "lossless"
    back = tp.from_pretrained(tmp_path / "v")
    ids = torch.randint(0, 64, (2, 24), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want, got = model(ids).logits, back(ids).logits
    assert float((got - want).norm() / want.norm()) < 0.2
    assert back.lm_head.weight is back.model.embed_tokens.weight
    state = model.state_dict()
    for n in set(entries) - video:
        assert torch.equal(back.state_dict()[n], state[n]), n


def kl_to_original(model: Any, folder: Path, calibration: Any) -> float:
    """KL(model ‖ the model loaded from ``folder``) on ``calibration``, per sequence."""
    back = tp.from_pretrained(folder)
    with torch.no_grad():
        want = torch.log_softmax(model(calibration).logits, -1)
        got = torch.log_softmax(back(calibration).logits, -1)
    return float(torch.nn.functional.kl_div(got, want, log_target=True, reduction="batchmean"))


def test_tuned_norms_bring_the_coded_model_closer(tmp_path: Path, tiny_llama: Callable[..., Any]) -> None:
    """tune_norms=N stores norms trained against the coded weights: the folder's logits on the
    calibration ids move closer to the original model's than without tuning, only norm weights
    differ between the two folders, and the model passed in is left as it was."""
    pytest.importorskip("tensorpress.video")
    model = tiny_llama(**CALIBRATION_LLAMA)
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    calibration = torch.randint(0, 64, (8, 32), generator=torch.Generator().manual_seed(1))
    try:
        for name, steps in (("plain", 0), ("tuned", 30)):
            tp.save_pretrained(
                model, tmp_path / name, bits_per_value=3.0, method="video", calibration=calibration,
                tune_norms=steps,
            )  # fmt: skip
    except tp.BackendUnavailableError:
        pytest.skip("no AV1 encoder")
    assert all(torch.equal(model.state_dict()[n], w) for n, w in before.items())
    assert all(p.requires_grad for p in model.parameters())

    assert kl_to_original(model, tmp_path / "tuned", calibration) < 0.9 * kl_to_original(
        model, tmp_path / "plain", calibration
    )
    plain = tp.load(tmp_path / "plain" / "model.tpz")
    tuned = tp.load(tmp_path / "tuned" / "model.tpz")
    differ = {n for n in plain if not torch.equal(plain[n], tuned[n])}
    assert differ and all(n.endswith("norm.weight") for n in differ), differ


def test_tuned_scales_fold_into_the_video_tensors(tmp_path: Path, tiny_llama: Callable[..., Any]) -> None:
    """tune_scales=True also learns row and column gains of every coded linear: they land in the
    stored tables (same bitstreams, same sizes), and the folder's logits move closer to the
    original model's than with norms alone."""
    pytest.importorskip("tensorpress.video")
    model = tiny_llama(**CALIBRATION_LLAMA)
    calibration = torch.randint(0, 64, (8, 32), generator=torch.Generator().manual_seed(1))
    try:
        for name, scales in (("norms", False), ("scales", True)):
            tp.save_pretrained(
                model, tmp_path / name, bits_per_value=3.0, method="video", calibration=calibration,
                tune_norms=30, tune_scales=scales,
            )  # fmt: skip
    except tp.BackendUnavailableError:
        pytest.skip("no AV1 encoder")
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())  # hooks removed

    assert kl_to_original(model, tmp_path / "scales", calibration) < 0.9 * kl_to_original(
        model, tmp_path / "norms", calibration
    )
    with tp.open(tmp_path / "norms" / "model.tpz") as a, tp.open(tmp_path / "scales" / "model.tpz") as b:
        video = [n for n in a if a.entry(n)["method"] == "video"]
        assert video
        for n in video:
            x, y = a.compressed(n), b.compressed(n)
            assert x.nbytes == y.nbytes and x._split_payload()[2] == y._split_payload()[2], n
            assert x.payload() != y.payload(), n


def test_gain_hooks_rescale_the_weight_and_not_the_bias() -> None:
    """The tuning hooks compute exactly the layer with weight diag(r)·W·diag(c) and its own bias,
    which is what VideoTensor.with_gains stores; removing them restores the layer."""
    from tensorpress.video.tune import _gain_hooks

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 3, bias=True))
    x = torch.randn(2, 5)
    plain = model(x)
    rows, cols, handles = _gain_hooks(model, ["0.weight"], ["0.weight"])
    with torch.no_grad():
        rows["0.weight"].copy_(torch.tensor([0.5, 2.0, 1.5]))
        cols["0.weight"].copy_(torch.linspace(0.5, 1.5, 5))
        layer = model[0]
        want = torch.nn.functional.linear(
            x, rows["0.weight"][:, None] * layer.weight * cols["0.weight"][None, :], layer.bias
        )
        torch.testing.assert_close(model(x), want)
    for handle in handles:
        handle.remove()
    torch.testing.assert_close(model(x), plain)


def test_tune_norms_refusals(tmp_path: Path, tiny_llama: Callable[..., Any]) -> None:
    from tensorpress.video.tune import tune_coded, tune_norms

    model = tiny_llama(**CALIBRATION_LLAMA)
    ids = torch.randint(0, 64, (2, 16))
    with pytest.raises(tp.errors.InvalidArgumentError, match="needs calibration"):
        tp.save_pretrained(model, tmp_path / "a", bits_per_value=6.0, method="video", tune_norms=5)
    for bad in (-1, 1.5, True):
        with pytest.raises(tp.errors.InvalidArgumentError, match="tune_norms"):
            tp.save_pretrained(
                model, tmp_path / "a", bits_per_value=6.0, method="video", calibration=ids, tune_norms=bad
            )
    with pytest.raises(tp.errors.InvalidArgumentError, match="needs tune_norms"):
        tp.save_pretrained(
            model, tmp_path / "a", bits_per_value=6.0, method="video", calibration=ids, tune_scales=True
        )
    with pytest.raises(tp.errors.InvalidArgumentError, match="tune_scales"):
        tp.save_pretrained(
            model, tmp_path / "a", bits_per_value=6.0, method="video", calibration=ids, tune_norms=1,
            tune_scales="yes",
        )  # fmt: skip
    with pytest.raises(tp.errors.InvalidArgumentError, match=r"nn\.Linear"):
        tune_coded(model, ids, {}, 1, row_gains=["model.norm.weight"])
    with pytest.raises(tp.errors.InvalidArgumentError, match="schedule"):
        tune_coded(model, ids, {}, 1, schedule="linear")
    with pytest.raises(tp.errors.InvalidArgumentError, match="positive"):
        tune_norms(model, ids, {}, 0)
    with pytest.raises(tp.errors.InvalidArgumentError, match="not a parameter"):
        tune_norms(model, ids, {"nope.weight": torch.zeros(3)}, 1)
    with pytest.raises(tp.errors.InvalidArgumentError, match="no RMSNorm"):
        tune_norms(torch.nn.Sequential(torch.nn.Linear(4, 4)), ids, {}, 1)


def test_calibration_is_refused_where_it_cannot_apply(tmp_path: Path, tiny_llama: Callable[..., Any]) -> None:
    model = tiny_llama(**CALIBRATION_LLAMA)
    ids = torch.randint(0, 64, (2, 16))
    with pytest.raises(tp.errors.InvalidArgumentError, match="method='video'"):
        tp.save_pretrained(model, tmp_path / "a", bits_per_value=6.0, calibration=ids)
    with pytest.raises(tp.errors.InvalidArgumentError, match="method='video'"):
        tp.save_pretrained(model, tmp_path / "a", method="video", max_rel_error=0.01, calibration=ids)
    with pytest.raises(tp.errors.InvalidArgumentError, match="needs a model"):
        tp.save_pretrained(
            model.state_dict(), tmp_path / "a", bits_per_value=6.0, method="video", calibration=ids,
            config=model.config,
        )  # fmt: skip
    with pytest.raises(tp.errors.InvalidArgumentError, match="streaming"):
        tp.save_pretrained(
            model, tmp_path / "a", bits_per_value=6.0, method="video", calibration=ids, streaming=True
        )
    for bad in (ids[0], ids.float(), ids[:, :1], [[1.5, 2.0]]):
        with pytest.raises(tp.errors.InvalidArgumentError, match="token ids"):
            tp.save_pretrained(model, tmp_path / "a", bits_per_value=6.0, method="video", calibration=bad)
