"""Torch (any device) inverses of the byte-plane transforms and of blockwise quantization, bit
for bit the numpy references (docs/format.md §2.1). Every op is elementwise or a gather on the
device the planes are on: nothing goes back to the host."""

from __future__ import annotations

from typing import Any

import numpy as np

from tensorpress.errors import CorruptDataError, FormatError, InvalidArgumentError
from tensorpress.gpu.decoder import import_torch

#: Byte width of each dtype name the container stores.
DTYPE_BYTES = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint64": 8, "uint32": 4, "uint16": 2,
    "uint8": 1, "bool": 1, "int4": 1, "uint4": 1,
}  # fmt: skip
TRANSFORMS = ("bf16-exponent", "fp32-exponent", "nibbles", "byte-planes")


def torch_dtype(torch: Any, name: str) -> Any:
    """The torch dtype a decoded tensor of dtype ``name`` is returned as.

    ``int4``/``uint4`` come back as ``torch.uint8``, one value per byte in the low nibble (the
    bytes of the numpy reference's ml_dtypes arrays): torch has no byte-per-value 4-bit type.
    """
    if name not in DTYPE_BYTES:
        raise FormatError(f"unsupported dtype {name!r}")
    if name in ("int4", "uint4"):
        return torch.uint8
    dtype = getattr(torch, name, None)
    if dtype is None:
        raise InvalidArgumentError(f"this torch has no dtype {name}")
    return dtype


def merge_planes(planes: list[Any], transform: str, dtype_name: str, count: int) -> Any:
    """Rebuild a flat tensor of ``count`` elements of ``dtype_name`` from its uint8 planes.

    Inverse of the writer's plane split, on the planes' device; the result's bytes equal the
    numpy reference's.
    """
    torch = import_torch()
    if transform not in TRANSFORMS:
        raise FormatError(f"unknown byte-plane transform {transform!r}")
    width = DTYPE_BYTES.get(dtype_name)
    if width is None:
        raise FormatError(f"unsupported dtype {dtype_name!r}")
    expected = {"bf16-exponent": 2, "fp32-exponent": 4, "nibbles": 1}.get(transform, width)
    if (transform, dtype_name) in (("bf16-exponent", "bfloat16"), ("fp32-exponent", "float32")):
        pass
    elif transform in ("bf16-exponent", "fp32-exponent") or (
        transform == "nibbles" and dtype_name not in ("int4", "uint4")
    ):
        raise FormatError(f"transform {transform} does not apply to {dtype_name}")
    if len(planes) != expected:
        raise FormatError(f"{transform} needs {expected} planes, got {len(planes)}")
    if any(p.dtype != torch.uint8 or p.dim() != 1 for p in planes):
        raise InvalidArgumentError("planes must be flat torch.uint8 tensors")
    plane_len = (count + 1) // 2 if transform == "nibbles" else count
    sizes = sorted({int(p.numel()) for p in planes})
    if count and sizes != [plane_len]:
        raise CorruptDataError(f"planes hold {sizes} bytes, expected {plane_len} each")
    out_dtype = torch_dtype(torch, dtype_name)
    device = planes[0].device
    if count == 0:
        return torch.empty(0, dtype=out_dtype, device=device)
    if transform == "nibbles":
        packed = planes[0]
        return torch.stack((packed & 0x0F, packed >> 4), dim=1).reshape(-1)[:count]
    if transform == "bf16-exponent":
        exponent, sign_mantissa = planes
        low = ((exponent & 1) << 7) | (sign_mantissa & 0x7F)
        high = (sign_mantissa & 0x80) | (exponent >> 1)
        little_endian = [low, high]
    elif transform == "fp32-exponent":
        exponent, sign_top, mid, low = planes
        little_endian = [
            low,
            mid,
            ((exponent & 1) << 7) | (sign_top & 0x7F),
            (sign_top & 0x80) | (exponent >> 1),
        ]
    else:
        little_endian = list(reversed(planes))
    merged = torch.stack(little_endian, dim=1)
    if out_dtype == torch.uint8:
        return merged.reshape(-1)
    return merged.view(out_dtype).reshape(-1)


def unpack_codes(packed: Any, bits: int, count: int) -> Any:
    """``count`` unsigned codes of ``bits`` bits each, LSB first, from a uint8 tensor (inverse
    of the planner's bit packing), as uint8 on the tensor's device."""
    torch = import_torch()
    if not 2 <= bits <= 8:
        raise FormatError(f"bits must be in [2, 8], got {bits}")
    need = -(-count * bits // 8)
    if packed.numel() < need:
        raise FormatError(f"packed codes hold {packed.numel()} bytes, expected {need}")
    if bits == 8:
        return packed[:count].clone()
    padded = torch.cat(
        (packed[:need].to(torch.int32), torch.zeros(1, dtype=torch.int32, device=packed.device))
    )
    at = torch.arange(count, dtype=torch.int64, device=packed.device) * bits
    byte, shift = at >> 3, (at & 7).to(torch.int32)
    window = padded[byte] | (padded[byte + 1] << 8)
    return ((window >> shift) & ((1 << bits) - 1)).to(torch.uint8)


def dequantize_blockwise(
    codes: Any,
    *,
    scheme: str,
    bits: int,
    block_size: int,
    side: bytes,
    shape: tuple[int, ...],
    dtype_name: str,
    tmax: float = 0.0,
) -> Any:
    """Values of a blockwise tensor (docs/format.md §2.1) from its unsigned codes ``u`` (one
    uint8 per value, on the device: decoded from an entropy stream or :func:`unpack_codes`).

    Computes ``(u − qmax) · scale`` in float32 and rounds once to ``dtype_name``, as the numpy
    reference does, so the results are bit-identical.
    """
    torch = import_torch()
    numel = int(np.prod(shape, dtype=np.int64))
    cols = shape[-1] if shape else 1
    rows = numel // cols if cols else 0
    if codes.dtype != torch.uint8 or codes.numel() != rows * cols:
        raise FormatError(f"code stream holds {codes.numel()} values, expected {rows * cols}")
    if not 2 <= bits <= 8 or block_size < 1:
        raise FormatError(f"bad blockwise parameters: bits={bits} block={block_size}")
    qmax = (1 << (bits - 1)) - 1
    device = codes.device
    q = (codes.to(torch.int16) - qmax).to(torch.float32).reshape(rows, cols)
    if scheme == "rtn-block":
        n_blocks = -(-cols // block_size)
        if len(side) != rows * n_blocks * 2:
            raise FormatError(f"side information is {len(side)} bytes, expected {rows * n_blocks * 2}")
        scales = np.frombuffer(side, dtype="<f2").astype(np.float32).reshape(rows, n_blocks)
        per_block = torch.from_numpy(scales).to(device)
        scale = per_block.repeat_interleave(block_size, dim=1)[:, :cols]
    elif scheme == "tender-group":
        group = np.frombuffer(side, dtype=np.uint8)
        if group.size != cols:
            raise FormatError(f"side information is {group.size} bytes, expected {cols}")
        if group.size and int(group.max()) >= block_size:
            raise FormatError("group index out of range")
        thresholds = np.float32(tmax) / np.exp2(np.arange(block_size - 1, -1, -1, dtype=np.float32))
        column_scale = (thresholds / np.float32(qmax))[group].astype(np.float32)
        scale = torch.from_numpy(column_scale).to(device).reshape(1, cols)
    else:
        raise FormatError(f"unknown blockwise scheme {scheme!r}")
    return (q * scale).to(torch_dtype(torch, dtype_name)).reshape(shape)
