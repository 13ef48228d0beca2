"""Layer-output error of every weight quantizer on SmolLM2-135M's first decoder blocks (cheap).

    HF_HUB_OFFLINE=1 python benches/layer_errors.py [--blocks 2] [--windows 8] [--target 3.0]

For each linear of the first ``--blocks`` decoder blocks: input Hessians ``H = 2/n Σ x xᵀ`` of the
original model on ``--windows`` 256-token windows of the calibration split (what GPTQ and the
compensation fit) and, separately, of the evaluation split (what is reported). Reported per method:
``Σ tr(E H_eval Eᵀ) / Σ tr(W H_eval Wᵀ)`` over those linears and bits/value (all stored bits).
Methods: RTN-g128, HQQ-g128, GPTQ-g128 (± act-order) at 3 and 4 bits; the video path (AV1, rotation,
every block bisected to ``--target``) as one block (``plain1``), 4 act-ordered column blocks without
(``split4``) and with (``comp4``) the error compensation, and 2 blocks (``comp2``).
Only a proxy for perplexity: no sequential (quantized-input) Hessians, no downstream blocks.
"""

from __future__ import annotations

import argparse
import time

import torch

from tensorpress.evaluation import calibration_texts, eval_texts, load_smollm2, token_windows
from tensorpress.quant import gptq, hqq
from tensorpress.video.compensate import encode_compensated
from video_e2e import rtn_g128


def block_hessians(
    model: torch.nn.Module, blocks: list[torch.nn.Module], ids: torch.Tensor
) -> dict[str, torch.Tensor]:
    found: dict[str, torch.Tensor] = {}

    def keep(name: str, w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        found[name] = h
        return w  # unchanged: Hessians of the original model

    gptq.sequential_quantize(
        model, blocks, [{"input_ids": b, "use_cache": False} for b in ids.split(4)], keep
    )
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--target", type=float, default=3.0)
    ap.add_argument("--methods", default="rtn,hqq,gptq,gptq-act,video")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model, tok = load_smollm2()
    blocks = list(model.model.layers[: args.blocks])
    h_cal = block_hessians(model, blocks, token_windows(tok, calibration_texts(), 256, args.windows))
    h_ev = block_hessians(model, blocks, token_windows(tok, eval_texts(), 256, args.windows))
    weights = {n: m.weight.detach().clone() for n, m in model.named_modules() if n in h_cal}
    print(f"# {len(weights)} linears, Hessians in {time.perf_counter() - t0:.0f}s", flush=True)

    def out_err(n: str, new: torch.Tensor) -> float:
        return gptq.output_error(weights[n], new, h_ev[n])

    energy = sum(gptq.output_error(torch.zeros_like(w), w, h_ev[n]) for n, w in weights.items())
    n_vals = sum(w.numel() for w in weights.values())
    rows = []
    methods = args.methods.split(",")
    for bits in (3, 4):
        cands: dict[str, object] = {}
        if "rtn" in methods:
            cands[f"RTN-g128 {bits}-bit"] = lambda n, w, b=bits: (
                torch.from_numpy(rtn_g128(w.numpy(), b)),
                w.numel() * (b + 0.25),
            )
        if "hqq" in methods:
            cands[f"HQQ-g128 {bits}-bit"] = lambda n, w, b=bits: (
                hqq.quantize_hqq(w, hqq.HQQConfig(bits=b)),
                w.numel() * (b + 0.25),
            )
        for act in (False, True):
            if ("gptq-act" if act else "gptq") in methods:
                label = f"GPTQ-g128{' act-order' if act else ''} {bits}-bit"

                def run(n: str, w: torch.Tensor, b: int = bits, a: bool = act) -> tuple[torch.Tensor, float]:
                    r = gptq.quantize_gptq(w, h_cal[n], b, 128, act_order=a)
                    return r.weight, r.bits_per_value * w.numel()

                cands[label] = run
        for label, fn in cands.items():
            err = bits_total = 0.0
            for n, w in weights.items():
                new, b = fn(n, w)  # type: ignore[operator]
                err += out_err(n, new)
                bits_total += b
            rows.append((label, bits_total / n_vals, err / energy))
            print(
                f"  {label}: {bits_total / n_vals:.3f} bits/value, rel. out err {err / energy:.5f}",
                flush=True,
            )
    if "video" in methods:
        for cfg, k, act, comp in (
            ("plain1", 1, False, False),
            ("split4", 4, True, False),
            ("comp4", 4, True, True),
            ("comp2", 2, True, True),
        ):
            err = bits_total = 0.0
            for n, w in weights.items():
                cm = encode_compensated(
                    w.numpy(),
                    h_cal[n].numpy(),
                    column_blocks=k,
                    act_order=act,
                    compensate=comp,
                    codec="av1",
                    rotate=True,
                    bits_per_value=args.target,
                    tolerance=0.0,
                )
                err += out_err(n, torch.from_numpy(cm.decode()).double())
                bits_total += 8 * cm.nbytes
            label = f"av1 +rot target {args.target} {cfg}"
            rows.append((label, bits_total / n_vals, err / energy))
            print(
                f"  {label}: {bits_total / n_vals:.3f} bits/value, rel. out err {err / energy:.5f}",
                flush=True,
            )
    print("\n| method | bits/value | rel. output error (held-out H) |\n|---|---:|---:|")
    for label, bpv, rel in rows:
        print(f"| {label} | {bpv:.3f} | {rel:.5f} |")
    print(f"\n{len(weights)} linears of blocks 0-{args.blocks - 1}; total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
