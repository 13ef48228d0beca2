"""Streaming compression of sharded bf16 checkpoints: peak RSS vs model size, throughput vs
workers, byte equality with the in-memory path, and a projection to 7B/70B on 1/8/64 machines.

Synthetic checkpoints (llama-like 4096×4096 bf16 matrices, N(0, 0.02²), 512 MiB source shards,
an index and a config) are generated under ``--tmp`` and deleted afterwards. Every measured run is
a child process, so its peak RSS (``getrusage(RUSAGE_CHILDREN).ru_maxrss``, i.e. the kernel's
high-water mark of the child) covers only that run.

    PYTHONPATH=python python benches/streaming_bench.py --sizes 0.5 1 2 --workers 1 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

ROWS = COLS = 4096
SOURCE_SHARD = 512 << 20


def make_checkpoint(folder: Path, total_bytes: int, seed: int = 0) -> int:
    """Write a sharded bf16 safetensors folder of about ``total_bytes``; returns its tensor bytes."""
    from tensorpress import hf_folder
    from tensorpress.safetensors_stream import write_streaming

    rng = np.random.default_rng(seed)
    per = ROWS * COLS * 2
    count = max(1, round(total_bytes / per))
    names = [
        f"model.layers.{i // 7}.{('q', 'k', 'v', 'o', 'gate', 'up', 'down')[i % 7]}.weight"
        for i in range(count)
    ]
    per_shard = max(1, SOURCE_SHARD // per)
    shards = [names[i : i + per_shard] for i in range(0, count, per_shard)]
    folder.mkdir(parents=True)
    weight_map = {}
    for k, group in enumerate(shards):
        file = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        specs = [(n, "bfloat16", (ROWS, COLS)) for n in sorted(group)]
        values = (
            (rng.standard_normal((ROWS, COLS), np.float32) * 0.02).astype(ml_dtypes.bfloat16) for _ in specs
        )
        write_streaming(folder / file, specs, values)
        weight_map.update(dict.fromkeys(group, file))
    hf_folder.write_json(folder / hf_folder.SAFETENSORS_INDEX, {"metadata": {}, "weight_map": weight_map})
    hf_folder.write_json(folder / hf_folder.CONFIG, {"model_type": "llama", "hidden_size": COLS})
    return count * per


# --- child processes (one measured run each) -------------------------------------------------


def child(mode: str, a: str, b: str, workers: int) -> dict[str, Any]:
    start = time.perf_counter()
    out: dict[str, Any] = {}
    if mode == "compress":
        from tensorpress import streaming

        r = streaming.compress_folder(a, b, workers=workers)
        out["nbytes"], out["raw"] = r.nbytes, r.raw_nbytes
    elif mode == "reload":  # every tensor decoded shard by shard and compared with the source bits
        from tensorpress import streaming
        from tensorpress.safetensors_stream import folder_tensors, read_tensor

        source = {t.name: t for t in folder_tensors(Path(b))}
        equal = 0
        for name, value in streaming.iter_folder(a, as_kind="numpy"):
            ref = read_tensor(source.pop(name), as_torch=False)
            equal += bool(np.array_equal(value.view(np.uint8), ref.view(np.uint8)))
        out["equal"], out["missing"] = equal, len(source)
    elif mode == "inmemory":
        from tensorpress import hf

        hf.save_pretrained(a, b)
    out["wall_s"] = time.perf_counter() - start
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = ru.ru_utime + ru.ru_stime
    out["peak_rss_mb"] = ru.ru_maxrss / 1024
    return out


def run_child(mode: str, a: Path, b: Path, workers: int = 1) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, str(a), str(b), str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{mode} failed: {proc.stderr[-2000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(16 << 20):
            h.update(chunk)
    return h.hexdigest()


# --- projection ------------------------------------------------------------------------------


#: SmolLM2-135M through ``video.encode_many`` at a model budget on 2 vCPUs, as issue 16 reports it
#: (not re-measured here): 416 s for 134.5 M bf16 parameters.
VIDEO_S_PER_GB = 416 / (134.5e6 * 2 / 1e9)


def projection(s_per_gb: float, what: str, shard_gb: float) -> list[str]:
    """Wall time of 7B/70B bf16 on 1/8/64 machines that each run ``s_per_gb`` seconds per source
    GB (ranks own whole shards, so a rank's work is ceil(shards / machines) shards)."""
    lines = [f"{what}: {s_per_gb:.1f} s per source GB per machine, shards of {shard_gb:g} GB"]
    for label, params in (("7B", 7e9), ("70B", 70e9)):
        gb = params * 2 / 1e9
        shards = math.ceil(gb / shard_gb)
        for machines in (1, 8, 64):
            per_rank = math.ceil(shards / machines)
            wall = per_rank * shard_gb * s_per_gb
            lines.append(
                f"  {label} ({gb:.0f} GB, {shards} shards), {machines:>2} machines: "
                f"ceil({shards}/{machines}) = "
                f"{per_rank} x {shard_gb:g} GB x {s_per_gb:.1f} s/GB = {wall:,.0f} s ({wall / 3600:.2f} h)"
            )
    return lines


def print_projection(wall_s_per_gb: float, cpu_s_per_gb: float) -> None:
    print(f"lossless CPU cost: {cpu_s_per_gb:.2f} CPU-s per GB (a 2-vCPU machine, cores scaling: /2)")
    for line in projection(wall_s_per_gb, "lossless, measured wall (this 2-vCPU machine)", 2.0):
        print(line)
    for line in projection(VIDEO_S_PER_GB, "video at a model budget (issue 16's 416 s SmolLM2 figure)", 0.25):
        print(line)


# --- SmolLM2: the distributed video allocation on real weights --------------------------------

_RANK = """
import sys, time
from tensorpress import streaming_dist
start = time.perf_counter()
comm = streaming_dist.comm_from_env()
streaming_dist.compress_folder_at_budget(sys.argv[1], sys.argv[2], float(sys.argv[3]), comm=comm,
                                         max_shard_size=int(sys.argv[4]))
print(time.perf_counter() - start)
"""


def smollm2_check(root: Path, layers: int, bits: float) -> None:
    """The first ``layers`` decoder layers of SmolLM2-135M (bf16) as a safetensors folder, coded at
    a model budget by 2 ranks and by the in-memory path; every coded tensor must match."""
    import os
    import socket

    from safetensors.torch import save_file

    from tensorpress import _core, container, hf, hf_folder
    from tensorpress.evaluation import _smollm2_pristine

    model, _ = _smollm2_pristine("bfloat16")
    state = {
        k: v.detach().clone().contiguous()
        for k, v in model.state_dict().items()
        if k.startswith(tuple(f"model.layers.{i}." for i in range(layers)))
    }
    src, out = root / "smollm2-src", root / "smollm2-2ranks"
    src.mkdir()
    save_file(state, str(src / "model.safetensors"), metadata={"format": "pt"})
    hf_folder.write_json(src / "config.json", {"model_type": "llama"})
    raw = sum(v.numel() * 2 for v in state.values())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    args = [sys.executable, "-c", _RANK, str(src), str(out), str(bits), str(raw // 4)]
    start = time.perf_counter()
    procs = [subprocess.Popen(args, env=env | {"RANK": str(r)}, stdout=subprocess.PIPE) for r in range(2)]
    outs = [p.communicate()[0] for p in procs]
    two = time.perf_counter() - start
    if any(p.returncode for p in procs):
        raise RuntimeError("a rank failed")
    start = time.perf_counter()
    packed, _, _ = hf.compress_state(state, bits_per_value=bits, method="video", header_bytes=768)
    one = time.perf_counter() - start
    got = {}
    for shard in hf_folder.tpz_shards(out)[0]:
        with container.open(shard) as f:
            got.update({e["name"]: (e["crc32c"], e["params"], e["method"]) for e in f.entries()})
    same = all(got[n][:2] == (_core.crc32c(o.payload()), o.header()) for n, o in packed.items())
    videos = sum(e[2] == "video" for e in got.values())
    print(
        f"SmolLM2-135M layers 0-{layers - 1}: {len(state)} tensors, {raw / 1e6:.1f} MB bf16, "
        f"{bits} bits/value; 2 ranks {two:.1f} s wall (rank times {[o.decode().strip() for o in outs]}), "
        f"in memory {one:.1f} s; every tensor identical: {same} ({videos} video-coded)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="checkpoint sizes, GB")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--throughput-size", type=float, default=1.0, help="size (GB) of the workers sweep")
    p.add_argument("--inmemory-size", type=float, default=2.0, help="size (GB) compared with save_pretrained")
    p.add_argument("--tmp", default=tempfile.gettempdir())
    p.add_argument("--child", nargs=4, metavar=("MODE", "A", "B", "WORKERS"), help=argparse.SUPPRESS)
    p.add_argument("--project", type=float, nargs=2, metavar=("WALL_S_PER_GB", "CPU_S_PER_GB"))
    p.add_argument("--smollm2-layers", type=int, default=0, help="only: the 2-rank video check on SmolLM2")
    args = p.parse_args()
    if args.smollm2_layers:
        root = Path(tempfile.mkdtemp(prefix="tp-streaming-smollm2-", dir=args.tmp))
        try:
            smollm2_check(root, args.smollm2_layers, 4.0)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    if args.project:
        print_projection(*args.project)
        return
    if args.child:
        mode, a, b, w = args.child
        print(json.dumps(child(mode, a, b, int(w))))
        return
    rows = []
    root = Path(tempfile.mkdtemp(prefix="tp-streaming-bench-", dir=args.tmp))
    try:
        for size in args.sizes:
            src, out = root / f"src-{size:g}", root / f"out-{size:g}"
            raw = make_checkpoint(src, int(size * 1e9))
            sweep = args.workers if size == args.throughput_size else [max(args.workers)]
            for w in sweep:
                shutil.rmtree(out, ignore_errors=True)
                c = run_child("compress", src, out, w)
                rows.append({"size_gb": raw / 1e9, "workers": w, "mode": "compress", **c})
                print(json.dumps(rows[-1]), flush=True)
            r = run_child("reload", out, src)
            rows.append({"size_gb": raw / 1e9, "workers": 1, "mode": "reload", **r})
            print(json.dumps(rows[-1]), flush=True)
            if size == args.inmemory_size:
                mem = root / f"mem-{size:g}"
                m = run_child("inmemory", src, mem)
                same = sha256(mem / "model.tpz") == sha256(out / "model.tpz")
                rows.append({"size_gb": raw / 1e9, "workers": 1, "mode": "inmemory", "identical": same, **m})
                print(json.dumps(rows[-1]), flush=True)
                shutil.rmtree(mem)
            shutil.rmtree(src)
            shutil.rmtree(out)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\n| source GB | run | workers | wall s | CPU s | peak RSS MB | RSS / size | notes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        note = ""
        if r["mode"] == "compress":
            note = f"{r['raw'] / max(r['wall_s'], 1e-9) / 1e6:.0f} MB/s, ratio {r['nbytes'] / r['raw']:.3f}"
        elif r["mode"] == "reload":
            note = f"{r['equal']} tensors bit-equal, {r['missing']} missing"
        else:
            note = f"model.tpz identical to streaming: {r['identical']}"
        share = 100 * r["peak_rss_mb"] * 2**20 / (r["size_gb"] * 1e9)
        print(
            f"| {r['size_gb']:.2f} | {r['mode']} | {r['workers']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} "
            f"| {r['peak_rss_mb']:.0f} | {share:.1f} % | {note} |"
        )
    comp = [r for r in rows if r["mode"] == "compress" and r["workers"] == max(args.workers)]
    if comp:
        gb = sum(r["size_gb"] for r in comp)
        print()
        print_projection(sum(r["wall_s"] for r in comp) / gb, sum(r["cpu_s"] for r in comp) / gb)


if __name__ == "__main__":
    main()
