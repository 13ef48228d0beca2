"""The calibrated video recipe through the one-call API, on real weights: SmolLM2-135M saved with
``tp.save_pretrained(model, out, bits_per_value=B, method="video", calibration=ids)``, loaded back
with ``tp.from_pretrained`` and scored on the evaluation windows of ``benches/video_e2e.py``.

    HF_HUB_OFFLINE=1 python benches/video_calibrated.py [--linear-bits 4.0] [--windows 32] [--out DIR]
        [--calib-windows 16] [--tune-norms N [--tune-scales]]

``B`` is the model average over every parameter: the script sets it so that the linear weights get
about ``--linear-bits`` after the tensors that stay lossless (the tied embedding, norms) are paid
for, which is what ``benches/video_e2e.py`` measures (there the embedding stays in float, uncounted).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import tensorpress as tp
from tensorpress.evaluation import calibration_texts, eval_texts, load_smollm2, perplexity, token_windows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--linear-bits", type=float, default=4.0)
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--calib-windows", type=int, default=16)
    ap.add_argument("--out", default=None, help="folder to write (default: a temporary one)")
    ap.add_argument("--tune-norms", type=int, default=0, help="save_pretrained(tune_norms=N)")
    ap.add_argument("--tune-scales", action="store_true", help="save_pretrained(tune_scales=True)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, tok = load_smollm2()
    state = model.state_dict()
    linear = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    linear.discard("lm_head.weight")  # tied to the embedding: stays lossless
    others = [k for k in state if k not in linear and k != "lm_head.weight"]
    lossless_bits = sum(8 * tp.compress(state[k]).nbytes for k in others)
    n_linear = sum(state[k].numel() for k in linear)
    total = n_linear + sum(state[k].numel() for k in others)
    budget = (lossless_bits + args.linear_bits * n_linear) / total
    print(f"# {len(linear)} linear weights ({n_linear:,} values), {len(others)} lossless tensors "
          f"({lossless_bits / 8e6:.1f} MB); model-average budget {budget:.4f} bits/value")  # fmt: skip
    base = perplexity(model, tok, eval_texts(), seq_len=256, max_windows=args.windows)
    calib = token_windows(tok, calibration_texts(), 256, args.calib_windows)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / "smollm2-video")
        t = time.perf_counter()
        saved = tp.save_pretrained(
            model, out, bits_per_value=budget, method="video", calibration=calib,
            tune_norms=args.tune_norms, tune_scales=args.tune_scales, progress=print,
        )  # fmt: skip
        t_save = time.perf_counter() - t
        with tp.open(next(out.glob("*.tpz"))) as f:
            coded = [e for e in f.entries() if e["method"] == "video"]
        linear_bits = sum(8 * e["length"] for e in coded) / sum(
            int(torch.Size(e["shape"]).numel()) for e in coded
        )
        t = time.perf_counter()
        back = tp.from_pretrained(out)
        t_load = time.perf_counter() - t
        ppl = perplexity(back, tok, eval_texts(), seq_len=256, max_windows=args.windows)
    print(f"| uncompressed | 32 | {base:.3f} | |")
    model_bits = saved.nbytes * 8 / saved.values
    print(
        f"| save_pretrained(method='video', calibration={args.calib_windows} windows, "
        f"tune_norms={args.tune_norms}, tune_scales={args.tune_scales}) | {model_bits:.3f} model avg, "
        f"{linear_bits:.3f} on {len(coded)} linears | {ppl:.3f} | {100 * (ppl / base - 1):+.2f} % |"
    )
    print(f"save {t_save:.0f} s, from_pretrained {t_load:.1f} s; {saved}")


if __name__ == "__main__":
    main()
