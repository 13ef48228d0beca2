"""Whole tensors decoded on the device from their stored parts (docs/format.md §2.1): only the
compressed bytes are uploaded; entropy decode, plane merge and dequantization run there.

These take the parts a container entry holds (plane streams, or codes and side information)
rather than the container's objects, so any reader can call them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tensorpress.errors import CorruptDataError, FormatError
from tensorpress.gpu.decoder import import_torch, resolve_device, upload
from tensorpress.gpu.planes import DTYPE_BYTES, dequantize_blockwise, merge_planes, torch_dtype, unpack_codes


def _count(shape: tuple[int, ...]) -> int:
    if any(d < 0 for d in shape):
        raise FormatError(f"negative dimension in shape {shape}")
    return int(np.prod(shape, dtype=np.int64))


def decode_planes(
    streams: list[Any], transform: str, dtype_name: str, shape: tuple[int, ...], *, device: Any = "cuda"
) -> Any:
    """A lossless tensor of ``shape`` on ``device`` from its plane streams (entropy streams,
    most significant plane first). Each stream is validated and checksummed on the host and
    refused if it declares more bytes than its plane holds, before anything is allocated."""
    torch = import_torch()
    if dtype_name not in DTYPE_BYTES:
        raise FormatError(f"unsupported dtype {dtype_name!r}")
    count = _count(shape)
    plane_len = (count + 1) // 2 if transform == "nibbles" else count
    held = [upload(s, device=device, max_size=plane_len) for s in streams]
    for h in held:
        if count and h.decoded_len != plane_len:
            raise CorruptDataError(f"a plane stream holds {h.decoded_len} bytes, expected {plane_len}")
    planes = [h.decode() for h in held]
    if count == 0:
        return torch.empty(shape, dtype=torch_dtype(torch, dtype_name), device=resolve_device(device))
    return merge_planes(planes, transform, dtype_name, count).reshape(shape)


def decode_blockwise(
    codes: Any,
    side: bytes,
    *,
    layout: str,
    scheme: str,
    bits: int,
    block_size: int,
    shape: tuple[int, ...],
    dtype_name: str,
    tmax: float = 0.0,
    device: Any = "cuda",
) -> Any:
    """A blockwise (lossy) tensor on ``device``: its codes (bit-packed, or an entropy stream of
    one byte per code) are uploaded compressed and expanded there, then dequantized."""
    torch = import_torch()
    count = _count(shape)
    if layout == "packed":
        dev = resolve_device(device)
        raw = np.frombuffer(bytes(codes), np.uint8)
        u = unpack_codes(torch.from_numpy(raw.copy()).to(dev), bits, count)
    else:
        held = upload(codes, device=device, max_size=count)
        if held.decoded_len != count:
            raise FormatError(f"code stream holds {held.decoded_len} values, expected {count}")
        u = held.decode()
    return dequantize_blockwise(
        u,
        scheme=scheme,
        bits=bits,
        block_size=block_size,
        side=side,
        shape=shape,
        dtype_name=dtype_name,
        tmax=tmax,
    )
