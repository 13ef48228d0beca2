"""Norm tuning after lossy coding: the normalization weights of a causal LM (RMSNorm, LayerNorm)
are trained to match the uncompressed model's next-token distributions on calibration ids, with
every coded weight frozen at its decoded value.

Why it pays: a norm's weight scales the input columns of every projection it feeds (q, k, v and
gate, up in a Llama block), so tuning it is a column scaling learned end to end, against the
model's own output instead of each layer's; and the norms are stored losslessly either way, so the
tuned ones cost no bits. On SmolLM2-135M coded with AV1 at 3.0 bits/value it takes the perplexity
increase from +40.4 % to +25.9 % with 60 steps, and to +22.2 % with 150 steps on 64 calibration
windows (benches/RESULTS.md §10.9).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tensorpress.errors import InvalidArgumentError

#: Adam learning rate of :func:`tune_norms`.
DEFAULT_LR = 1e-3
#: Calibration windows per step.
DEFAULT_BATCH = 4


def norm_weights(model: Any) -> dict[str, Any]:
    """The weight parameters of ``model``'s RMSNorm and LayerNorm modules, by state-dict name."""
    import torch

    found = {}
    for name, module in model.named_modules():
        kind = type(module).__name__
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.nn.Parameter) and (kind.endswith("RMSNorm") or kind == "LayerNorm"):
            found[f"{name}.weight" if name else "weight"] = weight
    return found


def tune_norms(
    model: Any,
    calibration: Any,
    decoded: Mapping[str, Any],
    steps: int,
    *,
    lr: float = DEFAULT_LR,
    batch: int = DEFAULT_BATCH,
    say: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Tuned norm weights for ``model`` once its weights ``decoded`` (state-dict name → decoded
    tensor) replace the originals: ``steps`` Adam steps over batches of ``calibration`` token ids
    ``(n, seq_len)``, minimising KL(original model ‖ coded model) per token.

    The model is left as it was (weights, norms and ``requires_grad`` restored, even on error).
    Returns state-dict name → tuned weight (detached, the parameter's dtype). Memory: the
    original model's logits over ``calibration`` are kept, in float16.
    """
    import torch

    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise InvalidArgumentError(f"tune_norms takes a positive number of steps, got {steps!r}")
    norms = norm_weights(model)
    if not norms:
        raise InvalidArgumentError("tune_norms: the model has no RMSNorm or LayerNorm weight")
    params = dict(model.named_parameters())
    ids = torch.as_tensor(calibration).to(next(iter(params.values())).device)
    missing = [n for n in decoded if n not in params]
    if missing:
        raise InvalidArgumentError(f"tune_norms: {missing[0]!r} is not a parameter of the model")
    originals = {n: params[n].detach().clone() for n in [*decoded, *norms]}
    grad_flags = {n: p.requires_grad for n, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            teacher = [model(input_ids=ids[i : i + batch]).logits.half() for i in range(0, len(ids), batch)]
            for n, w in decoded.items():
                params[n].copy_(torch.as_tensor(w).to(params[n].dtype).reshape(params[n].shape))
        for p in params.values():
            p.requires_grad_(False)
        for p in norms.values():
            p.requires_grad_(True)
        opt = torch.optim.Adam(list(norms.values()), lr=lr)
        for step in range(steps):
            k = step % len(teacher)
            window = ids[k * batch : (k + 1) * batch]
            target = torch.log_softmax(teacher[k].float(), dim=-1)
            logits = model(input_ids=window).logits.float()
            loss = (
                torch.nn.functional.kl_div(
                    torch.log_softmax(logits, dim=-1), target, log_target=True, reduction="batchmean"
                )
                / window.shape[1]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 20 == 0 or step == steps - 1:
                say(f"norm tuning step {step + 1}/{steps}: KL {loss.item():.4f} per token")
        return {n: p.detach().clone() for n, p in norms.items()}
    finally:
        with torch.no_grad():
            for n, w in originals.items():
                params[n].copy_(w)
        for n, flag in grad_flags.items():
            params[n].requires_grad_(flag)
        model.train(was_training)
