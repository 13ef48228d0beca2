"""Differential tests: every decode kernel returns exactly what the scalar reference returns."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tensorpress.entropy as te
from tensorpress.errors import TensorpressError

KERNELS = te.kernels()
CODECS = list(te.CODECS)


def test_reference_kernel_listed_first() -> None:
    assert KERNELS[0] == "scalar"
    assert "interleaved" in KERNELS


@st.composite
def skewed_bytes(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(0, 50_000))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([0.3, 1.0, 3.5, 20.0]))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        return rng.integers(0, 256, n, dtype=np.uint8)
    import ml_dtypes

    return (rng.standard_normal(n) * scale).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)


@settings(max_examples=60, deadline=None)
@given(
    data=skewed_bytes(),
    codec=st.sampled_from(CODECS),
    lanes=st.integers(1, 32),
    chunk_pow=st.integers(10, 16),
)
def test_kernels_agree(data: np.ndarray, codec: str, lanes: int, chunk_pow: int) -> None:
    blob = te.encode(data, codec=codec, lanes=lanes, chunk_size=1 << chunk_pow, threads=1)
    ref = te.decode(blob, kernel="scalar", threads=1)
    np.testing.assert_array_equal(ref, data)
    for k in [*KERNELS, "auto"]:
        np.testing.assert_array_equal(te.decode(blob, kernel=k, threads=2), ref, err_msg=k)


@settings(max_examples=30, deadline=None)
@given(
    data=skewed_bytes(),
    codec=st.sampled_from(["qlc", "dlc", "huffman", "expgolomb-rank"]),
    lanes=st.sampled_from([8, 16, 32]),
)
def test_kernels_agree_on_simd_lane_counts(data: np.ndarray, codec: str, lanes: int) -> None:
    blob = te.encode(data, codec=codec, lanes=lanes, threads=1)
    for k in KERNELS:
        np.testing.assert_array_equal(te.decode(blob, kernel=k), data, err_msg=k)


def test_kernels_agree_on_real_weights() -> None:
    from tensorpress import samples

    w = samples.minilm_weights()
    arr = np.concatenate([v.reshape(-1) for v in list(w.values())[:8]])
    e4m3 = samples.to_e4m3(arr).view(np.uint8)
    bf16_hi = (arr.view(np.uint32) >> 24).astype(np.uint8)
    for plane in (e4m3, bf16_hi):
        for codec in ["qlc", "dlc", "huffman", "expgolomb", "expgolomb-rank"]:
            for lanes in (8, 32):
                blob = te.encode(plane, codec=codec, lanes=lanes)
                for k in KERNELS:
                    np.testing.assert_array_equal(te.decode(blob, kernel=k), plane, err_msg=f"{codec} {k}")


def test_unknown_kernel_is_rejected() -> None:
    blob = te.encode(np.zeros(10, np.uint8))
    with pytest.raises(TensorpressError):
        te.decode(blob, kernel="neon9000")
