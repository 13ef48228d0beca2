"""Weight-only baselines a user would pick instead of the video path: RTN, HQQ and GPTQ on SmolLM2-135M.

    HF_HUB_OFFLINE=1 python benches/baselines.py [--windows 32] [--calib-windows 16]
        [--methods rtn3,rtn4,hqq3,hqq4,gptq3,gptq4,gptq3-act,gptq4-act]

Same material as ``benches/video_e2e.py``: all 210 decoder-block linear weights are quantized (the tied
``lm_head``/embedding stays in float for every method), perplexity on ``--windows`` 256-token windows of
:func:`tensorpress.evaluation.eval_texts`, calibration (GPTQ only) on ``--calib-windows`` 256-token
windows of the disjoint :func:`tensorpress.evaluation.calibration_texts`. Bits/value count every stored
bit over the coded values: codes, fp16 scale and 16-bit zero per group (+0.25 at ``--group-size``
128, +0.5 at 64: 2-bit groups of 64 are 2.5 bits/value), and for act-order the column permutation.

- ``rtnB``: min–max asymmetric round-to-nearest per ``--group-size`` values, fp16 scale and zero
  (as video_e2e).
- ``hqqB``: HQQ zero-point optimization (:mod:`tensorpress.quant.hqq`), groups of ``--group-size``.
- ``gptqB[-act]``: GPTQ (:mod:`tensorpress.quant.gptq`), groups of ``--group-size``, damp 0.01,
  blocks quantized in order on inputs that went through the quantized earlier blocks; ``-act`` = act-order.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from tensorpress.evaluation import (
    calibration_texts,
    eval_texts,
    linear_layers,
    load_smollm2,
    perplexity,
    token_windows,
)
from tensorpress.quant import gptq, hqq
from video_e2e import rtn_g128


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="rtn3,rtn4,hqq3,hqq4,gptq3,gptq4,gptq3-act,gptq4-act")
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--calib-windows", type=int, default=16)
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--damp", type=float, default=0.01)
    ap.add_argument("--base-ppl", type=float, default=None, help="skip the fp32 run; use this ppl")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    _, tok = load_smollm2()
    texts = eval_texts()
    calib = token_windows(tok, calibration_texts(), 256, args.calib_windows)
    batches = [{"input_ids": calib[i : i + 4], "use_cache": False} for i in range(0, calib.shape[0], 4)]

    def ppl(model: torch.nn.Module) -> float:
        return perplexity(model, tok, texts, seq_len=256, max_windows=args.windows)

    base = args.base_ppl if args.base_ppl else ppl(load_smollm2()[0])
    print(f"# uncompressed ppl {base:.3f} ({time.perf_counter() - t0:.0f}s)", flush=True)
    gs = args.group_size
    rows: list[tuple[str, str, float, float, float, str]] = [("uncompressed", "—", 32.0, 0.0, base, "")]
    for method in args.methods.split(","):
        model = load_smollm2()[0]
        linears = {n: m for n, m in linear_layers(model).items() if n != "lm_head"}
        orig = {n: m.weight.detach().clone() for n, m in linears.items()}
        t = time.perf_counter()
        bits_total = 0.0
        bits = int(method.split("-")[0][-1])
        if method.startswith("gptq"):
            act = method.endswith("-act")

            def quantize(
                name: str, w: torch.Tensor, h: torch.Tensor, act: bool = act, bits: int = bits
            ) -> torch.Tensor:
                nonlocal bits_total
                res = gptq.quantize_gptq(w, h, bits, gs, act_order=act, damp=args.damp)
                bits_total += res.bits_per_value * w.numel()
                return res.weight

            gptq.sequential_quantize(model, model.model.layers, batches, quantize)
            label, setting = f"GPTQ-g{gs}" + (" act-order" if act else ""), f"{bits}-bit"
        else:
            with torch.no_grad():
                for m in linears.values():
                    w = m.weight.detach()
                    if method.startswith("hqq"):
                        new = hqq.quantize_hqq(w, hqq.HQQConfig(bits=bits, group_size=gs))
                    else:
                        new = torch.from_numpy(rtn_g128(w.numpy(), bits, gs))
                    m.weight.copy_(new)
                    bits_total += w.numel() * (bits + 32 / gs)
            label, setting = f"{'HQQ' if method.startswith('hqq') else 'RTN'}-g{gs}", f"{bits}-bit"
        t_q = time.perf_counter() - t
        n_vals = sum(w.numel() for w in orig.values())
        err = sum(float(((m.weight.detach() - orig[n]).double() ** 2).sum()) for n, m in linears.items())
        energy = sum(float((w.double() ** 2).sum()) for w in orig.values())
        p = ppl(model)
        rows.append((label, setting, bits_total / n_vals, err / energy, p, f"quantize {t_q:.0f}s"))
        bpv = bits_total / n_vals
        print(f"  {label} {setting}: {bpv:.3f} bits/value ppl {p:.3f} ({t_q:.0f}s)", flush=True)
        del model
    print()
    print("| method | setting | bits/value | weight rel. MSE | perplexity | Δppl | note |")
    print("|---|---|---:|---:|---:|---:|---|")
    for method, setting, bpv, rel, p, note in rows:
        rel_s = f"{rel:.5f}" if rel else "0"
        delta = 100 * (p / base - 1)
        print(f"| {method} | {setting} | {bpv:.3f} | {rel_s} | {p:.3f} | {delta:+.2f} % | {note} |")
    print(f"\ntotal {time.perf_counter() - t0:.0f}s; log-ppl base {math.log(base):.4f}")


if __name__ == "__main__":
    main()
