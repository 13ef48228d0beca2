"""Norm tuning after lossy coding: the normalization weights of a causal LM (RMSNorm, LayerNorm)
are trained to match the uncompressed model's next-token distributions on calibration ids, with
every coded weight frozen at its decoded value.

Why it pays: a norm's weight scales the input columns of every projection it feeds (q, k, v and
gate, up in a Llama block), so tuning it is a column scaling learned end to end, against the
model's own output instead of each layer's; and the norms are stored losslessly either way, so the
tuned ones cost no bits. On SmolLM2-135M coded with AV1 at 3.0 bits/value it takes the perplexity
increase from +40.4 % to +22.2 % with 150 steps on 64 calibration windows (benches/RESULTS.md
§10.9).

:func:`tune_coded` can also learn a gain per output row and per input column of each coded linear
(``W → diag(r) · W · diag(c)``). A video tensor stores a scale and offset per row and, when coded
with column scales, a scale per column: the gains fold into those tables
(:meth:`tensorpress.video.VideoTensor.with_gains`), so they cost no bits either, and they reach
the o_proj and down_proj inputs, which no norm scales. With them, 300 steps at a cosine-decayed
rate on 128 windows take the same model to +14.8 % (§10.10).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from tensorpress.errors import InvalidArgumentError

#: Adam learning rate of :func:`tune_coded` (the best measured with the cosine schedule).
DEFAULT_LR = 2e-3
#: Calibration windows per step.
DEFAULT_BATCH = 4
#: Learning-rate schedules of :func:`tune_coded`: constant, or cosine decay to zero over the steps.
SCHEDULES = ("constant", "cosine")
DEFAULT_SCHEDULE = "cosine"


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


@dataclass(frozen=True)
class Tuned:
    """What :func:`tune_coded` learned: tuned norm weights by state-dict name, and per-row and
    per-column gains (float32, 1-D) by the name of the weight they scale."""

    norms: dict[str, Any]
    row_gains: dict[str, Any] = field(default_factory=dict)
    col_gains: dict[str, Any] = field(default_factory=dict)


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
    """Tuned norm weights for ``model`` once its weights ``decoded`` replace the originals: the
    norms-only form of :func:`tune_coded` (state-dict name → tuned weight)."""
    return tune_coded(model, calibration, decoded, steps, lr=lr, batch=batch, say=say).norms


def linear_weights(model: Any) -> set[str]:
    """State-dict names of the weights of ``model``'s ``nn.Linear`` modules (what gains can scale)."""
    import torch

    return {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def _linear_of(model: Any, weight_name: str) -> Any:
    import torch

    module_name, _, leaf = weight_name.rpartition(".")
    try:
        module = model.get_submodule(module_name)
    except AttributeError:
        module = None
    if leaf != "weight" or not isinstance(module, torch.nn.Linear):
        raise InvalidArgumentError(f"tune_coded: {weight_name!r} is not the weight of an nn.Linear")
    return module


def _gain_hooks(
    model: Any, row_names: Collection[str], col_names: Collection[str]
) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """Gain parameters (float32 ones, on each weight's device) and the hooks that apply them:
    inputs times the column gain, the weight's part of the output times the row gain (a bias stays
    as it is, so the gains are exactly a rescaled weight)."""
    import torch

    rows, cols, handles = {}, {}, []
    for name in col_names:
        module = _linear_of(model, name)
        gain = torch.ones(module.in_features, device=module.weight.device, requires_grad=True)
        cols[name] = gain

        def scale_input(_m: Any, args: tuple[Any, ...], gain: Any = gain) -> tuple[Any, ...]:
            return (args[0] * gain.to(args[0].dtype), *args[1:])

        handles.append(module.register_forward_pre_hook(scale_input))
    for name in row_names:
        module = _linear_of(model, name)
        gain = torch.ones(module.out_features, device=module.weight.device, requires_grad=True)
        rows[name] = gain

        def scale_output(m: Any, _args: tuple[Any, ...], out: Any, gain: Any = gain) -> Any:
            g = gain.to(out.dtype)
            return out * g if m.bias is None else (out - m.bias) * g + m.bias

        handles.append(module.register_forward_hook(scale_output))
    return rows, cols, handles


def tune_coded(
    model: Any,
    calibration: Any,
    decoded: Mapping[str, Any],
    steps: int,
    *,
    row_gains: Collection[str] = (),
    col_gains: Collection[str] = (),
    lr: float = DEFAULT_LR,
    batch: int = DEFAULT_BATCH,
    schedule: str = DEFAULT_SCHEDULE,
    say: Callable[[str], None] = lambda _m: None,
) -> Tuned:
    """Tune ``model`` for its weights ``decoded`` (state-dict name → decoded tensor): ``steps``
    Adam steps over batches of ``calibration`` token ids ``(n, seq_len)``, minimising
    KL(original model ‖ coded model) per token, over the norm weights and over a gain per output
    row of each linear weight named in ``row_gains`` and per input column of each in ``col_gains``;
    the rate is ``lr`` throughout or, with ``schedule="cosine"``, decays from it to zero.

    The model is left as it was (weights, norms and ``requires_grad`` restored, hooks removed,
    even on error). Memory: the original model's logits over ``calibration`` are kept, in float16.
    """
    import torch

    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise InvalidArgumentError(f"tune_norms takes a positive number of steps, got {steps!r}")
    if schedule not in SCHEDULES:
        raise InvalidArgumentError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    norms = norm_weights(model)
    if not norms:
        raise InvalidArgumentError("tune_norms: the model has no RMSNorm or LayerNorm weight")
    params = dict(model.named_parameters())
    ids = torch.as_tensor(calibration).to(next(iter(params.values())).device)
    missing = [n for n in decoded if n not in params]
    if missing:
        raise InvalidArgumentError(f"tune_norms: {missing[0]!r} is not a parameter of the model")
    for name in [*row_gains, *col_gains]:
        _linear_of(model, name)
    originals = {n: params[n].detach().clone() for n in [*decoded, *norms]}
    grad_flags = {n: p.requires_grad for n, p in params.items()}
    was_training = model.training
    handles: list[Any] = []
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
        rows, cols, handles = _gain_hooks(model, row_gains, col_gains)
        opt = torch.optim.Adam([*norms.values(), *rows.values(), *cols.values()], lr=lr)
        decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if schedule == "cosine" else None
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
            if decay is not None:
                decay.step()
            if step % 20 == 0 or step == steps - 1:
                say(f"tuning step {step + 1}/{steps}: KL {loss.item():.4f} per token")
        return Tuned(
            norms={n: p.detach().clone() for n, p in norms.items()},
            row_gains={n: g.detach().clone() for n, g in rows.items()},
            col_gains={n: g.detach().clone() for n, g in cols.items()},
        )
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for n, w in originals.items():
                params[n].copy_(w)
        for n, flag in grad_flags.items():
            params[n].requires_grad_(flag)
        model.train(was_training)
