"""Norm tuning after lossy coding: the RMSNorm weights of a decoder are trained to match the
uncompressed model's next-token distributions on calibration windows (KL divergence), with every
linear weight frozen at its decoded value. The norms are stored losslessly either way, so tuned
norms cost no bits; a norm's weight scales the input columns of the projections it feeds (q, k, v
and gate, up), so this is a column scaling learned end to end.

Used by ``benches/video_e2e.py --tune-norms STEPS``.
"""

from __future__ import annotations

import time
from typing import Any

import torch


def norm_modules(model: Any) -> dict[str, Any]:
    """The model's RMSNorm modules by name (LlamaRMSNorm and similar)."""
    return {n: m for n, m in model.named_modules() if type(m).__name__.endswith("RMSNorm")}


def teacher_logits(model: Any, windows: torch.Tensor, batch: int = 4) -> torch.Tensor:
    """The model's logits over ``windows`` (fp16, on the CPU), computed before coding."""
    with torch.no_grad():
        return torch.cat(
            [model(input_ids=windows[i : i + batch]).logits.half() for i in range(0, len(windows), batch)]
        )


def tune_norms(
    model: Any,
    windows: torch.Tensor,
    teacher: torch.Tensor,
    steps: int,
    lr: float = 1e-3,
    batch: int = 4,
    log: Any = print,
) -> dict[str, torch.Tensor]:
    """Train the RMSNorm weights for ``steps`` Adam steps on batches of ``windows`` to minimise
    KL(teacher || model); everything else is frozen. Returns the original norm weights (to restore)."""
    norms = norm_modules(model)
    saved = {n: m.weight.detach().clone() for n, m in norms.items()}
    params = [m.weight for m in norms.values()]
    requires = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    t = time.perf_counter()
    try:
        for step in range(steps):
            i = (step * batch) % len(windows)
            ids = windows[i : i + batch]
            target = torch.log_softmax(teacher[i : i + batch].float(), dim=-1)
            logits = model(input_ids=ids).logits.float()
            loss = (
                torch.nn.functional.kl_div(
                    torch.log_softmax(logits, dim=-1), target, log_target=True, reduction="batchmean"
                )
                / ids.shape[1]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 10 == 0 or step == steps - 1:
                took = time.perf_counter() - t
                log(f"    norm tuning step {step}: KL {float(loss):.4f} per token ({took:.0f}s)")
    finally:
        for p in model.parameters():
            p.requires_grad_(requires[id(p)])
    return saved


def restore_norms(model: Any, saved: dict[str, torch.Tensor]) -> None:
    norms = norm_modules(model)
    with torch.no_grad():
        for n, w in saved.items():
            norms[n].weight.copy_(w)
