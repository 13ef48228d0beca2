"""Folder sizes and load times of ``tensorpress.save_pretrained`` / ``from_pretrained`` on the real
MiniLM-L6-v2 and SmolLM2-135M, with the quality check of each row.

    python benches/hf_folders.py [--rows minilm,bct,rom,smollm2,video] [--windows 8]

Rows: MiniLM lossless and at a 4.0 bits/value model average (mean-pooled sentence-embedding
cosine on 64 BBC News evaluation articles); MiniLM after BCT W8A8 and after LLM-ROM at 90 % of the
parameters (saved as they are; outputs compared bit for bit); SmolLM2 bf16 lossless (logits
compared bit for bit); SmolLM2 video-coded (AV1, ``encode_many`` at a 3.0 bits/value average of
the decoder-block linears) saved and reloaded (perplexity in memory vs from the folder).
Load time is ``from_pretrained`` wall time in a warm process (transformers already imported).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import tensorpress as tp
from tensorpress import evaluation, samples


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("model*.tpz"))


def _row(label: str, folder: Path, save_s: float, load_s: float, values: int, check: str) -> str:
    size = _size(folder)
    bits = 8 * size / values
    return f"| {label} | {size / 1e6:.2f} MB | {bits:.3f} | {save_s:.1f} s | {load_s:.2f} s | {check} |"


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def minilm_rows(tmp: Path, rows: set[str]) -> list[str]:
    ref, tok = evaluation.load_minilm()
    values = sum(p.numel() for p in ref.parameters())
    texts = evaluation.eval_texts(64)
    short = [t[:300] for t in evaluation.eval_texts(8)]
    out = []
    if "minilm" in rows:
        _, s = _timed(tp.save_pretrained, samples.minilm_dir(), tmp / "ll")
        m, t = _timed(tp.from_pretrained, tmp / "ll")
        same = torch.equal(
            evaluation.sentence_embeddings(m, tok, short), evaluation.sentence_embeddings(ref, tok, short)
        )
        out.append(_row("MiniLM fp32 lossless", tmp / "ll", s, t, values, f"identical outputs: {same}"))
        _, s = _timed(tp.save_pretrained, samples.minilm_dir(), tmp / "b4", bits_per_value=4.0)
        m, t = _timed(tp.from_pretrained, tmp / "b4")
        cos = evaluation.embedding_cosine(ref, m, tok, texts)
        out.append(_row("MiniLM bits_per_value=4.0", tmp / "b4", s, t, values, f"embedding cosine {cos:.4f}"))
    if "bct" in rows:
        from tensorpress.quant import bct

        m, _ = evaluation.load_minilm()
        bct.quantize_model(m, bct.BCTConfig(weight_bits=8, act_bits=8))
        _, s = _timed(tp.save_pretrained, m, tmp / "bct")
        back, t = _timed(tp.from_pretrained, tmp / "bct")
        same = torch.equal(
            evaluation.sentence_embeddings(m, tok, short), evaluation.sentence_embeddings(back, tok, short)
        )
        out.append(_row("MiniLM BCT W8A8 (as is)", tmp / "bct", s, t, values, f"identical outputs: {same}"))
    if "rom" in rows:
        from tensorpress.lowrank import rom

        m, _ = evaluation.load_minilm()
        enc = tok(
            evaluation.calibration_texts(16),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=128,
        )
        rom.rom_compress(m, [dict(enc)], rom.plan_budget(m, 0.9), progress=False)
        _, s = _timed(tp.save_pretrained, m, tmp / "rom")
        back, t = _timed(tp.from_pretrained, tmp / "rom")
        same = torch.equal(
            evaluation.sentence_embeddings(m, tok, short), evaluation.sentence_embeddings(back, tok, short)
        )
        out.append(
            _row("MiniLM LLM-ROM 90 % (as is)", tmp / "rom", s, t, values, f"identical outputs: {same}")
        )
    return out


def smollm2_rows(tmp: Path, rows: set[str], windows: int, blocks: int | None) -> list[str]:
    model, tok = evaluation.load_smollm2(torch.bfloat16)
    values = sum(p.numel() for p in model.parameters())
    out = []
    if "smollm2" in rows:
        _, s = _timed(tp.save_pretrained, model, tmp / "smol", tokenizer=tok)
        back, t = _timed(tp.from_pretrained, tmp / "smol")
        ids = tok("The BBC reported on Monday that", return_tensors="pt").input_ids
        with torch.no_grad():
            same = torch.equal(back(ids).logits, model(ids).logits)
        out.append(_row("SmolLM2 bf16 lossless", tmp / "smol", s, t, values, f"identical logits: {same}"))
    if "video" in rows:
        import tensorpress.video as tv

        model, tok = evaluation.load_smollm2(torch.float32)
        layers = evaluation.linear_layers(model)
        chosen = {n: m for n, m in layers.items() if "lm_head" not in n}
        if blocks is not None:  # the last `blocks` decoder blocks only (a shorter run)
            n_layers = model.config.num_hidden_layers
            keep = {f"layers.{i}." for i in range(n_layers - blocks, n_layers)}
            chosen = {n: m for n, m in chosen.items() if any(k in n for k in keep)}
        linears = {f"{n}.weight": m.weight.detach() for n, m in chosen.items()}
        start = time.perf_counter()
        coded = tv.encode_many(linears, 3.0, codec="av1")
        state = dict(model.state_dict())
        with torch.no_grad():
            for name, vt in coded.items():
                state[name].copy_(torch.as_tensor(tp.decompress(vt, as_kind="torch")))
        texts = evaluation.eval_texts()
        ppl_mem = evaluation.perplexity(model, tok, texts, max_windows=windows)
        stored = {k: coded.get(k, v) for k, v in state.items()}
        config = model.config.to_dict()
        config["architectures"] = [type(model).__name__]
        tp.save_pretrained(stored, tmp / "video", config=config)
        s = time.perf_counter() - start
        back, t = _timed(tp.from_pretrained, tmp / "video")
        ppl_folder = evaluation.perplexity(back, tok, texts, max_windows=windows)
        lin_bits = 8 * sum(v.nbytes for v in coded.values()) / sum(v.numel() for v in linears.values())
        out.append(
            _row(
                f"SmolLM2 fp32, {len(linears)} linears video-coded (AV1 rd, {lin_bits:.2f} bits/value)",
                tmp / "video",
                s,
                t,
                values,
                f"perplexity in memory {ppl_mem:.4f}, from folder {ppl_folder:.4f}",
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="minilm,bct,rom,smollm2")
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--blocks", type=int, default=None, help="video row: code only the last N blocks")
    args = parser.parse_args()
    rows = set(args.rows.split(","))
    print("| model | weights | bits/value (all params) | save | load | check |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for line in minilm_rows(Path(tmp), rows) + smollm2_rows(Path(tmp), rows, args.windows, args.blocks):
            print(line, flush=True)


if __name__ == "__main__":
    main()
