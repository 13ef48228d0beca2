"""End-to-end: every linear weight of SmolLM2-135M's decoder blocks coded with a video codec at
about 2.5, 3 and 4 bits/value; perplexity on BBC News text against the uncompressed model and
RTN-g128 at 3 and 4 bits (+0.25 bits/value of fp16 scale and zero per group).

    python benches/video_e2e.py [--codecs av1,hevc] [--targets 2.5,3.0,4.0] [--windows 40]
        [--allocate equal|qp|rd] [--importance mse,act,fisher] [--col-scale ALPHA] [--bit-depth 10]

``--allocate equal`` (default) bisects each tensor to its own QP with ``tolerance=0`` (never above
the target); ``qp`` and ``rd`` use :func:`tensorpress.video.encode_many` for a model-level average
≤ the target: one global QP, or equal-slope rate–distortion allocation of the distortion chosen by
``--importance`` (``mse``: plain squared weight error; ``act``: weighted by the input-activation
second moment E[x_j²]; ``fisher``: by E[(∂L/∂y_r)²]·E[x_j²], the K-FAC diagonal Fisher).
``--col-scale α`` multiplies input column j by E[x_j²]^α before coding (AWQ-style; the fp16 scales
count in bits/value). Activation and gradient statistics come from ``--calib-windows`` 256-token
windows of :func:`tensorpress.evaluation.calibration_texts` (disjoint from the evaluation text). The tied
``--tune-norms N`` adds a row per rd run with the RMSNorm weights then trained N steps against
the original model (:func:`tensorpress.video.tune.tune_norms`, on the calibration windows);
``--tune-scales`` also learns a gain per row and per column of every coded matrix, folded into
its stored scales (:meth:`tensorpress.video.VideoTensor.with_gains`, no extra bits).
``--coded-cache DIR`` keeps the coded tensors and reuses them in a later run. The tied
``lm_head``/embedding matrix is left uncompressed for every method (as GPTQ/AWQ/RTN baselines do).
The GGUF weights are Q4_1 already (DESIGN.md §4): perplexity deltas are meaningful, absolute
weight statistics less so.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import tensorpress.video as tv
from tensorpress.evaluation import (
    calibration_texts,
    eval_texts,
    linear_layers,
    load_smollm2,
    perplexity,
    token_windows,
)
from tensorpress.video.tune import DEFAULT_LR, DEFAULT_SCHEDULE, SCHEDULES, tune_coded


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
    ap.add_argument("--allocate", choices=tv.ALLOCATIONS, default="equal")
    ap.add_argument("--importance", default="mse", help="comma list of mse, act, fisher (--allocate rd)")
    ap.add_argument("--col-scale", type=float, default=0.0, help="AWQ-style exponent alpha (0 = off)")
    ap.add_argument("--bit-depth", type=int, default=8, choices=(8, 10))
    ap.add_argument("--calib-windows", type=int, default=16, help="calibration windows for statistics")
    ap.add_argument("--qp-step", type=int, default=6, help="first QP grid step of --allocate rd")
    ap.add_argument(
        "--tune-norms",
        type=int,
        default=0,
        help="after rd coding, also train the RMSNorm weights this many steps",
    )
    ap.add_argument("--tune-lr", type=float, default=DEFAULT_LR, help="Adam learning rate of --tune-norms")
    ap.add_argument("--tune-schedule", choices=SCHEDULES, default=DEFAULT_SCHEDULE)
    ap.add_argument(
        "--tune-scales",
        action="store_true",
        help="with --tune-norms, also learn per-row and per-column gains folded into the stored scales",
    )
    ap.add_argument("--coded-cache", default=None, help="directory: reuse (or keep) the rd-coded tensors")
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
                new, b, qp = fn(n, w)
                bits += b
                err += float(np.sum((new - w).astype(np.float64) ** 2))
                m.weight.copy_(torch.from_numpy(new))
                if qp is not None:
                    qps.append(qp)
        note = f"QP {min(qps)}-{max(qps)}, code {time.perf_counter() - t:.0f}s" if qps else ""
        return bits / n_vals, err / energy, note

    def apply_coded(coded: dict[str, Any]) -> tuple[float, float, str]:
        bpv, rel, note = apply(lambda n, w: (tv.decode(coded[n]), coded[n].nbytes * 8, coded[n].qp))
        return bpv, rel, note.split(",")[0]

    def restore() -> None:
        with torch.no_grad():
            for n, m in linears.items():
                m.weight.copy_(orig[n])

    for b in () if args.no_rtn else (3, 4):
        bpv, rel, note = apply(lambda n, w, b=b: (rtn_g128(w, b), w.size * (b + 0.25), None))
        p, tp = ppl()
        results.append(("RTN-g128", f"{b}-bit", bpv, rel, p, note))
        print(f"  RTN-g128 {b}-bit ppl {p:.3f} ({tp:.0f}s)", flush=True)
        restore()

    kinds = args.importance.split(",") if args.allocate == "rd" else ["mse"]
    if not set(kinds) <= {"mse", "act", "fisher"}:
        ap.error(f"--importance takes mse, act and fisher, got {args.importance}")
    need_stats = args.col_scale > 0 or kinds != ["mse"]
    stats: dict[str, tv.LinearStats] = {}
    calib = token_windows(tok, calibration_texts(), 256, args.calib_windows)
    if need_stats:
        t = time.perf_counter()
        stats = tv.linear_statistics(model, calib, gradients="fisher" in kinds, names=list(linears))
        print(f"  statistics over {calib.numel():,} calibration tokens ({time.perf_counter() - t:.0f}s)")
    col_scale = (
        {n: tv.column_scales(stats[n].x2, args.col_scale) for n in linears} if args.col_scale > 0 else None
    )

    def importance_of(kind: str) -> dict[str, Any] | None:
        if kind == "act":
            return {n: stats[n].x2 for n in linears}
        if kind == "fisher":
            return {n: stats[n].fisher().astype(np.float32) for n in linears}
        return None

    extras = "".join(
        [
            " +rot" if args.rotate else "",
            f" {args.preset}" if args.preset else "",
            f" {args.bit_depth}-bit" if args.bit_depth != 8 else "",
            f" +colscale a={args.col_scale:g}" if args.col_scale > 0 else "",
        ]
    )

    for codec in args.codecs.split(","):
        for target in (float(t) for t in args.targets.split(",")):
            label = f"{codec}{extras}"
            for kind in kinds if args.allocate != "equal" else ():
                t = time.perf_counter()
                cache = None
                if args.coded_cache:
                    run = f"{label}-{args.allocate}-{kind}-{target}".replace(" ", "_")
                    cache = Path(args.coded_cache) / run
                    cache.mkdir(parents=True, exist_ok=True)
                cached = sorted(cache.glob("*.vt")) if cache else []
                coded = (
                    {p.stem: tv.VideoTensor.from_bytes(p.read_bytes()) for p in cached}
                    if cached
                    else tv.encode_many(
                        {n: w.numpy() for n, w in orig.items()},
                        target,
                        allocate=args.allocate,
                        importance=importance_of(kind),
                        col_scale=col_scale,
                        codec=codec,
                        bit_depth=args.bit_depth,
                        rotate=args.rotate,
                        preset=args.preset,
                        qp_step=args.qp_step,
                        progress=lambda msg: print(f"    {msg}", flush=True),
                    )
                )
                if cache and not cached:
                    for n, vt in coded.items():
                        (cache / f"{n}.vt").write_bytes(vt.to_bytes())
                t_code = time.perf_counter() - t
                bpv, rel, note = apply_coded(coded)
                note += f", code {t_code:.0f}s"
                setting = f"{args.allocate}{f' {kind}' if args.allocate == 'rd' else ''} {target}"
                p, tp = ppl()
                results.append((label, setting, bpv, rel, p, note))
                print(
                    f"  {label} {setting}: {bpv:.3f} bits/value ppl {p:.3f} ({note}; ppl {tp:.0f}s)",
                    flush=True,
                )
                if args.tune_norms:
                    restore()  # the original weights give the teacher's logits
                    t = time.perf_counter()
                    decoded = {f"{n}.weight": torch.from_numpy(tv.decode(vt)) for n, vt in coded.items()}
                    rows = list(coded) if args.tune_scales else []
                    cols = [n for n in rows if coded[n].col_scale is not None]
                    tuned = tune_coded(
                        model,
                        calib,
                        decoded,
                        args.tune_norms,
                        row_gains=[f"{n}.weight" for n in rows],
                        col_gains=[f"{n}.weight" for n in cols],
                        lr=args.tune_lr,
                        schedule=args.tune_schedule,
                        say=print,
                    )
                    t_tune = time.perf_counter() - t
                    params = dict(model.named_parameters())
                    saved = {n: params[n].detach().clone() for n in tuned.norms}
                    # The gains are folded into the stored tables and the tensors decoded again:
                    # the perplexity is that of what a folder would hold.
                    rescaled = {
                        n: vt.with_gains(
                            tuned.row_gains.get(f"{n}.weight"), tuned.col_gains.get(f"{n}.weight")
                        )
                        for n, vt in coded.items()
                    }
                    apply_coded(rescaled)
                    with torch.no_grad():
                        for n, w in tuned.norms.items():
                            params[n].copy_(w)
                    p, tp = ppl()
                    what = "norms+scales" if args.tune_scales else "norms"
                    label_tuned = f"{label} +{what} {args.tune_norms} steps lr {args.tune_lr:g}"
                    label_tuned += f" {args.tune_schedule}"
                    results.append((label_tuned, setting, bpv, rel, p, f"{note}, tune {t_tune:.0f}s"))
                    print(f"  {label_tuned} {setting}: ppl {p:.3f} (tune {t_tune:.0f}s)", flush=True)
                    with torch.no_grad():
                        for n, w in saved.items():
                            params[n].copy_(w)
                restore()
            if args.allocate != "equal":
                continue

            def code(
                n: str, w: np.ndarray, codec: str = codec, target: float = target
            ) -> tuple[np.ndarray, float, Any]:
                vt = tv.encode(
                    w,
                    bits_per_value=target,
                    tolerance=0.0,
                    codec=codec,
                    rotate=args.rotate,
                    preset=args.preset,
                    bit_depth=args.bit_depth,
                    col_scale=None if col_scale is None else col_scale[n],
                )
                return tv.decode(vt), vt.nbytes * 8, vt.qp

            bpv, rel, note = apply(code)
            p, tp = ppl()
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
