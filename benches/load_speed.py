"""Model load speed: ``tp.load`` of a bf16 ``.tpz`` against safetensors load + copy of the same
tensors, both from the page cache, in one run on the same machine; plus ``tp.save`` speed.

The safetensors baseline is the faster of ``load(path.read_bytes())`` (read + copy into owned
tensors) and ``load_file`` (mmap) followed by ``clone()`` of every tensor, the clones kept until
all are made (as a loaded model keeps them: a clone dropped at once hands its memory to the next
one, so it never pays for fresh pages, which every real load does).

Each baseline runs twice. *Warm heap*: repetition after repetition in one process, where glibc
hands the clones the memory the previous repetition freed (tensors under its mmap threshold,
which rises to 32 MiB as large blocks are freed), already mapped and never cleared again: a
memcpy at 8-12 GB/s that no load of a model into a new process gets. *Fresh memory*: the same
with ``malloc_trim(0)`` before each repetition (untimed), which returns freed heap pages to the
kernel, so the clones fault in and clear their pages as a first load does. ``tp.load`` decodes
into its own fresh mapping every time, so its rows are the same either way; both ratios are
printed. ``--cold`` measures first loads in fresh processes, the case users meet.

Models: SmolLM2-135M (the Q4_1 GGUF dequantized to bf16 by transformers) and MiniLM-L6-v2 (fp32
cast to bf16), both from pip packages (``tensorpress.samples``). MB/s are raw bf16 bytes per
second, best of ``--repeats``; the save's traced peak memory (``tracemalloc``) is printed too.
``tp.save`` writes a new file each time (the previous one is removed untimed): replacing an existing
file also pays the kernel's freeing of the old file's page cache inside the rename (about 0.1 s per
GB here), which is not the encoder's cost.

With ``--cold N`` each model is also loaded N times in a fresh interpreter (the page cache
warm, the process new, as a user's first load): safetensors ``load_file`` + clones, and
``tp.load`` with transparent huge pages on and off (``TENSORPRESS_HUGE_PAGES``); best, median
and worst ms of the load call alone.

    python benches/load_speed.py                      # both models
    python benches/load_speed.py --models minilm --repeats 3
    python benches/load_speed.py --cold 6             # and first loads in fresh processes
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

import tensorpress as tp
from tensorpress import entropy, samples


def _release_freed_memory() -> bool:
    """Hands freed heap memory back to the kernel (glibc ``malloc_trim``); False where there is
    no glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def _best(fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] = lambda: None) -> float:
    setup()
    fn()  # warm-up: page cache, allocator, thread pool
    best = float("inf")
    for _ in range(repeats):
        setup()
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
        del result  # freed untimed: a load's cost is getting the tensors, not dropping them
    return best


def smollm2_bf16() -> dict[str, np.ndarray]:
    import torch

    from tensorpress import evaluation

    model, _ = evaluation.load_smollm2(torch.bfloat16)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    # Tied embeddings appear twice in the state dict; keep each storage once.
    seen: set[int] = set()
    out = {}
    for name, t in state.items():
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        out[name] = t.view(torch.uint8).numpy().view(ml_dtypes.bfloat16).reshape(tuple(t.shape)).copy()
    return out


def minilm_bf16() -> dict[str, np.ndarray]:
    return {k: v.astype(ml_dtypes.bfloat16) for k, v in samples.minilm_weights().items()}


MODELS: dict[str, Callable[[], dict[str, np.ndarray]]] = {"smollm2-135m": smollm2_bf16, "minilm": minilm_bf16}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_model(
    name: str, weights: dict[str, np.ndarray], workdir: Path, repeats: int, cold_runs: int = 0
) -> tuple[list[str], list[str]]:
    """(rows of the in-process table, rows of the fresh-process table)."""
    import torch
    from safetensors.torch import load, load_file, save_file

    raw = sum(w.nbytes for w in weights.values())
    tpz = workdir / f"{name}.tpz"
    st = workdir / f"{name}.safetensors"
    as_torch = {k: torch.from_numpy(v.view(np.uint8).copy()).view(torch.bfloat16) for k, v in weights.items()}
    save_file(as_torch, str(st))
    save_s = _best(lambda: tp.save(weights, tpz), max(1, repeats // 2), lambda: tpz.unlink(missing_ok=True))
    save_peak = _traced_peak(lambda: tp.save(weights, tpz))
    for p in (tpz, st):  # into the page cache
        p.read_bytes()

    def safetensors_mmap_clone() -> dict[str, Any]:
        loaded = load_file(str(st))  # lazily mapped
        return {k: t.clone() for k, t in loaded.items()}

    def safetensors_read_load() -> dict[str, Any]:
        return load(st.read_bytes())  # read from the page cache, then copied into owned tensors

    outs = {k: np.empty_like(v) for k, v in weights.items()}
    rows = []
    read_load = _best(safetensors_read_load, repeats)
    mmap_clone = _best(safetensors_mmap_clone, repeats)
    fresh = _release_freed_memory()
    read_load_fresh = _best(safetensors_read_load, repeats, _release_freed_memory)
    mmap_clone_fresh = _best(safetensors_mmap_clone, repeats, _release_freed_memory)
    # The baseline is the faster of the two ways to get owned tensors out of safetensors.
    base_warm = min(read_load, mmap_clone)
    base_fresh = min(read_load_fresh, mmap_clone_fresh) if fresh else float("nan")
    timings = {
        "safetensors read + load, warm heap": read_load,
        "safetensors load_file (mmap) + clone, warm heap": mmap_clone,
    }
    if fresh:
        timings["safetensors read + load, fresh memory"] = read_load_fresh
        timings["safetensors load_file (mmap) + clone, fresh memory"] = mmap_clone_fresh
    timings["tp.load (all threads)"] = _best(lambda: tp.load(tpz), repeats)
    # threads= and out= are newer than some builds this script is run against (before/after).
    for what, fn in [
        ("tp.load (1 thread)", lambda: tp.load(tpz, threads=1)),
        ("tp.load out= (all threads)", lambda: tp.load(tpz, out=outs)),
    ]:
        with contextlib.suppress(TypeError):
            timings[what] = _best(fn, repeats)
    cold = cold_rows(name, tpz, st, cold_runs) if cold_runs else []
    check = tp.load(tpz)
    assert all(check[k].tobytes() == v.tobytes() for k, v in weights.items()), "round trip differs"
    ratio = tpz.stat().st_size / raw
    for what, t in timings.items():
        head = f"| {name} | {len(weights)} | {raw / 1e6:.1f} | {ratio:.2%} | {what}"
        rows.append(f"{head} | {raw / t / 1e6:,.0f} | {base_fresh / t:.2f}x | {base_warm / t:.2f}x |")
    save_row = f"tp.save (new file) | {raw / save_s / 1e6:,.0f} | | |"
    rows.append(f"| {name} | {len(weights)} | {raw / 1e6:.1f} | {ratio:.2%} | {save_row}")
    peak_row = f"tp.save traced peak memory: {save_peak / 1e6:,.1f} MB | | | |"
    rows.append(f"| {name} | {len(weights)} | {raw / 1e6:.1f} | {ratio:.2%} | {peak_row}")
    return rows, cold


_COLD_LOAD = """
import sys, time
import torch
from safetensors.torch import load_file
import tensorpress as tp
import tensorpress.container  # imported before the clock starts, as tp.load imports it lazily
path = sys.argv[1]
t = time.perf_counter()
if path.endswith(".safetensors"):
    result = {k: v.clone() for k, v in load_file(path).items()}
else:
    result = tp.load(path)
print(time.perf_counter() - t)
"""


def cold_rows(name: str, tpz: Path, st: Path, runs: int) -> list[str]:
    """First loads in fresh interpreters, ms: one row per path, interleaved across runs."""
    paths = {
        "safetensors load_file + clones": (st, "1"),
        "tp.load, huge pages": (tpz, "1"),
        "tp.load, TENSORPRESS_HUGE_PAGES=0": (tpz, "0"),
    }
    times: dict[str, list[float]] = {what: [] for what in paths}
    for _ in range(runs):
        for what, (path, huge) in paths.items():
            env = dict(os.environ, TENSORPRESS_HUGE_PAGES=huge)
            done = subprocess.run(
                [sys.executable, "-c", _COLD_LOAD, str(path)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            times[what].append(float(done.stdout) * 1e3)
    rows = []
    for what, ts in times.items():
        ts.sort()
        rows.append(f"| {name} | {what} | {ts[0]:.1f} | {ts[len(ts) // 2]:.1f} | {ts[-1]:.1f} |")
    return rows


def _traced_peak(fn: Callable[[], Any]) -> int:
    """Peak Python-allocated memory (``tracemalloc``) while ``fn`` runs: what a save holds beyond
    its inputs (coded payloads are Python ``bytes``)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cold", type=int, default=0, help="fresh-process loads per path (0: none)")
    args = ap.parse_args()
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = " ".join(
                    f
                    for f in ("avx2", "bmi2", "avx512f", "avx512bw", "avx512vbmi", "avx512vbmi2")
                    if f in have
                )
                break
    except OSError:
        pass
    pool = getattr(entropy, "pool_threads", lambda: "n/a")()
    print(f"# load speed — {cpu_model()}, {os.cpu_count()} CPUs, pool {pool} workers")
    print(f"# CPU flags (relevant): {flags or 'n/a'}; load average {os.getloadavg()}")
    print()
    head = "| model | tensors | raw MB | .tpz / raw | path | MB/s"
    print(f"{head} | vs safetensors, fresh memory | vs safetensors, warm heap |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    cold: list[str] = []
    with tempfile.TemporaryDirectory() as d:
        for name in args.models:
            rows, cold_of_model = bench_model(name, MODELS[name](), Path(d), args.repeats, args.cold)
            for row in rows:
                print(row, flush=True)
            cold += cold_of_model
    if cold:
        print()
        print(f"First load in a fresh process (page cache warm), {args.cold} runs, ms of the load call:")
        print()
        print("| model | path | best | median | worst |")
        print("|---|---|---:|---:|---:|")
        print("\n".join(cold))


if __name__ == "__main__":
    main()
