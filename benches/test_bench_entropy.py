"""pytest-benchmark for the Python entry points (one call per tensor; the GIL is released).

    pytest benches/test_bench_entropy.py --benchmark-enable --benchmark-columns=median,ops

Not collected by the default test run (testpaths = tests). Throughput = 1 MiB / median.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import tensorpress.entropy as te

MiB = 1 << 20
CODECS = ["qlc", "dlc", "huffman", "expgolomb-rank"]


@pytest.fixture(scope="module")
def e4m3() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(MiB, dtype=np.float32) * 3.5).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)


@pytest.mark.parametrize("codec", CODECS)
def test_encode(benchmark, e4m3: np.ndarray, codec: str) -> None:
    blob = benchmark(te.encode, e4m3, codec=codec, threads=1)
    benchmark.extra_info["ratio"] = len(blob) / e4m3.size


@pytest.mark.parametrize("kernel", [*te.kernels(), "auto"])
@pytest.mark.parametrize("lanes", [8, 32])
@pytest.mark.parametrize("codec", CODECS)
def test_decode(benchmark, e4m3: np.ndarray, codec: str, lanes: int, kernel: str) -> None:
    blob = te.encode(e4m3, codec=codec, lanes=lanes, threads=1)
    out = np.empty_like(e4m3)
    benchmark(te.decode, blob, threads=1, kernel=kernel, out=out)
    np.testing.assert_array_equal(out, e4m3)


@pytest.mark.parametrize("threads", [1, 2])
def test_decode_threads(benchmark, e4m3: np.ndarray, threads: int) -> None:
    data = np.resize(e4m3, 16 * MiB)
    blob = te.encode(data, codec="qlc", lanes=32)
    out = np.empty_like(data)
    benchmark(te.decode, blob, threads=threads, out=out)
