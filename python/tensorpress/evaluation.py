"""Shared evaluation helpers on real material (DESIGN.md §4): models, text splits and metrics.

Everything here runs offline (``HF_HUB_OFFLINE=1`` is set on first use) on CPU, from pip packages:
SmolLM2-135M (GGUF, dequantized by transformers), MiniLM-L6-v2 (fp32 safetensors) and the BBC News
corpus. torch and transformers are imported lazily; without them a :class:`BackendUnavailableError`
names the ``eval`` extra.

Choices worth knowing when comparing numbers:

- **Splits.** The corpus (2,225 articles, sorted by path) is split by index parity: even indices
  are calibration, odd indices evaluation. Both therefore span all five categories. The corpus holds
  some verbatim duplicate articles; any evaluation text whose exact content also occurs in the
  calibration split is dropped, so the splits share no text.
- **Perplexity.** Evaluation texts are tokenized one by one (no special tokens), joined with the
  tokens of ``"\\n\\n"``, and cut into non-overlapping windows of ``seq_len`` tokens (the last partial
  window is dropped). Each window is scored on its own (no carried context); the perplexity is
  ``exp(total NLL / total predicted tokens)`` with ``seq_len - 1`` predictions per window.
- **Embedding cosine.** Sentence embeddings are attention-mask-weighted means of MiniLM's last hidden
  state (the sentence-transformers recipe, without the final L2 normalisation, which a cosine makes
  irrelevant); texts are truncated to 128 tokens.
- **Model cache.** :func:`load_smollm2` and :func:`load_minilm` parse the files once per process and
  per dtype and return a *deep copy* each call, so callers may modify the model (quantize, swap
  modules) without affecting later callers.
"""

from __future__ import annotations

import copy
import functools
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tensorpress import samples
from tensorpress.errors import BackendUnavailableError, InvalidArgumentError

if TYPE_CHECKING:
    import torch

EMBEDDING_MAX_LENGTH = 128
"""Token limit (truncation) for :func:`embedding_cosine` and :func:`sentence_embeddings`."""


def _require_torch() -> Any:
    """Import torch or raise :class:`BackendUnavailableError` naming the ``torch`` extra."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise BackendUnavailableError("tensorpress.evaluation needs torch", extra="torch") from exc
    return torch


def _require_transformers() -> Any:
    """Import transformers (offline) or raise :class:`BackendUnavailableError` naming ``eval``."""
    _require_torch()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - exercised only without transformers
        raise BackendUnavailableError(
            "tensorpress.evaluation needs transformers, gguf and accelerate", extra="eval"
        ) from exc
    return transformers


@functools.cache
def _smollm2_pristine(dtype_name: str) -> tuple[Any, Any]:
    torch = _require_torch()
    transformers = _require_transformers()
    path = samples.smollm2_gguf()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=getattr(torch, dtype_name)
    )
    model.eval()
    return model, tokenizer


@functools.cache
def _minilm_pristine() -> tuple[Any, Any]:
    transformers = _require_transformers()
    directory = str(samples.minilm_dir())
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    model = transformers.AutoModel.from_pretrained(directory)
    model.eval()
    return model, tokenizer


def load_smollm2(dtype: torch.dtype | None = None) -> tuple[Any, Any]:
    """SmolLM2-135M (Llama family) as a transformers causal LM in eval mode, and its tokenizer.

    The Q4_1 GGUF weights are dequantized to ``dtype`` (default ``torch.float32``). The parsed model
    is cached per process and dtype; every call returns an independent deep copy.
    """
    torch = _require_torch()
    dtype = torch.float32 if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InvalidArgumentError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    model, tokenizer = _smollm2_pristine(str(dtype).removeprefix("torch."))
    return copy.deepcopy(model), tokenizer


def load_minilm() -> tuple[Any, Any]:
    """MiniLM-L6-v2 (BERT family, fp32) as a transformers ``AutoModel`` in eval mode, and its
    tokenizer. Cached per process; every call returns an independent deep copy of the model."""
    model, tokenizer = _minilm_pristine()
    return copy.deepcopy(model), tokenizer


@functools.cache
def _splits() -> tuple[tuple[str, ...], tuple[str, ...]]:
    texts = samples.bbc_news_texts()
    calibration = tuple(texts[0::2])
    seen = set(calibration)
    evaluation = tuple(t for t in texts[1::2] if t not in seen)
    return calibration, evaluation


def calibration_texts(limit: int | None = None) -> list[str]:
    """BBC News articles for calibration (even corpus indices); disjoint from :func:`eval_texts`."""
    if limit is not None and limit < 0:
        raise InvalidArgumentError(f"limit must be >= 0, got {limit}")
    return list(_splits()[0][:limit])


def eval_texts(limit: int | None = None) -> list[str]:
    """BBC News articles for evaluation (odd corpus indices, minus exact duplicates of calibration
    articles); disjoint from :func:`calibration_texts`."""
    if limit is not None and limit < 0:
        raise InvalidArgumentError(f"limit must be >= 0, got {limit}")
    return list(_splits()[1][:limit])


def token_windows(tokenizer: Any, texts: Sequence[str], seq_len: int, max_windows: int | None = None) -> Any:
    """Non-overlapping ``seq_len``-token windows over the concatenated texts, as a
    ``(n_windows, seq_len)`` int64 tensor. Texts are tokenized only until ``max_windows`` windows are
    filled, so a small evaluation does not tokenize the whole corpus."""
    torch = _require_torch()
    if seq_len < 2:
        raise InvalidArgumentError(f"seq_len must be >= 2, got {seq_len}")
    if max_windows is not None and max_windows < 1:
        raise InvalidArgumentError(f"max_windows must be >= 1, got {max_windows}")
    separator = tokenizer("\n\n", add_special_tokens=False)["input_ids"]
    ids: list[int] = []
    needed = None if max_windows is None else seq_len * max_windows
    for i, text in enumerate(texts):
        if i:
            ids.extend(separator)
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if needed is not None and len(ids) >= needed:
            break
    n = len(ids) // seq_len
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise InvalidArgumentError(f"texts hold fewer than seq_len={seq_len} tokens")
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)


def perplexity(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    seq_len: int = 256,
    max_windows: int | None = None,
    batch_size: int = 4,
) -> float:
    """Perplexity of a causal LM over non-overlapping ``seq_len``-token windows of ``texts``.

    Deterministic: same texts, same windows (see the module docstring). Runs under
    ``torch.no_grad()`` in batches of ``batch_size`` windows.
    """
    torch = _require_torch()
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
    windows = token_windows(tokenizer, texts, seq_len, max_windows)
    total_nll = 0.0
    total_tokens = 0
    with torch.no_grad():
        for start in range(0, windows.shape[0], batch_size):
            batch = windows[start : start + batch_size]
            logits = model(input_ids=batch).logits.float()
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
            )
            total_nll += float(nll)
            total_tokens += batch[:, 1:].numel()
    return math.exp(total_nll / total_tokens)


def sentence_embeddings(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 16) -> Any:
    """Mean-pooled (attention-mask-weighted) last hidden states, ``(len(texts), hidden)`` float32."""
    torch = _require_torch()
    if not texts:
        raise InvalidArgumentError("texts must not be empty")
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=EMBEDDING_MAX_LENGTH,
                return_tensors="pt",
            )
            hidden = model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append((hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0))
    return torch.cat(out)


def embedding_cosine(model_ref: Any, model_test: Any, tokenizer: Any, texts: Sequence[str]) -> float:
    """Mean cosine similarity between the sentence embeddings of two BERT-family models (1.0 =
    identical directions). Used to compare a compressed MiniLM with the original."""
    torch = _require_torch()
    ref = sentence_embeddings(model_ref, tokenizer, texts)
    test = sentence_embeddings(model_test, tokenizer, texts)
    return float(torch.nn.functional.cosine_similarity(ref, test, dim=-1).mean())


def linear_layers(model: Any) -> dict[str, torch.nn.Linear]:
    """Every ``nn.Linear`` of ``model`` by qualified name, in module order (subclasses included)."""
    torch = _require_torch()
    return {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def count_parameters(model: Any) -> int:
    """Number of distinct parameters (tied weights, e.g. a shared embedding/LM head, counted once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # parameters() already de-duplicates shared tensors
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


__all__ = [
    "EMBEDDING_MAX_LENGTH",
    "calibration_texts",
    "count_parameters",
    "embedding_cosine",
    "eval_texts",
    "linear_layers",
    "load_minilm",
    "load_smollm2",
    "perplexity",
    "sentence_embeddings",
    "token_windows",
]
