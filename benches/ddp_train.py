"""DDP training with compressed gradient communication: plain vs lossless vs lossy hooks.

A tiny Llama (byte-level vocabulary, random init) is trained on real BBC News text
(``tensorpress.samples.bbc_news_texts``) with 2 gloo processes on loopback, once per mode, from
the same initial weights and on the same data shards:

- ``plain``      DDP's built-in allreduce (bytes counted by an equivalent counting hook run
                 separately: ``allreduce``)
- ``lossless``   ``tensorpress.distributed.comm_hook("lossless")``
- ``lossy8``     ``comm_hook("lossy", bits=8)``  (blockwise 8-bit, fp16 scale per 128, error feedback)
- ``lossy4``     ``comm_hook("lossy", bits=4)``

Prints a markdown table (bytes per step per rank, step time, losses) and writes JSON.

    HF_HUB_OFFLINE=1 python benches/ddp_train.py --steps 300 --json /tmp/ddp.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tensorpress import distributed as tpd
from tensorpress import samples

WORLD = 2
MODES = ("plain", "lossless", "lossy8", "lossy4")  # add "allreduce" for the counting reference


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _model(args: argparse.Namespace) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=args.hidden,
        intermediate_size=2 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=256,
        max_position_embeddings=args.seq,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(cfg)


def _data(rank: int, args: argparse.Namespace) -> np.ndarray:
    """Byte tokens of the BBC articles; rank r trains on the articles with index % WORLD == r."""
    texts = samples.bbc_news_texts()
    mine = "\n\n".join(t for i, t in enumerate(texts) if i % WORLD == rank)
    return np.frombuffer(mine.encode("utf-8", errors="replace"), dtype=np.uint8)


def _batches(tokens: np.ndarray, args: argparse.Namespace, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    while True:
        starts = rng.integers(0, tokens.size - args.seq - 1, args.batch)
        yield torch.from_numpy(np.stack([tokens[s : s + args.seq] for s in starts]).astype(np.int64))


def _run(mode: str, rank: int, args: argparse.Namespace, tokens: np.ndarray) -> dict[str, Any]:
    from torch.nn.parallel import DistributedDataParallel

    model = _model(args)
    ddp = DistributedDataParallel(model, bucket_cap_mb=args.bucket_mb)
    state: Any = None
    if mode != "plain":
        kind = "lossy" if mode.startswith("lossy") else mode
        opts = {"bits": int(mode[5:])} if kind == "lossy" else {}
        state, hook = tpd.comm_hook(kind, **opts)
        ddp.register_comm_hook(state, hook)
    opt = torch.optim.AdamW(ddp.parameters(), lr=args.lr)
    batches = _batches(tokens, args, seed=1000 + rank)
    losses, times = [], []
    for _ in range(args.steps):
        ids = next(batches)
        t0 = time.perf_counter()
        loss = ddp(input_ids=ids, labels=ids).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "losses": losses,
        "step_s_median": statistics.median(times[5:]) if len(times) > 5 else statistics.median(times),
        "stats": state.stats.as_dict() if state is not None else None,
        "params": n_params,
        "grad_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
    }


def _worker(rank: int, port: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        tokens = _data(rank, args)
        results = {mode: _run(mode, rank, args, tokens) for mode in args.modes}
        Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--bucket-mb", type=float, default=1.0)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--json", default=None, help="write all results here")
    args = p.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(_free_port(), args, tmp), nprocs=WORLD, join=True)
        ranks = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(WORLD)]
    r0 = ranks[0]
    plain = r0.get("plain")
    first = r0[args.modes[0]]
    print(
        f"tiny Llama {first['params'] / 1e6:.2f} M params ({first['grad_bytes'] / 1e6:.2f} MB fp32 grads), "
        f"{args.steps} steps, batch {args.batch}x{args.seq} byte tokens per rank, {WORLD} gloo ranks\n"
    )
    print(
        "| mode | bytes sent / step / rank | vs fp32 grads | step time (median) | loss first 10 | "
        "loss last 50 | max abs loss diff vs plain |"
    )
    print("|---|---|---|---|---|---|---|")
    for mode in args.modes:
        r = r0[mode]
        losses = r["losses"]
        stats = r["stats"]
        # plain DDP allreduces the fp32 gradient buckets: its input is the gradient bytes (the
        # "allreduce" counting hook measures exactly this).
        sent = stats["bytes_per_step"] if stats else float(r["grad_bytes"])
        ratio = sent / r["grad_bytes"]
        diff = (
            max(abs(a - b) for a, b in zip(losses, plain["losses"], strict=True)) if plain else float("nan")
        )
        sent_s = f"{sent / 1e6:.3f} MB" + ("" if stats else " (allreduce input)")
        print(
            f"| {mode} | {sent_s} | {100 * ratio:.1f} % | {1e3 * r['step_s_median']:.1f} ms | "
            f"{np.mean(losses[:10]):.4f} | {np.mean(losses[-50:]):.4f} | {diff:.3g} |"
        )
    for mode in args.modes:
        s = r0[mode]["stats"]
        if s:
            print(
                f"{mode}: encode {s['encode_s']:.2f} s, comm {s['comm_s']:.2f} s, "
                f"decode {s['decode_s']:.2f} s over {s['steps']} steps (rank 0)"
            )
    if "lossless" in r0 and plain:
        same = (
            r0["lossless"]["losses"] == plain["losses"]
            and ranks[1]["lossless"]["losses"] == ranks[1]["plain"]["losses"]
        )
        print(f"\nlossless loss curve identical to plain DDP on both ranks: {same}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "ranks": ranks}))


if __name__ == "__main__":
    main()
