"""Evaluate BCT, Tender and LLM-ROM on real models (issue 6; results in benches/RESULTS.md §5).

SmolLM2-135M perplexity on BBC News evaluation text and MiniLM-L6-v2 sentence-embedding cosine vs
the original model, for:

- BCT blockwise 8/4-bit vs per-tensor quantization at the same bits (storage ratios included);
- Tender INT8/INT4 activations (8 groups, calibrated or dynamic) vs per-tensor INT8/INT4;
- LLM-ROM at 90 % and 80 % of the parameters vs a weight-space SVD at the same size.

Usage::

    HF_HUB_OFFLINE=1 python benches/quant_eval.py [--sections bct,tender,rom] [--windows 8]

Prints one line per configuration (with timings) and, with ``--json PATH``, writes all results.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from tensorpress import evaluation as ev
from tensorpress.lowrank import rom
from tensorpress.quant import bct, tender


def _cal_lm_batches(tokenizer: Any, n: int, seq_len: int, batch: int = 4) -> list[dict[str, Any]]:
    ids = ev.token_windows(tokenizer, ev.calibration_texts(), seq_len, n)
    return [{"input_ids": ids[i : i + batch], "use_cache": False} for i in range(0, ids.shape[0], batch)]


def _cal_bert_batches(tokenizer: Any, n: int, batch: int = 8) -> list[dict[str, Any]]:
    texts = ev.calibration_texts(n)
    return [
        dict(
            tokenizer(
                texts[i : i + batch], padding=True, truncation=True, max_length=128, return_tensors="pt"
            )
        )
        for i in range(0, len(texts), batch)
    ]


class Runner:
    """Holds the reference numbers and evaluates transformed copies of both models."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        _, self.lm_tok = ev.load_smollm2()
        self.minilm_ref, self.bert_tok = ev.load_minilm()
        self.eval_texts = ev.eval_texts()
        self.bert_texts = ev.eval_texts(args.minilm_texts)
        print(f"loaded models in {time.perf_counter() - t0:.1f}s", flush=True)
        self.ref_ppl = args.ref_ppl or self.ppl(ev.load_smollm2()[0])
        print(f"reference SmolLM2 perplexity {self.ref_ppl:.4f}", flush=True)

    def ppl(self, model: Any) -> float:
        return ev.perplexity(model, self.lm_tok, self.eval_texts, self.args.seq_len, self.args.windows)

    def run(
        self,
        section: str,
        name: str,
        transform: Callable[[Any, str], dict[str, Any]],
        models: tuple[str, ...] = ("smollm2", "minilm"),
    ) -> None:
        """``transform(model, kind)`` modifies a fresh copy in place and returns extra fields."""
        row: dict[str, Any] = {"section": section, "name": name}
        models = tuple(m for m in models if m in self.args.models.split(","))
        if "smollm2" in models:
            model = ev.load_smollm2()[0]
            t0 = time.perf_counter()
            row.update({f"lm_{k}": v for k, v in transform(model, "smollm2").items()})
            t1 = time.perf_counter()
            row["ppl"] = self.ppl(model)
            row["ppl_delta_pct"] = 100 * (row["ppl"] / self.ref_ppl - 1)
            row["lm_convert_s"], row["lm_eval_s"] = t1 - t0, time.perf_counter() - t1
            del model
        if "minilm" in models:
            model = ev.load_minilm()[0]
            t0 = time.perf_counter()
            row.update({f"bert_{k}": v for k, v in transform(model, "minilm").items()})
            t1 = time.perf_counter()
            row["cosine"] = ev.embedding_cosine(self.minilm_ref, model, self.bert_tok, self.bert_texts)
            row["bert_convert_s"], row["bert_eval_s"] = t1 - t0, time.perf_counter() - t1
        self.results.append(row)
        print(json.dumps(row, default=float), flush=True)


def _selected(r: Runner, name: str) -> bool:
    """``--only`` keys match as substrings, or exactly when written ``=name``."""
    keys = r.args.only.split("|")
    return not r.args.only or any(name == k[1:] if k.startswith("=") else k in name for k in keys)


def bench_bct(r: Runner) -> None:
    configs = {
        "BCT W8A8 block64": bct.BCTConfig(8, 8, 64),
        "per-tensor W8A8": bct.BCTConfig(8, 8, None, act_block_size=None),
        "BCT W4A8 block64": bct.BCTConfig(4, 8, 64),
        "per-tensor W4A8": bct.BCTConfig(4, 8, None, act_block_size=None),
        "BCT W4A8 block32": bct.BCTConfig(4, 8, 32),
        "BCT W4A8 block32, zero point": bct.BCTConfig(4, 8, 32, weight_zero_point=True),
        "BCT W4A8 block32, zero point, 8-bit embedding": bct.BCTConfig(
            4, 8, 32, embedding_bits=8, weight_zero_point=True
        ),
    }
    for name, cfg in configs.items():
        if not _selected(r, name):
            continue

        def transform(model: Any, _kind: str, cfg: bct.BCTConfig = cfg) -> dict[str, Any]:
            rep = bct.quantize_model(model, cfg)
            return {"ratio": rep.storage_ratio, "bits_per_param": rep.bits_per_parameter}

        r.run("bct", name, transform)
    if r.args.only:
        return
    # Storage ratios alone (weights only matter; cheap): block size x scale format.
    for model_name, loader in (("smollm2", ev.load_smollm2), ("minilm", ev.load_minilm)):
        model = loader()[0]
        for block in (32, 64, 128, 1024, None):
            for fmt in ("fp16", "pow2"):
                ratio = bct.model_storage_ratio(model, bct.BCTConfig(4, 8, block, fmt))
                row = {
                    "section": "bct_ratio",
                    "model": model_name,
                    "block": block,
                    "scale": fmt,
                    "ratio": ratio,
                }
                r.results.append(row)
                print(json.dumps(row), flush=True)


def bench_bct_ablation(r: Runner) -> None:
    """Which part of BCT W8A8 costs the perplexity: switch one component back to (near) float at a
    time. SmolLM2 only (MiniLM's cosine is already 0.999)."""
    configs = {
        "W8A8 block64 (all)": bct.BCTConfig(8, 8, 64),
        "W8A16 (weights only)": bct.BCTConfig(8, 16, 64),
        "W8A8, attention in float": bct.BCTConfig(8, 8, 64, quantize_attention=False),
        "W8A8, block outputs in float": bct.BCTConfig(8, 8, 64, quantize_residual=False),
        "W8A8, activation block 32": bct.BCTConfig(8, 8, 64, act_block_size=32),
        "W8A8, LUT 4097 entries": bct.BCTConfig(8, 8, 64, lut_size=4096),
        "W8A8, 16-bit block outputs": bct.BCTConfig(8, 8, 64, residual_bits=16),
        "W8A8, block outputs in blocks of 16": bct.BCTConfig(8, 8, 64, residual_block_size=16),
        "W8A8, LUT 4097, activation block 32": bct.BCTConfig(8, 8, 64, lut_size=4096, act_block_size=32),
        "W8A8, LUT 4097, act block 32, 16-bit block outputs": bct.BCTConfig(
            8, 8, 64, lut_size=4096, act_block_size=32, residual_bits=16
        ),
        # 4-bit weights: where the W4A8 loss comes from, and what removes it.
        "W4A8 block32": bct.BCTConfig(4, 8, 32),
        "W4A16 block32 (weights only)": bct.BCTConfig(4, 16, 32),
        "W4A8 block32, 8-bit embedding": bct.BCTConfig(4, 8, 32, embedding_bits=8),
        "W4A8 block32, clip search": bct.BCTConfig(4, 8, 32, weight_clip_search=True),
        "W4A8 block32, 8-bit embedding, clip search": bct.BCTConfig(
            4, 8, 32, embedding_bits=8, weight_clip_search=True
        ),
        "W4A8 block64, 8-bit embedding, clip search": bct.BCTConfig(
            4, 8, 64, embedding_bits=8, weight_clip_search=True
        ),
        # Asymmetric (min-max, float16 offset) weight blocks: the grid of SmolLM2's own Q4_1 blocks.
        "W4A8 block32, zero point": bct.BCTConfig(4, 8, 32, weight_zero_point=True),
        "W4A8 block32, zero point, 8-bit embedding": bct.BCTConfig(
            4, 8, 32, embedding_bits=8, weight_zero_point=True
        ),
        "W4A8 block64, zero point, 8-bit embedding": bct.BCTConfig(
            4, 8, 64, embedding_bits=8, weight_zero_point=True
        ),
    }
    for name, cfg in configs.items():
        if not _selected(r, name):
            continue

        def transform(model: Any, _kind: str, cfg: bct.BCTConfig = cfg) -> dict[str, Any]:
            return {"ratio": bct.quantize_model(model, cfg).storage_ratio}

        r.run("bct_ablation", name, transform, models=("smollm2",))


def bench_tender(r: Runner) -> None:
    n_cal = r.args.calibration
    configs = {
        "Tender INT8 G8 calibrated": tender.TenderConfig(8, 8, 8),
        "Tender INT8 G8 calibrated, headroom 2": tender.TenderConfig(8, 8, 8, headroom=2.0),
        "Tender INT8 G8 calibrated, headroom 4": tender.TenderConfig(8, 8, 8, headroom=4.0),
        "Tender INT8 G12 calibrated": tender.TenderConfig(8, 8, 12),
        "Tender INT8 G16 calibrated": tender.TenderConfig(8, 8, 16),
        "Tender INT8 G8 calibrated, token scale": tender.TenderConfig(8, 8, 8, token_scale=True),  # mean bias
        "Tender INT8 G8 calibrated, token scale, midrange bias": tender.TenderConfig(
            8, 8, 8, token_scale=True, bias_estimate="midrange"
        ),
        "Tender INT8 G8 calibrated, token scale, sequence-midrange bias": tender.TenderConfig(
            8, 8, 8, token_scale=True, bias_estimate="sequence_midrange"
        ),
        "Tender INT8 G8 calibrated, sequence-midrange bias": tender.TenderConfig(
            8, 8, 8, bias_estimate="sequence_midrange"
        ),
        "Tender INT4 G8 calibrated, token scale": tender.TenderConfig(4, 8, 8, token_scale=True),
        "Tender INT8 G8 dynamic": tender.TenderConfig(8, 8, 8, dynamic=True),
        "per-tensor INT8 calibrated": tender.TenderConfig(8, 8, 1, subtract_bias=False),
        "per-tensor INT8 dynamic": tender.TenderConfig(8, 8, 1, subtract_bias=False, dynamic=True),
        "Tender INT4 G8 calibrated": tender.TenderConfig(4, 8, 8),
        "Tender INT4 G8 dynamic": tender.TenderConfig(4, 8, 8, dynamic=True),
        "per-tensor INT4 calibrated": tender.TenderConfig(4, 8, 1, subtract_bias=False),
        "per-tensor INT4 dynamic": tender.TenderConfig(4, 8, 1, subtract_bias=False, dynamic=True),
    }
    for name, cfg in configs.items():
        if not _selected(r, name):
            continue

        def transform(model: Any, kind: str, cfg: tender.TenderConfig = cfg) -> dict[str, Any]:
            if kind == "smollm2":
                batches = _cal_lm_batches(r.lm_tok, n_cal, r.args.seq_len)
                layers = tender.quantize_model(model, batches, cfg)
            else:
                batches = _cal_bert_batches(r.bert_tok, n_cal)
                layers = tender.quantize_model(model, batches, cfg, skip=("pooler.dense",))
            return {"layers": len(layers)}

        r.run("tender", name, transform)


def bench_rom(r: Runner) -> None:
    n_cal = r.args.calibration
    for keep in (0.9, 0.8):
        for method in ("ROM", "SVD"):

            def transform(model: Any, kind: str, keep: float = keep, method: str = method) -> dict[str, Any]:
                budget = rom.plan_budget(model, keep)
                if method == "SVD":
                    res = rom.svd_compress(model, budget, progress=False)
                elif kind == "smollm2":
                    res = rom.rom_compress(model, _cal_lm_batches(r.lm_tok, n_cal, r.args.seq_len), budget)
                else:
                    res = rom.rom_compress(model, _cal_bert_batches(r.bert_tok, n_cal), budget)
                return {
                    "blocks": f"{budget.block_indices[0]}-{budget.block_indices[-1]}",
                    "beta": budget.beta,
                    "kept": res.parameters_after / res.parameters_before,
                    "params": res.parameters_after,
                }

            r.run("rom", f"{method} keep {keep:.0%}", transform)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sections", default="bct,tender,rom", help="any of bct,bct_ablation,tender,rom")
    parser.add_argument("--windows", type=int, default=8, help="SmolLM2 eval windows")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--calibration", type=int, default=32, help="calibration sequences/texts")
    parser.add_argument("--minilm-texts", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ref-ppl", type=float, default=None, help="skip the reference SmolLM2 run")
    parser.add_argument("--models", default="smollm2,minilm", help="evaluate on these models only")
    parser.add_argument("--json", default=None, help="write all results here")
    parser.add_argument("--only", default="", help="bct, tender: configs whose name holds A|B|…")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    runner = Runner(args)
    sections = {
        "bct": bench_bct,
        "bct_ablation": bench_bct_ablation,
        "tender": bench_tender,
        "rom": bench_rom,
    }
    for name in args.sections.split(","):
        t = time.perf_counter()
        sections[name.strip()](runner)
        print(f"section {name} took {time.perf_counter() - t:.0f}s", flush=True)
    print(f"total {time.perf_counter() - t0:.0f}s", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {"reference_ppl": runner.ref_ppl, "args": vars(args), "results": runner.results}, f, indent=1
            )


if __name__ == "__main__":
    main()
