"""Weights kept compressed in device memory and decoded layer by layer, just before each layer
runs, as DFloat11 does: a model whose dense weights do not fit the GPU can still run there, at
the cost of one decode of each layer's weights per forward pass.

Each floating-point parameter of the given modules is compressed losslessly (its byte planes
entropy-coded, docs/format.md §2.2), its streams validated and uploaded once
(:class:`~tensorpress.gpu.DeviceStream`), and the dense tensor freed. A forward pre-hook decodes
a module's parameters into fresh device tensors when the module is called; a forward hook frees
them again when it returns. Outputs are bit-identical to the dense model's, since the decoded
weights are.

>>> from tensorpress.gpu import layerwise  # doctest: +SKIP
>>> held = layerwise.compress_modules(model.model.layers, device="cuda")  # doctest: +SKIP
>>> held.device_bytes / held.dense_bytes  # doctest: +SKIP
0.68
>>> with torch.no_grad():  # doctest: +SKIP
...     logits = model(input_ids).logits  # each layer decoded on entry, freed on exit
>>> held.remove()  # the dense weights back, hooks gone  # doctest: +SKIP

Meant for inference: the parameters' ``.data`` is swapped under autograd, so train on the dense
model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tensorpress.errors import InvalidArgumentError
from tensorpress.gpu.decoder import DeviceStream, import_torch, resolve_device, upload
from tensorpress.gpu.planes import merge_planes
from tensorpress.methods import lossless


@dataclass
class _HeldParameter:
    param: Any
    streams: list[DeviceStream]
    transform: str
    dtype_name: str
    shape: tuple[int, ...]
    count: int


class LayerwiseModel:
    """What :func:`compress_modules` holds: the compressed parameters and the hooks."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.groups: list[list[_HeldParameter]] = []
        self._hooks: list[Any] = []

    @property
    def device_bytes(self) -> int:
        """Device bytes of the compressed weights (streams, chunk indexes, decode tables)."""
        return sum(s.nbytes for group in self.groups for h in group for s in h.streams)

    @property
    def dense_bytes(self) -> int:
        """Bytes the same weights take dense."""
        return sum(h.count * h.param.element_size() for group in self.groups for h in group)

    def materialize(self, group: list[_HeldParameter]) -> None:
        """Decode one module's parameters into fresh device tensors."""
        for h in group:
            planes = [s.decode() for s in h.streams]
            h.param.data = merge_planes(planes, h.transform, h.dtype_name, h.count).reshape(h.shape)

    def release(self, group: list[_HeldParameter]) -> None:
        """Free one module's decoded parameters (the compressed streams stay)."""
        torch = import_torch()
        for h in group:
            h.param.data = torch.empty(0, dtype=h.param.dtype, device=self.device)

    def remove(self) -> None:
        """Put every dense parameter back (on the device) and drop the hooks and the compressed
        streams."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        for group in self.groups:
            self.materialize(group)
        self.groups.clear()


def compress_modules(modules: Iterable[Any], *, device: Any = "cuda", codec: str = "auto") -> LayerwiseModel:
    """Keep the floating-point parameters of ``modules`` (e.g. a transformer's decoder layers)
    compressed on ``device`` and decode each module's just before it runs. A parameter shared by
    several modules is held once, by the first; non-float parameters, and those that coding
    would not make smaller (a bias or norm vector stored ``verbatim``), are left as they are."""
    torch = import_torch()
    dev = resolve_device(device)
    held = LayerwiseModel(dev)
    seen: set[int] = set()
    for module in modules:
        if not isinstance(module, torch.nn.Module):
            raise InvalidArgumentError(f"expected torch.nn.Module objects, got {type(module).__name__}")
        group = []
        for param in module.parameters():
            if id(param) in seen or not param.dtype.is_floating_point or param.numel() == 0:
                continue
            seen.add(id(param))
            ct = lossless.compress(param.detach().cpu(), codec)
            if ct.transform == lossless.VERBATIM:
                continue  # coding would not make it smaller (a bias, a norm): it stays dense
            count = param.numel()
            plane_len = lossless.plane_length(ct.transform, count)
            streams = [upload(p.blob, device=dev, max_size=plane_len) for p in ct.planes]
            group.append(_HeldParameter(param, streams, ct.transform, ct.dtype, tuple(ct.shape), count))
        if not group:
            continue
        held.groups.append(group)
        held.release(group)
        held._hooks.append(module.register_forward_pre_hook(lambda m, args, g=group: held.materialize(g)))
        held._hooks.append(module.register_forward_hook(lambda m, args, out, g=group: held.release(g)))
    return held


__all__ = ["LayerwiseModel", "compress_modules"]
