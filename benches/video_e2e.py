"""End-to-end: every linear weight of SmolLM2-135M's decoder blocks coded with a video codec at
about 2.5, 3 and 4 bits/value; perplexity on BBC News text against the uncompressed model and
RTN-g128 at 3 and 4 bits (+0.25 bits/value of fp16 scale and zero per group).

    python benches/video_e2e.py [--codecs av1,hevc] [--targets 2.5,3.0,4.0] [--windows 40]

Each tensor is bisected to its own QP with ``tolerance=0`` (never above the target). The tied
``lm_head``/embedding matrix is left uncompressed for every method (as GPTQ/AWQ/RTN baselines do).
The GGUF weights are Q4_1 already (DESIGN.md §4): perplexity deltas are meaningful, absolute
weight statistics less so.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from typing import Any

import numpy as np
import torch

import tensorpress.video as tv
from tensorpress.evaluation import eval_texts, linear_layers, load_smollm2, perplexity


def rtn_g128(w: np.ndarray, bits: int, group: int = 128) -> np.ndarray:
    x = w.reshape(-1, group).astype(np.float32)
    lo = x.min(axis=1, keepdims=True)
    hi = x.max(axis=1, keepdims=True)
    scale = ((hi - lo) / (2**bits - 1)).astype(np.float16).astype(np.float32)
    zero = lo.astype(np.float16).astype(np.float32)
    scale[scale == 0] = 1.0
    q = np.clip(np.rint((x - zero) / scale), 0, 2**bits - 1)
    return (q * scale + zero).reshape(w.shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codecs", default="av1")
    ap.add_argument("--targets", default="2.5,3.0,4.0")
    ap.add_argument("--rotate", action="store_true", help="random-Hadamard rotation before coding")
    ap.add_argument("--preset", default=None, help="encoder preset (e.g. ultrafast for x265)")
    ap.add_argument("--no-rtn", action="store_true", help="skip the RTN-g128 baselines")
    ap.add_argument("--windows", type=int, default=40, help="256-token windows of BBC News eval text")
    args = ap.parse_args()
    torch.set_num_threads(2)

    t0 = time.perf_counter()
    model, tok = load_smollm2()
    texts = eval_texts()
    linears = {n: m for n, m in linear_layers(model).items() if n != "lm_head"}
    orig = {n: m.weight.detach().clone() for n, m in linears.items()}
    n_vals = sum(w.numel() for w in orig.values())
    energy = sum(float((w.double() ** 2).sum()) for w in orig.values())
    print(
        f"# SmolLM2-135M: {len(linears)} linear weights, {n_vals:,} values; "
        f"loaded in {time.perf_counter() - t0:.1f}s"
    )
    print(
        f"# machine: {platform.machine()}, torch threads {torch.get_num_threads()}; "
        f"{args.windows} windows of 256 tokens"
    )

    def ppl() -> tuple[float, float]:
        t = time.perf_counter()
        p = perplexity(model, tok, texts, seq_len=256, max_windows=args.windows)
        return p, time.perf_counter() - t

    base, t_base = ppl()
    print(f"  fp32 (Q4_1-dequantized) ppl {base:.3f} ({t_base:.0f}s)", flush=True)
    results: list[tuple[str, str, float, float, float, str]] = [("uncompressed", "—", 32.0, 0.0, base, "")]

    def apply(fn: Any) -> tuple[float, float, str]:
        bits = err = 0.0
        t = time.perf_counter()
        qps = []
        with torch.no_grad():
            for n, m in linears.items():
                w = orig[n].numpy()
                new, b, qp = fn(w)
                bits += b
                err += float(np.sum((new - w).astype(np.float64) ** 2))
                m.weight.copy_(torch.from_numpy(new))
                if qp is not None:
                    qps.append(qp)
        note = f"QP {min(qps)}-{max(qps)}, code {time.perf_counter() - t:.0f}s" if qps else ""
        return bits / n_vals, err / energy, note

    def restore() -> None:
        with torch.no_grad():
            for n, m in linears.items():
                m.weight.copy_(orig[n])

    for b in () if args.no_rtn else (3, 4):
        bpv, rel, note = apply(lambda w, b=b: (rtn_g128(w, b), w.size * (b + 0.25), None))
        p, tp = ppl()
        results.append(("RTN-g128", f"{b}-bit", bpv, rel, p, note))
        print(f"  RTN-g128 {b}-bit ppl {p:.3f} ({tp:.0f}s)", flush=True)
        restore()

    for codec in args.codecs.split(","):
        for target in (float(t) for t in args.targets.split(",")):

            def code(
                w: np.ndarray, codec: str = codec, target: float = target
            ) -> tuple[np.ndarray, float, Any]:
                vt = tv.encode(
                    w,
                    bits_per_value=target,
                    tolerance=0.0,
                    codec=codec,
                    rotate=args.rotate,
                    preset=args.preset,
                )
                return tv.decode(vt), vt.nbytes * 8, vt.qp

            bpv, rel, note = apply(code)
            p, tp = ppl()
            label = f"{codec}{' +rot' if args.rotate else ''}{f' {args.preset}' if args.preset else ''}"
            results.append((label, f"target {target}", bpv, rel, p, note))
            print(
                f"  {label} target {target}: {bpv:.3f} bits/value ppl {p:.3f} ({note}; ppl {tp:.0f}s)",
                flush=True,
            )
            restore()

    print()
    print("| method | setting | bits/value | weight rel. MSE | perplexity | Δppl | note |")
    print("|---|---|---:|---:|---:|---:|---|")
    for method, setting, bpv, rel, p, note in results:
        rel_s = f"{rel:.5f}" if rel else "0"
        print(
            f"| {method} | {setting} | {bpv:.3f} | {rel_s} | {p:.3f} | "
            f"{100 * (p / base - 1):+.2f} % | {note} |"
        )
    print(f"\ntotal {time.perf_counter() - t0:.0f}s; log-ppl base {math.log(base):.4f}")


if __name__ == "__main__":
    main()
