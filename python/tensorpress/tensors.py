"""Compress and decompress single tensors.

:func:`compress` is the lossless method (byte planes plus entropy codes, defined in
:mod:`tensorpress.methods.lossless`); :func:`decompress` decodes a stored tensor of *any* method
(lossless, blockwise, video, lowrank) through the method registry of :mod:`tensorpress.methods`.
The dtype names and numpy/torch adapters shared by every method are re-exported here.
"""

from __future__ import annotations

from typing import Any

from tensorpress import methods
from tensorpress.methods.arrays import (
    FLOAT_DTYPES,
    NAMED_DTYPES,
    dtype_from_name,
    dtype_name,
    from_numpy,
    is_torch_tensor,
    to_numpy,
)
from tensorpress.methods.lossless import (
    AUTO_CANDIDATES,
    METHOD,
    MIN_SAVING,
    TABLE_BYTES,
    CompressedTensor,
    PlaneStream,
    choose_codec,
    compress,
    merge_planes,
    predicted_size,
    split_planes,
    transform_name,
)


def decompress(
    obj: Any,
    *,
    threads: int | None = None,
    as_kind: str | None = None,
    device: str | None = None,
    max_size: int | None = None,
) -> Any:
    """Decode a stored tensor of any method (from :func:`compress`, :func:`tensorpress.plan`,
    :func:`tensorpress.video.encode`, a low-rank factorization, or a ``.tpz`` file).

    Returns the kind of tensor it came from, or ``as_kind="numpy"|"torch"``. A torch tensor goes
    to ``device`` if given, else to its recorded device when this machine has it (else the CPU,
    with a warning). ``max_size`` refuses, before decoding, a tensor that decodes to more bytes.
    """
    if not methods.is_stored(obj):
        raise TypeError(f"cannot decompress a {type(obj).__name__}: not a tensorpress stored tensor")
    return methods.decode(obj, as_kind=as_kind, device=device, max_size=max_size, threads=threads)


__all__ = [
    "AUTO_CANDIDATES",
    "FLOAT_DTYPES",
    "METHOD",
    "MIN_SAVING",
    "NAMED_DTYPES",
    "TABLE_BYTES",
    "CompressedTensor",
    "PlaneStream",
    "choose_codec",
    "compress",
    "decompress",
    "dtype_from_name",
    "dtype_name",
    "from_numpy",
    "is_torch_tensor",
    "merge_planes",
    "predicted_size",
    "split_planes",
    "to_numpy",
    "transform_name",
]
