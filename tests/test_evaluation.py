"""Shared evaluation helpers: splits, windows, metrics on the real models."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tensorpress import evaluation as ev  # noqa: E402
from tensorpress.errors import InvalidArgumentError  # noqa: E402


def test_splits_disjoint_and_deterministic():
    cal, evl = ev.calibration_texts(), ev.eval_texts()
    assert len(cal) > 1000 and len(evl) > 1000
    assert not set(cal) & set(evl)
    assert ev.calibration_texts(5) == cal[:5] and ev.eval_texts(5) == evl[:5]
    with pytest.raises(InvalidArgumentError):
        ev.eval_texts(-1)


def test_minilm_cosine_and_copies():
    a, tok = ev.load_minilm()
    b, _ = ev.load_minilm()
    assert a is not b and a.embeddings.word_embeddings.weight is not b.embeddings.word_embeddings.weight
    texts = ev.eval_texts(3)
    assert ev.embedding_cosine(a, b, tok, texts) == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        b.encoder.layer[0].output.dense.weight.mul_(-1.0)
    assert ev.embedding_cosine(a, b, tok, texts) < 0.999
    assert len(ev.linear_layers(a)) == 37
    assert ev.sentence_embeddings(a, tok, texts).shape == (3, 384)
    with pytest.raises(InvalidArgumentError):
        ev.sentence_embeddings(a, tok, [])


def test_smollm2_perplexity_window():
    torch.set_num_threads(2)
    model, tok = ev.load_smollm2()
    texts = ev.eval_texts(3)
    w = ev.token_windows(tok, texts, 64, 2)
    assert w.shape == (2, 64)
    assert torch.equal(w, ev.token_windows(tok, texts, 64, 2))
    ppl = ev.perplexity(model, tok, texts, seq_len=64, max_windows=1)
    assert math.isfinite(ppl) and 2 < ppl < 200
    assert ev.perplexity(model, tok, texts, seq_len=64, max_windows=1) == ppl
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, counted once
    assert ev.count_parameters(model) == 134_515_008
    with pytest.raises(InvalidArgumentError):
        ev.token_windows(tok, texts, 1)
    with pytest.raises(InvalidArgumentError):
        ev.perplexity(model, tok, ["hi"], seq_len=64)
