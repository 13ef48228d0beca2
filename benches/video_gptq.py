"""Video path with GPTQ-style error compensation (tensorpress.video.compensate) on SmolLM2-135M.

    HF_HUB_OFFLINE=1 python benches/video_gptq.py [--configs split4,comp4] [--target 3.0]
        [--rd [--col-scale 0.25] [--qp-offset 0]] [--codec av1] [--no-rotate] [--windows 32]

Same material as ``benches/video_e2e.py`` (210 decoder-block linears, tied head in float, perplexity
on ``--windows`` 256-token windows of the evaluation split). Input Hessians ``H = 2/n Σ x xᵀ`` of
every linear come from one forward pass of the *original* model over ``--calib-windows`` windows
of the calibration split (not GPTQ's sequential pass through already-quantized blocks).

Configs (comma list): ``plainK`` = K column blocks in the original order, no compensation;
``splitK`` = K column blocks in act-order (decreasing diag H), no compensation; ``compK`` = the same
with the compensation. Every block is bisected to ``--target`` bits/value (``tolerance=0``) with the
seeded random-Hadamard rotation unless ``--no-rotate``. Bits/value count every part's payload and
the permutation. ``rel. out err`` = Σ tr(E H Eᵀ) / Σ tr(W H Wᵀ) over all linears (what GPTQ
minimizes), with ``H`` measured on ``--calib-windows`` windows of the *evaluation* text.

``--rd`` first runs the model-level allocation of ``benches/video_e2e.py --allocate rd --importance
fisher --col-scale α`` (:func:`tensorpress.video.encode_many`, Fisher statistics from the same
calibration windows) and reports it as config ``rd``; the other configs then code each matrix's
blocks at the QP the allocation chose for it (plus ``--qp-offset``) instead of a bit target, with
the same column scales.
"""

from __future__ import annotations

import argparse
import re
import time

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
from tensorpress.quant.gptq import HessianAccumulator
from tensorpress.video.compensate import encode_compensated

# Llama linears that read the same input tensor share one Hessian.
_SHARED = {"k_proj": "q_proj", "v_proj": "q_proj", "up_proj": "gate_proj"}


def hessians(model: torch.nn.Module, names: list[str], batches: list[torch.Tensor]) -> dict[str, np.ndarray]:
    mods = dict(model.named_modules())
    owners = sorted({_owner(n) for n in names})
    acc = {n: HessianAccumulator(mods[n].in_features) for n in owners}
    handles = [mods[n].register_forward_hook(lambda _m, a, _o, acc=acc[n]: acc.add(a[0])) for n in owners]
    with torch.no_grad():
        for b in batches:
            model(input_ids=b, use_cache=False)
    for h in handles:
        h.remove()
    return {n: acc[_owner(n)].hessian.numpy() for n in names}


def _owner(name: str) -> str:
    parent, leaf = name.rsplit(".", 1)
    return f"{parent}.{_SHARED[leaf]}" if leaf in _SHARED else name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="split4,comp4")
    ap.add_argument("--target", type=float, default=3.0)
    ap.add_argument("--codec", default="av1")
    ap.add_argument("--no-rotate", action="store_true")
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--calib-windows", type=int, default=16)
    ap.add_argument("--damp", type=float, default=0.01)
    ap.add_argument("--layers", default="", help="comma list of decoder layers to code (default all)")
    ap.add_argument("--no-ppl", action="store_true", help="weight and output errors only")
    ap.add_argument("--rd", action="store_true", help="QPs from the Fisher-weighted rd allocation")
    ap.add_argument("--col-scale", type=float, default=0.25, help="alpha of the column scales (--rd)")
    ap.add_argument(
        "--qp-offset",
        default="0",
        help="added to the rd QPs (--rd); a comma list runs every config at each offset",
    )
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    model, tok = load_smollm2()
    texts = eval_texts()
    linears = {n: m for n, m in linear_layers(model).items() if n != "lm_head"}
    if args.layers:
        keep = {f"model.layers.{i}." for i in args.layers.split(",")}
        linears = {n: m for n, m in linears.items() if any(n.startswith(k) for k in keep)}
    orig = {n: m.weight.detach().numpy().copy() for n, m in linears.items()}
    calib = token_windows(tok, calibration_texts(), 256, args.calib_windows)
    t = time.perf_counter()
    hs = hessians(model, list(linears), list(calib.split(4)))
    # The reported output error uses Hessians of *evaluation* text, so compensation (fitted to the
    # calibration Hessians) is not scored on its own data.
    held_out = token_windows(tok, texts, 256, args.calib_windows)
    hs_eval = hessians(model, list(linears), list(held_out.split(4)))
    print(f"# Hessians of {len(hs)} linears from {calib.numel():,} tokens ({time.perf_counter() - t:.0f}s)")

    def ppl() -> float:
        if args.no_ppl:
            return float("nan")
        return perplexity(model, tok, texts, seq_len=256, max_windows=args.windows)

    base = ppl()
    print(f"# uncompressed ppl {base:.3f}", flush=True)
    n_vals = sum(w.size for w in orig.values())
    energy = sum(float(np.sum(w.astype(np.float64) ** 2)) for w in orig.values())
    out_energy = sum(float(np.einsum("ri,ij,rj->", w, hs_eval[n], w, optimize=True)) for n, w in orig.items())
    rows = []
    qp_of: dict[str, int] = {}
    col_scale: dict[str, np.ndarray] = {}
    if args.rd:
        t = time.perf_counter()
        stats = tv.linear_statistics(model, calib, gradients=True, names=list(linears))
        col_scale = {n: tv.column_scales(stats[n].x2, args.col_scale) for n in linears}
        coded = tv.encode_many(
            orig,
            args.target,
            allocate="rd",
            importance={n: stats[n].fisher().astype(np.float32) for n in linears},
            col_scale=col_scale,
            codec=args.codec,
            rotate=not args.no_rotate,
        )
        t_code = time.perf_counter() - t
        qp_of = {n: int(vt.qp) for n, vt in coded.items()}
        bits = err = out_err = 0.0
        with torch.no_grad():
            for n, mod in linears.items():
                new = tv.decode(coded[n])
                bits += 8 * coded[n].nbytes
                e = (new - orig[n]).astype(np.float64)
                err += float(np.sum(e**2))
                out_err += float(np.einsum("ri,ij,rj->", e, hs_eval[n], e, optimize=True))
                mod.weight.copy_(torch.from_numpy(new))
        p = ppl()
        note = f"QP {min(qp_of.values())}-{max(qp_of.values())}, stats+code {t_code:.0f}s"
        name = f"rd fisher a={args.col_scale:g}"
        rows.append((name, bits / n_vals, err / energy, out_err / out_energy, p, note))
        print(f"  rd: {bits / n_vals:.3f} bits/value out-err {rows[-1][3]:.5f} ppl {p:.3f}", flush=True)
    offsets = [int(o) for o in args.qp_offset.split(",")] if qp_of else [0]

    def qp_at(name: str, offset: int) -> int:
        lo, hi = tv.QP_RANGE[args.codec]
        return min(max(qp_of[name] + offset, lo), hi)

    runs = [(config, offset) for config in args.configs.split(",") for offset in offsets]
    for config, offset in runs:
        m = re.fullmatch(r"(plain|split|comp)(\d+)", config)
        if not m:
            ap.error(f"unknown config {config!r}")
        kind, k = m.group(1), int(m.group(2))
        t = time.perf_counter()
        bits = err = out_err = 0.0
        qps: list[int] = []
        with torch.no_grad():
            for n, mod in linears.items():
                w = orig[n]
                cm = encode_compensated(
                    w,
                    hs[n],
                    column_blocks=k,
                    act_order=kind != "plain",
                    compensate=kind == "comp",
                    damp=args.damp,
                    codec=args.codec,
                    rotate=not args.no_rotate,
                    col_scale=col_scale.get(n),
                    **(
                        {"qp": qp_of[n] + offset}
                        if qp_of
                        else {"bits_per_value": args.target, "tolerance": 0.0}
                    ),
                )
                new = cm.decode()
                bits += 8 * cm.nbytes
                e = (new - w).astype(np.float64)
                err += float(np.sum(e**2))
                out_err += float(np.einsum("ri,ij,rj->", e, hs_eval[n], e, optimize=True))
                qps += cm.qps
                mod.weight.copy_(torch.from_numpy(new))
        t_code = time.perf_counter() - t
        p = ppl()
        row = (
            f"{config} QP{offset:+d}" if qp_of else config,
            bits / n_vals,
            err / energy,
            out_err / out_energy,
            p,
            f"QP {min(qps)}-{max(qps)}, code {t_code:.0f}s",
        )
        rows.append(row)
        print(f"  {row[0]}: {row[1]:.3f} bits/value out-err {row[3]:.5f} ppl {p:.3f} ({row[5]})", flush=True)
    label = f"{args.codec}{'' if args.no_rotate else ' +rot'} {'rd ' if args.rd else ''}target {args.target}"
    print("\n| method | config | bits/value | weight rel. MSE | rel. out err | perplexity | Δppl | note |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for config, bpv, rel, oerr, p, note in rows:
        delta = 100 * (p / base - 1)
        print(
            f"| {label} | {config} | {bpv:.3f} | {rel:.5f} | {oerr:.5f} | {p:.3f} | {delta:+.2f} % | {note} |"
        )
    print(f"\nuncompressed ppl {base:.3f}; total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
