"""Shared fixtures: real weights from pip packages (DESIGN.md §4), never a model hub."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# CI gates what lands, so it replays the same examples every run (TENSORPRESS_TEST_SEED, set by
# .ci/run); a local `make test` keeps exploring new random examples.
if os.environ.get("TENSORPRESS_TEST_SEED"):
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, database=None)
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def minilm() -> dict[str, np.ndarray]:
    """Real fp32 MiniLM-L6-v2 weights by name (the test skips where the package is not installed,
    as on a GPU machine that has only what was carried to it)."""
    from tensorpress import samples
    from tensorpress.errors import BackendUnavailableError

    try:
        return samples.minilm_weights()
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def minilm_e4m3_bytes(minilm: dict[str, np.ndarray]) -> np.ndarray:
    """Every MiniLM matrix cast to float8_e4m3fn (per-tensor scaled), as one uint8 array."""
    from tensorpress import samples

    parts = [samples.to_e4m3(w).view(np.uint8).reshape(-1) for w in minilm.values() if w.ndim == 2]
    return np.concatenate(parts)


@pytest.fixture(scope="session")
def tiny_llama() -> Callable[..., Any]:
    """Builds a small random ``LlamaForCausalLM`` in eval mode (seeded); keyword arguments
    override fields of its ``LlamaConfig``."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")

    def build(**overrides: Any) -> Any:
        torch.manual_seed(0)
        fields: dict[str, Any] = {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": 200,
            "max_position_embeddings": 128,
        }
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**fields, **overrides})).eval()

    return build
