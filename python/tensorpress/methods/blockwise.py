"""Method ``blockwise``: lossy integer codes plus side information, and the numpy quantizers that
define its format (the one reference; torch versions elsewhere are tested against these).

The tensor is viewed as a ``rows × cols`` matrix, ``cols`` = the last dimension (a 0-d tensor is
1 × 1). Codes are unsigned ``u = q + qmax`` with ``qmax = 2^(bits−1) − 1``, so ``u ≤ 2·qmax``.

- ``rtn-block``: round-to-nearest symmetric INT-``bits`` with one float16 scale per
  ``block_size`` consecutive values of a row; each scale is ``absmax / qmax`` rounded *up* to
  float16 (so no code clips), 1.0 for an all-zero block.
- ``tender-group``: Tender-style channel grouping: columns in ``G = block_size`` groups by
  abs-max with power-of-two scale ratios (thresholds ``tmax / 2^(G−1−g)``).

Codes are bit-packed (``layout="packed"``, LSB first) or one byte per code in an entropy stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tensorpress import entropy
from tensorpress.errors import CorruptDataError, FormatError, InvalidArgumentError
from tensorpress.methods import base
from tensorpress.methods.arrays import FLOAT_DTYPES, dtype_from_name, dtype_name, to_numpy
from tensorpress.methods.lossless import predicted_size, stream_facts

#: Method name in the container.
METHOD = "blockwise"
SCHEMES = ("rtn-block", "tender-group")
#: Largest ``block_size`` of ``rtn-block`` (values per scale).
MAX_BLOCK_SIZE = 1 << 31
#: Largest group count of ``tender-group`` (one byte per column holds the group).
MAX_GROUPS = 255
#: Entropy codecs tried for the code plane by ``layout="auto"``.
LAYOUT_CODECS = ("qlc", "huffman", "expgolomb-rank")


# --- the numpy reference quantizers ----------------------------------------------------------


def as_matrix(arr: np.ndarray) -> np.ndarray:
    """2-D view ``(prod(leading dims), last dim)``; scalars are ``(1, 1)``, vectors ``(1, n)``."""
    if arr.ndim == 0:
        return arr.reshape(1, 1)
    if arr.ndim == 1:
        return arr.reshape(1, -1)
    return arr.reshape(math.prod(arr.shape[:-1]), arr.shape[-1])


def fp16_scales(absmax: np.ndarray, qmax: int) -> np.ndarray:
    """absmax/qmax rounded *up* to float16 (so no code overflows); 1 for all-zero blocks; at most
    the float16 maximum 65504 (larger values then clip to ±qmax)."""
    raw = np.minimum(absmax.astype(np.float32) / np.float32(qmax), np.float32(65504.0))
    s16 = raw.astype(np.float16)
    low = s16.astype(np.float32) < raw
    with np.errstate(over="ignore"):  # nextafter(65504) is inf, never selected (raw <= 65504)
        s16 = np.where(low, np.nextafter(s16, np.float16(np.inf)), s16)
    return np.where(absmax > 0, s16, np.float16(1.0)).astype(np.float16)


def rtn_blockwise(m: np.ndarray, bits: int, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Round-to-nearest (ties to even) symmetric INT-``bits`` with an fp16 scale per
    ``block_size`` values along the rows of matrix ``m``. Returns (int codes in [−qmax, qmax] of
    shape m, fp16 scales of shape (rows, n_blocks)); codes = rint(float32(x) / float32(scale))."""
    qmax = (1 << (bits - 1)) - 1
    rows, cols = m.shape
    if rows * cols == 0:
        return np.zeros((rows, cols), np.int16), np.ones((rows, -(-cols // block_size)), np.float16)
    pad = (-cols) % block_size
    x = np.asarray(m, dtype=np.float32)
    if pad:
        x = np.pad(x, ((0, 0), (0, pad)))
    blocks = x.reshape(rows, -1, block_size)
    scales = fp16_scales(np.abs(blocks).max(axis=-1), qmax)
    codes = np.clip(np.rint(blocks / scales.astype(np.float32)[..., None]), -qmax, qmax)
    return codes.reshape(rows, -1)[:, :cols].astype(np.int16), scales


def rtn_dequantize(codes: np.ndarray, scales: np.ndarray, block_size: int) -> np.ndarray:
    """Inverse of :func:`rtn_blockwise` (float32): ``q · float32(scale)``."""
    cols = codes.shape[1]
    # Index the scale of each column instead of repeating scales block_size times: a hostile
    # block_size must not cost memory.
    which = np.arange(cols, dtype=np.int64) // block_size
    return codes.astype(np.float32) * scales.astype(np.float32)[:, which]


def tender_group(m: np.ndarray, bits: int, groups: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Tender-style grouping of the columns of ``m``: thresholds ``t_i = TMax / 2^(G−1−i)``, column
    ``c`` in the smallest group with ``t_i ≥ absmax_c``, scale ``t_i / qmax``. Returns (codes,
    group index per column as uint8, TMax)."""
    qmax = (1 << (bits - 1)) - 1
    x = np.asarray(m, dtype=np.float32)
    absmax = np.abs(x).max(axis=0) if x.shape[0] else np.zeros(x.shape[1], np.float32)
    tmax = float(absmax.max()) if absmax.size else 0.0
    if tmax == 0.0 or not math.isfinite(tmax):
        tmax = 1.0 if tmax == 0.0 else tmax
    thresholds = np.float32(tmax) / np.exp2(np.arange(groups - 1, -1, -1, dtype=np.float32))
    group = np.searchsorted(thresholds, absmax, side="left").clip(0, groups - 1).astype(np.uint8)
    scale = (thresholds / np.float32(qmax))[group]
    codes = np.clip(np.rint(x / scale), -qmax, qmax).astype(np.int16)
    return codes, group, tmax


def tender_dequantize(
    codes: np.ndarray, group: np.ndarray, tmax: float, bits: int, groups: int
) -> np.ndarray:
    """Inverse of :func:`tender_group` (float32)."""
    qmax = (1 << (bits - 1)) - 1
    thresholds = np.float32(tmax) / np.exp2(np.arange(groups - 1, -1, -1, dtype=np.float32))
    return codes.astype(np.float32) * (thresholds / np.float32(qmax))[group]


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Pack unsigned ``values`` (< 2^bits) at ``bits`` bits each, LSB first; code ``i`` occupies
    bits ``[i·bits, (i+1)·bits)`` of the byte string (bit ``k`` of byte ``j`` is bit ``8j+k``)."""
    v = np.ascontiguousarray(values, dtype=np.uint8).reshape(-1)
    if bits == 8:
        return v.tobytes()
    bitmat = (v[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return np.packbits(bitmat.reshape(-1), bitorder="little").tobytes()


def unpack_bits(data: bytes | memoryview, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`; the data must hold exactly ⌈count·bits/8⌉ bytes and the
    padding bits of the last byte must be zero."""
    raw = np.frombuffer(data, dtype=np.uint8)
    need = -(-count * bits // 8)
    if raw.size != need:
        raise FormatError(f"packed codes are {raw.size} bytes, {count} codes of {bits} bits need {need}")
    if bits == 8:
        return raw.copy()
    used = count * bits % 8
    if used and int(raw[-1]) >> used:
        raise CorruptDataError("padding bits after the last packed code are not zero")
    bitmat = np.unpackbits(raw, bitorder="little")[: count * bits].reshape(count, bits)
    return (bitmat << np.arange(bits, dtype=np.uint8)).sum(axis=1, dtype=np.uint16).astype(np.uint8)


def code_layouts(u: np.ndarray, bits: int) -> dict[str, int]:
    """Predicted bytes of the code plane ``u`` (uint8) per layout: bit-packed and entropy codes."""
    n = u.size
    sizes = {"packed": -(-n * bits // 8)}
    if n:
        st = entropy.stats(u)
        for c in LAYOUT_CODECS:
            sizes[c] = predicted_size(
                n,
                st.codecs[c].mean_code_len,
                c,
                entropy.DEFAULT_LANES,
                entropy.DEFAULT_CHUNK_SIZE,
                st.codecs[c].table_bytes,
            )
    return sizes


# --- the stored tensor -----------------------------------------------------------------------


def _matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    cols = shape[-1]
    return (math.prod(shape) // cols if cols else 0), cols


def side_length(shape: tuple[int, ...], scheme: str, block_size: int) -> int:
    """Bytes of side information: fp16 scales per row block, or one group byte per column."""
    rows, cols = _matrix_shape(shape)
    return rows * -(-cols // block_size) * 2 if scheme == "rtn-block" else cols


@dataclass(repr=False)
class BlockwiseTensor:
    """A lossy tensor: integer codes (bit-packed or entropy-coded) plus per-block fp16 scales
    (``scheme="rtn-block"``) or per-column power-of-two groups (``scheme="tender-group"``)."""

    dtype: str
    shape: tuple[int, ...]
    scheme: str
    bits: int
    block_size: int
    layout: str
    codes: bytes
    side: bytes
    tmax: float = 0.0
    kind: str = "numpy"
    device: str | None = None
    method: ClassVar[str] = METHOD

    @property
    def numel(self) -> int:
        return base.numel(self.shape)

    @property
    def nbytes(self) -> int:
        return len(self.codes) + len(self.side)

    @property
    def raw_nbytes(self) -> int:
        return self.numel * dtype_from_name(self.dtype).itemsize

    @property
    def decoded_nbytes(self) -> int:
        return self.raw_nbytes

    @property
    def bits_per_value(self) -> float:
        return 8 * self.nbytes / self.numel if self.numel else 0.0

    @property
    def codec(self) -> str:
        group = f"g{self.block_size}" if self.scheme == "rtn-block" else f"G{self.block_size}"
        return f"{self.scheme}-b{self.bits}-{group}+{self.layout}"

    def __repr__(self) -> str:
        return (
            f"BlockwiseTensor(shape={self.shape}, dtype={self.dtype}, method={self.method}, "
            f"codec={self.codec}, nbytes={self.nbytes}, bits_per_value={self.bits_per_value:.3f})"
        )

    def header(self) -> dict[str, Any]:
        return {
            "dtype": self.dtype,
            "shape": list(self.shape),
            "scheme": self.scheme,
            "bits": self.bits,
            "block_size": self.block_size,
            "layout": self.layout,
            "codes_length": len(self.codes),
            "tmax": self.tmax,
            "kind": self.kind,
            "device": self.device,
        }

    def payload(self) -> bytes:
        return self.codes + self.side

    @classmethod
    def from_parts(cls, header: dict[str, Any], payload: bytes | memoryview) -> BlockwiseTensor:
        """Validate ``header`` against ``payload`` (docs/format.md §2.3), then build."""
        m = METHOD
        h = base.need_dict(header, m)
        dtype = base.need_dtype(h, m, FLOAT_DTYPES)
        shape = base.need_shape(h, m)
        scheme = base.need_choice(h, "scheme", SCHEMES, m)
        bits = base.need_int(h, "bits", 2, 8, m)
        block = base.need_int(h, "block_size", 1, MAX_BLOCK_SIZE if scheme == "rtn-block" else MAX_GROUPS, m)
        layout = base.need_choice(h, "layout", ("packed", *entropy.CODECS), m)
        data = bytes(payload)
        n_codes = base.need_int(h, "codes_length", 0, len(data), m)
        tmax = base.need_float(h, "tmax", m, positive=scheme == "tender-group")
        kind = base.need_kind(h, m)
        device = base.need_device(h, m)
        codes, side = data[:n_codes], data[n_codes:]
        expect = side_length(shape, scheme, block)
        if len(side) != expect:
            raise base.fail(m, f"side information is {len(side)} bytes, the shape needs {expect}")
        n = base.numel(shape)
        if layout == "packed":
            if n_codes != -(-n * bits // 8):
                raise base.fail(
                    m, f"{n} packed {bits}-bit codes need {-(-n * bits // 8)} bytes, not {n_codes}"
                )
        else:
            stream_codec, count = stream_facts(codes, "blockwise codes")
            if stream_codec != layout or count != n:
                raise base.fail(
                    m, f"code stream is {stream_codec} of {count} codes, header says {layout} of {n}"
                )
        if scheme == "tender-group" and side and max(side) >= block:
            raise base.fail(m, f"a column's group index is >= the {block} groups")
        return cls(dtype, shape, scheme, bits, block, layout, codes, side, tmax, kind, device)

    def dequantize_numpy(self) -> np.ndarray:
        """Decoded values as a numpy array of the original dtype and shape."""
        rows, cols = _matrix_shape(self.shape)
        qmax = (1 << (self.bits - 1)) - 1
        n = rows * cols
        if self.layout == "packed":
            u = unpack_bits(self.codes, self.bits, n)
        else:
            u = entropy.decode(self.codes, max_size=n)
            if u.size != n:
                raise CorruptDataError(f"code stream holds {u.size} values, expected {n}")
        if u.size and int(u.max()) > 2 * qmax:
            raise CorruptDataError(f"a {self.bits}-bit code exceeds {2 * qmax}")
        codes = (u.astype(np.int16) - qmax).reshape(rows, cols)
        if self.scheme == "rtn-block":
            nb = -(-cols // self.block_size) if cols else 0
            scales = np.frombuffer(self.side, dtype="<f2").reshape(rows, nb)
            if scales.size and not np.all(np.isfinite(scales) & (scales > 0)):
                raise CorruptDataError("a block scale is zero, negative or not finite")
            out = rtn_dequantize(codes, scales, self.block_size)
        else:
            group = np.frombuffer(self.side, dtype=np.uint8)
            out = tender_dequantize(codes, group, self.tmax, self.bits, self.block_size)
        return out.astype(dtype_from_name(self.dtype)).reshape(self.shape)

    def decode(self, as_kind: str | None = None, device: str | None = None) -> Any:
        """Decoded tensor, as ``as_kind`` (default: the kind it came from); a torch tensor bound
        for a CUDA device is expanded and dequantized there from the uploaded codes."""
        base.check_as_kind(as_kind)
        gpu = base.gpu_decode_target(self.kind, self.device, as_kind, device)
        if gpu is not None:
            from tensorpress.gpu import decode_blockwise

            return decode_blockwise(
                self.codes,
                self.side,
                layout=self.layout,
                scheme=self.scheme,
                bits=self.bits,
                block_size=self.block_size,
                shape=tuple(self.shape),
                dtype_name=self.dtype,
                tmax=self.tmax,
                device=gpu,
            )
        return base.deliver(self.dequantize_numpy(), self.kind, self.device, as_kind, device)


def quantize_blockwise(
    tensor: Any,
    bits: int = 4,
    block_size: int = 128,
    *,
    scheme: str = "rtn-block",
    layout: str = "auto",
    lanes: int = entropy.DEFAULT_LANES,
    chunk_size: int = entropy.DEFAULT_CHUNK_SIZE,
) -> BlockwiseTensor:
    """Quantize a float tensor (numpy or torch) to a :class:`BlockwiseTensor`.

    ``scheme="rtn-block"``: ``block_size`` values per fp16 scale along the last dimension;
    ``scheme="tender-group"``: ``block_size`` is the number of groups. ``layout="auto"`` stores the
    codes bit-packed or entropy-coded, whichever is smaller; or name one (``"packed"``, a codec).
    ``lanes`` and ``chunk_size`` shape the code stream (see :func:`tensorpress.entropy.encode`).
    """
    if not 2 <= bits <= 8:
        raise InvalidArgumentError(f"bits must be in [2, 8], got {bits}")
    if not 1 <= block_size <= MAX_BLOCK_SIZE:
        raise InvalidArgumentError(f"block_size must be in [1, 2^31], got {block_size}")
    if layout != "auto" and layout != "packed" and layout not in entropy.CODECS:
        raise InvalidArgumentError(f"unknown layout {layout!r}")
    arr, kind, device = to_numpy(tensor)
    name = dtype_name(arr.dtype)
    if name not in FLOAT_DTYPES:
        raise InvalidArgumentError(f"blockwise quantization needs a float tensor, got {name}")
    m = as_matrix(np.ascontiguousarray(arr)).astype(np.float32)
    qmax = (1 << (bits - 1)) - 1
    tmax = 0.0
    if scheme == "rtn-block":
        codes, scales = rtn_blockwise(m, bits, block_size)
        side = scales.astype("<f2").tobytes()
    elif scheme == "tender-group":
        if block_size > MAX_GROUPS:
            raise InvalidArgumentError(f"tender-group takes at most {MAX_GROUPS} groups")
        codes, group, tmax = tender_group(m, bits, block_size)
        if not math.isfinite(tmax):
            raise InvalidArgumentError("tender-group needs finite values (the tensor holds inf or nan)")
        side = group.tobytes()
    else:
        raise InvalidArgumentError(f"unknown scheme {scheme!r}")
    u = (codes + qmax).astype(np.uint8).reshape(-1)
    if layout == "auto":
        sizes = code_layouts(u, bits)
        layout = min(sizes, key=sizes.__getitem__)
    blob = (
        pack_bits(u, bits)
        if layout == "packed"
        else entropy.encode(u, layout, lanes=lanes, chunk_size=chunk_size)
    )
    return BlockwiseTensor(
        name, tuple(arr.shape), scheme, bits, block_size, layout, blob, side, tmax, kind, device
    )


__all__ = [
    "METHOD",
    "SCHEMES",
    "BlockwiseTensor",
    "as_matrix",
    "code_layouts",
    "fp16_scales",
    "pack_bits",
    "quantize_blockwise",
    "rtn_blockwise",
    "rtn_dequantize",
    "side_length",
    "tender_dequantize",
    "tender_group",
    "unpack_bits",
]
