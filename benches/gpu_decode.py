"""GPU decode throughput: the Triton entropy decode per codec against the Rust CPU decode, a
host-to-device copy of the decoded bytes, and torch's device-to-device copy (the ceiling), on
e4m3 bytes; a bf16 tensor decoded and merged on the device against a raw upload; and NVDEC
decode of CPU-made video bitstreams when PyNvVideoCodec is present.

Prepared for a session with a GPU (needs torch with CUDA, Triton, numpy and the built
``tensorpress._core``; no PyAV, no Rust toolchain)::

    PYTHONPATH=python python benches/gpu_decode.py --mib 256 --json gpu_decode.json
    PYTHONPATH=python python benches/gpu_decode.py --nvdec-input nvdec_streams.npz

NVDEC input is made beforehand where PyAV is installed (4:2:0 streams, which NVDEC reads, with
FFmpeg's decode as the reference)::

    PYTHONPATH=python python benches/gpu_decode.py --make-nvdec-input nvdec_streams.npz

``--chroma-cost`` (CPU, PyAV) prints what neutral 4:2:0 chroma costs over luma-only 4:0:0 on a
real weight matrix. Every GB/s is decoded bytes per second.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import tensorpress.entropy as te


def best_seconds(fn: Callable[[], Any], repeat: int, sync: Callable[[], None] = lambda: None) -> float:
    """Fastest of ``repeat`` timed runs after one warm-up run."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def e4m3_bytes(n: int, seed: int = 0) -> np.ndarray:
    """``n`` float8_e4m3fn bytes of normally distributed weights (torch casts, no ml_dtypes)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    values = torch.randn(n, generator=gen) * 48.0  # ~ per-tensor scaled to e4m3's range
    return values.to(torch.float8_e4m3fn).view(torch.uint8).numpy()


def copy_rows(data: np.ndarray, device: str, repeat: int, sync: Callable[[], None]) -> list[dict[str, Any]]:
    """The ceiling (device-to-device copy) and the no-compression baseline (host-to-device)."""
    import torch

    n = data.size
    src = torch.from_numpy(data).to(device)
    dst = torch.empty_like(src)
    t = best_seconds(lambda: dst.copy_(src), repeat, sync)
    rows = [{"kind": "ceiling", "what": "torch device-to-device copy", "bytes": n, "gbps": n / t / 1e9}]
    if device == "cuda":
        host = torch.from_numpy(data).pin_memory()
        t = best_seconds(lambda: host.to(device, non_blocking=True), repeat, sync)
        what = "host-to-device copy of the decoded bytes (pinned)"
        rows.append({"kind": "baseline", "what": what, "bytes": n, "gbps": n / t / 1e9})
    return rows


def entropy_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    import tensorpress.gpu as tg

    n = int(args.mib * (1 << 20))
    data = e4m3_bytes(n)
    dev = args.device
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    rows: list[dict[str, Any]] = []

    def row(**kw: Any) -> None:
        rows.append(kw)
        print(json.dumps(kw), flush=True)

    for r in copy_rows(data, dev, args.repeat, sync):
        row(**r)
    for codec in args.codecs:
        blob = te.encode(data, codec, lanes=args.lanes, chunk_size=args.chunk_size)
        base = {
            "codec": codec,
            "bytes": n,
            "ratio": n / len(blob),
            "lanes": args.lanes,
            "chunk": args.chunk_size,
        }
        t = best_seconds(lambda blob=blob: te.decode(blob), args.repeat)
        row(kind="cpu", what="Rust decode, all cores", gbps=n / t / 1e9, **base)
        full = tg.decode(blob, device=dev)
        assert np.array_equal(full.cpu().numpy(), data), f"{codec}: GPU decode differs"
        t = best_seconds(lambda blob=blob: tg.decode(blob, device=dev), args.repeat, sync)
        row(kind="gpu", what="tensorpress.gpu.decode from host bytes (validate, CRC, upload, decode)",
            gbps=n / t / 1e9, **base)  # fmt: skip
        for group in args.lane_groups:
            held = tg.upload(blob, device=dev, lane_group=group)
            out = torch.empty(n, dtype=torch.uint8, device=dev)
            t = best_seconds(lambda held=held, out=out: held.decode(out=out), args.repeat, sync)
            row(kind="gpu", what="Triton kernels only (stream already on the device)", lane_group=group,
                gbps=n / t / 1e9, device_bytes=held.nbytes, **base)  # fmt: skip
        if dev == "cuda":
            torch.cuda.empty_cache()
    return rows


def bf16_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """A bf16 tensor onto the device: planes decoded and merged there, against a raw upload and
    against the CPU decode followed by an upload."""
    import torch

    import tensorpress.gpu as tg
    from tensorpress import tensors

    dev = args.device
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    count = int(args.mib * (1 << 20)) // 2
    weights = (torch.randn(count, generator=torch.Generator().manual_seed(1)) * 0.02).to(torch.bfloat16)
    ct = tensors.compress(weights)
    streams = [p.blob for p in ct.planes]
    base = {"kind": "bf16", "bytes": 2 * count, "ratio": 2 * count / ct.nbytes, "codecs": ct.codec}
    got = tg.decode_planes(streams, ct.transform, ct.dtype, ct.shape, device=dev)
    assert torch.equal(got.cpu().view(torch.int16), weights.view(torch.int16)), "bf16 planes differ"
    rows = []
    timed = {
        "tensorpress.gpu.decode_planes (upload compressed, decode + merge on the device)": lambda: (
            tg.decode_planes(streams, ct.transform, ct.dtype, ct.shape, device=dev)
        ),
        "CPU decompress, then .to(device)": lambda: tensors.decompress(ct).to(dev),
        "raw bf16 .to(device) from pageable memory": lambda: weights.to(dev),
    }
    for what, fn in timed.items():
        t = best_seconds(fn, args.repeat, sync)
        rows.append({**base, "what": what, "gbps": 2 * count / t / 1e9})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def nvdec_rows(path: str, repeat: int) -> list[dict[str, Any]]:
    from tensorpress.video import backends

    cap = backends.capabilities()["nvcodec"]
    print(json.dumps({"kind": "nvdec-caps", "decode": cap.decode, "encode": cap.encode,
                      "reason": cap.reason, "min_size": cap.decode_min_size}), flush=True)  # fmt: skip
    rows: list[dict[str, Any]] = []
    with np.load(path) as z:
        cases = json.loads(bytes(z["cases"]).decode())
        for i, case in enumerate(cases):
            codec, bd, h, w = case["codec"], case["bit_depth"], case["height"], case["width"]
            packets = [bytes(z[f"p{i}_{k}"]) for k in range(case["frames"])]
            ref_digest = bytes(z[f"ref{i}"])
            result: dict[str, Any] = {"kind": "nvdec", **case}
            try:
                nv = backends.get_backend("nvcodec", "decode", codec)
                got = np.stack(nv.decode(packets, codec, bd, h, w)).astype(np.uint16)
                result["bit_exact"] = hashlib.sha256(got.tobytes()).digest() == ref_digest
                t = best_seconds(lambda nv=nv, packets=packets, c=case: nv.decode(packets, c["codec"],
                                 c["bit_depth"], c["height"], c["width"]), repeat)  # fmt: skip
                result["frames_per_s"] = case["frames"] / t
                result["luma_gbps"] = case["frames"] * h * w * (2 if bd > 8 else 1) / t / 1e9
                result["bitstream_bytes"] = sum(map(len, packets))
            except Exception as exc:  # record, keep measuring the other cases
                result["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(result)
            print(json.dumps(result), flush=True)
    return rows


def make_nvdec_input(path: str) -> None:
    """CPU-encode 4:2:0 test streams (PyAV); FFmpeg's decode is the reference (its SHA-256)."""
    from tensorpress.video import backends

    pyav = backends.PyAVBackend()
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    cases: list[dict[str, Any]] = []
    for codec, bd, qp in [("hevc", 8, 25), ("hevc", 10, 25), ("h264", 8, 25), ("av1", 8, 25)]:
        h, w, n = 1024, 1024, 8
        frames = [
            np.clip(rng.normal(2 ** (bd - 1), 2 ** (bd - 3), (h, w)), 0, 2**bd - 1).astype(np.uint16)
            for _ in range(n)
        ]
        packets = pyav.encode(frames, backends.EncodeOptions(codec, bd, qp, chroma="420"))
        i = len(cases)
        for k, p in enumerate(packets):
            arrays[f"p{i}_{k}"] = np.frombuffer(p, np.uint8)
        ref = np.stack(pyav.decode(packets, codec, bd, h, w)).astype(np.uint16)
        arrays[f"ref{i}"] = np.frombuffer(hashlib.sha256(ref.tobytes()).digest(), np.uint8)
        cases.append({"codec": codec, "bit_depth": bd, "qp": qp, "height": h, "width": w, "frames": n})
    arrays["cases"] = np.frombuffer(json.dumps(cases).encode(), np.uint8)
    np.savez(path, **arrays)
    print(f"wrote {len(cases)} streams to {path}")


def chroma_cost() -> None:
    """Bytes of neutral 4:2:0 chroma over 4:0:0 for frames of a real weight matrix."""
    from tensorpress import samples
    from tensorpress.video import backends

    w = samples.minilm_weights()["encoder.layer.0.attention.self.query.weight"].astype(np.float32)
    pyav = backends.PyAVBackend()
    for codec in ("hevc", "h264"):
        for bd in (8, 10):
            q = np.round((w - w.min()) / (w.max() - w.min()) * (2**bd - 1)).astype(np.uint16)
            frames = [q[:256, :384], q[128:384, :384]]
            for qp in (0, 25):
                size = {}
                for chroma in ("400", "420"):
                    opts = backends.EncodeOptions(codec, bd, qp, lossless=qp == 0, chroma=chroma)
                    size[chroma] = sum(map(len, pyav.encode(frames, opts)))
                extra = 100 * (size["420"] / size["400"] - 1)
                mode = "lossless" if qp == 0 else f"qp{qp}"
                print(
                    f"{codec} {bd}-bit {mode}: 4:0:0 {size['400']} B, 4:2:0 {size['420']} B ({extra:+.2f} %)"
                )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mib", type=float, default=256, help="e4m3 bytes to decode, in MiB")
    p.add_argument("--device", default="cuda", help="'cpu' runs the kernels interpreted (TRITON_INTERPRET=1)")
    p.add_argument("--codecs", nargs="+", default=[c for c in te.CODECS if c != "raw"], choices=te.CODECS)
    p.add_argument("--lanes", type=int, default=te.DEFAULT_LANES)
    p.add_argument("--chunk-size", type=int, default=te.DEFAULT_CHUNK_SIZE)
    p.add_argument("--lane-groups", type=int, nargs="+", default=[32, 8], help="lanes per Triton program")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", help="also write every row to this file")
    p.add_argument("--nvdec-input", help="decode these streams with NVDEC (made by --make-nvdec-input)")
    p.add_argument("--make-nvdec-input", help="write NVDEC test streams here (needs PyAV) and exit")
    p.add_argument("--chroma-cost", action="store_true", help="print 4:2:0 vs 4:0:0 sizes and exit")
    args = p.parse_args(argv)
    if args.make_nvdec_input:
        make_nvdec_input(args.make_nvdec_input)
        return 0
    if args.chroma_cost:
        chroma_cost()
        return 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to measure", file=sys.stderr)
        return 1
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu (Triton interpreter)"
    print(json.dumps({"kind": "device", "name": name, "torch": torch.__version__}), flush=True)
    rows = entropy_rows(args) + bf16_rows(args) if args.mib > 0 else []
    if args.nvdec_input:
        rows += nvdec_rows(args.nvdec_input, args.repeat)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
