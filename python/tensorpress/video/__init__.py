"""Video codecs as tensor codecs (LLM.265 — Xu et al., arXiv 2407.00467).

A tensor is folded to a 2-D matrix (last dim = row width), optionally rotated by a seeded random
Hadamard transform, quantized per row to 8/10/12-bit codes (asymmetric min–max, fp16 scale and
offset), tiled into luma-only frames of at most 2048×2048 and coded intra-only with HEVC (x265),
H.264 (x264) or AV1 (SVT-AV1) — on the CPU through PyAV, or NVENC/NVDEC through PyNvVideoCodec.

>>> import numpy as np, tensorpress.video as tv
>>> w = np.random.default_rng(0).standard_normal((384, 1536)).astype(np.float32)
>>> vt = tv.encode(w, bits_per_value=3.0)            # bisects the QP
>>> w2 = tv.decode(vt)                                # float32, shape (384, 1536)
>>> blob = vt.to_bytes(); tv.VideoTensor.from_bytes(blob).bits_per_value == vt.bits_per_value
True

``bits_per_value`` counts every payload bit (bitstream, per-row scales and offsets, per-column
scales when used, frame sizes) over the number of elements; the JSON header (shape, dtype, codec
parameters, ~300 bytes) is not counted.

Whole models: :func:`encode_many` codes a set of tensors under one *average* bits/value budget,
either rate–distortion optimally (equal slope: one Lagrange multiplier, each tensor at the QP that
minimizes its weighted distortion + λ·bits), with one global QP, or each tensor to the same budget.
Its ``importance`` weights (e.g. the input-activation second moment E[x_j²] of a linear layer,
from :func:`linear_statistics` on calibration data) make the distortion the one the model sees;
``col_scale`` (e.g. :func:`column_scales`, AWQ-style ``E[x_j²]^α``) multiplies input columns
before coding and divides after decoding, so the codec's error lands where activations are small.
"""

from __future__ import annotations

import json
import math
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from tensorpress import _core
from tensorpress.errors import (
    ChecksumError,
    CorruptDataError,
    FormatError,
    InvalidArgumentError,
    TensorpressError,
)
from tensorpress.methods import base
from tensorpress.methods.arrays import dtype_from_name
from tensorpress.video import pipeline
from tensorpress.video.allocate import (
    ALLOCATIONS,
    LinearStats,
    RatePoint,
    allocate_rd,
    calibrated_options,
    column_scales,
    encode_many,
    linear_statistics,
)
from tensorpress.video.backends import (
    CODECS,
    MIN_SIDE,
    QP_RANGE,
    Capability,
    EncodeOptions,
    backends_available,
    capabilities,
    get_backend,
)

FORMAT_NAME = "tensorpress.video"
#: Version of the header's fields and payload layout (the ``version`` header field).
FORMAT_VERSION = 1
#: Magic of :meth:`VideoTensor.to_bytes` (non-ASCII first byte, like PNG, to catch text mangling).
MAGIC = b"\x89TPV\r\n\x1a\n"
#: Major version of the :meth:`VideoTensor.to_bytes` framing: 2 checks CRC32C; 1 (read only)
#: checked zlib's CRC32.
BYTES_VERSION = 2
_PREAMBLE = struct.Struct("<8sHHIIQI")  # magic, major, minor, flags, header_len, payload_len, crc
_MAX_HEADER = 1 << 20
#: Largest QP any codec takes, seed bound, frame side bound (see docs/format.md §2.4).
_MAX_QP = 63
_MAX_SEED = (1 << 63) - 1
_MAX_FRAME_SIDE = 4096
#: QP used when neither ``qp`` nor ``bits_per_value`` is given (≈ 4–5 bits/value on weights with x265).
DEFAULT_QP = {"hevc": 22, "h264": 22, "av1": 24}
#: ``bits_per_value`` may overshoot the target by at most this fraction.
TARGET_TOLERANCE = 0.03

_FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")


# --------------------------------------------------------------------------- tensor adapters


@dataclass(frozen=True)
class _Source:
    kind: str  # "numpy" | "torch"
    dtype: str
    shape: tuple[int, ...]
    device: str


def _to_numpy(tensor: Any) -> tuple[np.ndarray, _Source]:
    mod = type(tensor).__module__
    if mod.startswith("torch"):
        import torch

        if not torch.is_floating_point(tensor):
            raise InvalidArgumentError(f"video codecs take floating-point tensors, got {tensor.dtype}")
        dtype = str(tensor.dtype).removeprefix("torch.")
        arr = tensor.detach().to("cpu", torch.float32).numpy()
        return arr, _Source("torch", dtype, tuple(tensor.shape), str(tensor.device))
    arr = np.asarray(tensor)
    name = arr.dtype.name
    if name not in _FLOAT_DTYPES:
        raise InvalidArgumentError(f"video codecs take floating-point tensors, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False), _Source("numpy", name, tuple(arr.shape), "cpu")


def _from_numpy(arr: np.ndarray, src: _Source, as_kind: str | None, device: str | None) -> Any:
    """The decoded float32 matrix as the source's dtype, then as the requested kind and device."""
    out = arr.astype(dtype_from_name(src.dtype), copy=False)
    recorded = None if src.kind == "numpy" else src.device
    return base.deliver(out, src.kind, recorded, as_kind, device)


# --------------------------------------------------------------------------- the coded object


@dataclass
class VideoTensor:
    """A tensor coded with a video codec. Build with :func:`encode`, read back with :func:`decode`.

    ``header()`` (JSON-able parameters) and ``payload()`` (bytes) are what the ``.tpz`` container
    stores; :meth:`from_parts` rebuilds the object from them. :meth:`to_bytes` is a standalone,
    self-describing, checksummed form of the same.
    """

    _header: dict[str, Any]
    _payload: bytes = field(repr=False)
    method: ClassVar[str] = "video"

    # -- properties
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._header["shape"])

    @property
    def dtype(self) -> str:
        """Original dtype name (``float32``, ``float16``, ``bfloat16``, ``float64``)."""
        return str(self._header["dtype"])

    @property
    def codec(self) -> str:
        return str(self._header["codec"])

    @property
    def qp(self) -> int | None:
        """QP the bitstream was coded at (``None`` when lossless)."""
        qp = self._header["qp"]
        return None if qp is None else int(qp)

    @property
    def bit_depth(self) -> int:
        return int(self._header["bit_depth"])

    @property
    def lossless(self) -> bool:
        return bool(self._header["lossless"])

    @property
    def col_scale(self) -> np.ndarray | None:
        """Per-column multipliers applied before coding (float16, length = width of the folded
        matrix), or ``None``."""
        if not self._header.get("col_scale", False):
            return None
        return self._split_payload()[3]

    @property
    def numel(self) -> int:
        return int(math.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """Payload bytes: bitstream + per-row scales and offsets + frame-size table."""
        return len(self._payload)

    @property
    def bits_per_value(self) -> float:
        """All payload bits over the element count."""
        return self.nbytes * 8 / max(self.numel, 1)

    @property
    def raw_nbytes(self) -> int:
        """Bytes of the original tensor."""
        return self.numel * dtype_from_name(self.dtype).itemsize

    @property
    def decoded_nbytes(self) -> int:
        """Bytes the decoder holds at its peak: frames (1-2 bytes per sample), the float32 matrix
        and the output."""
        lay = self._header["layout"]
        samples = lay["tiles_r"] * lay["tiles_c"] * lay["frame_h"] * lay["frame_w"]
        return 2 * samples + 4 * lay["rows"] * lay["cols"] + self.raw_nbytes

    def __repr__(self) -> str:
        return (
            f"VideoTensor(shape={self.shape}, dtype={self.dtype}, method=video, codec={self.codec}, "
            f"qp={self.qp}, bit_depth={self.bit_depth}, nbytes={self.nbytes}, "
            f"bits_per_value={self.bits_per_value:.3f})"
        )

    def decode(self, as_kind: str | None = None, device: str | None = None, backend: str = "auto") -> Any:
        """The tensor (see :func:`decode`), as ``as_kind`` (default: the kind it came from)."""
        return decode(self, backend=backend, device=device, as_kind=as_kind)

    def with_gains(self, row_gain: Any = None, col_gain: Any = None) -> VideoTensor:
        """The same bitstream decoding to ``diag(row_gain) · W · diag(col_gain)``: the gains are
        folded into the stored per-row scales and offsets and the per-column scales, so the
        bitstream and the size do not change (what :func:`tensorpress.video.tune.tune_coded`
        learns costs no bits). Column gains need a tensor coded with ``col_scale``.

        Rows and columns are those of the folded matrix (``shape[0]·…·shape[-2]`` × ``shape[-1]``).
        Gains must be finite and positive; InvalidArgumentError when a gain is not, or when a
        rescaled table leaves its stored dtype's range.
        """
        h = self._header
        rows, cols = pipeline.fold_2d(self.shape)
        n_frames = pipeline.TileLayout(**h["layout"]).n_frames
        scale, offset, packets, col_scale = self._split_payload()
        if row_gain is not None:
            g = _check_gain(row_gain, rows, "row_gain").astype(np.float64)
            scale = _rescaled(scale, g, "row scale")
            offset = _rescaled(offset, g, "row offset")
        if col_gain is not None:
            if col_scale is None:
                raise InvalidArgumentError("col_gain needs a tensor coded with col_scale (none is stored)")
            c = _check_gain(col_gain, cols, "col_gain").astype(np.float64)
            # a column scale must stay a positive normal float16, as encode() requires
            col_scale = _rescaled(col_scale, 1.0 / c, "column scale", floor=float(np.finfo(np.float16).tiny))
        sizes = self._payload[: 4 * n_frames]
        tables = scale.tobytes() + offset.tobytes() + (b"" if col_scale is None else col_scale.tobytes())
        return VideoTensor(self.header(), sizes + tables + b"".join(packets))

    # -- serialization
    def header(self) -> dict[str, Any]:
        """JSON-able parameters (a copy)."""
        return json.loads(json.dumps(self._header))

    def payload(self) -> bytes:
        return self._payload

    @classmethod
    def from_parts(cls, header: dict[str, Any], payload: bytes | memoryview) -> VideoTensor:
        """Rebuild from :meth:`header` and :meth:`payload`, validating every field."""
        base.need_dict(header, "video")
        payload = bytes(payload)
        _validate_header(header, payload)
        return cls(json.loads(json.dumps(header)), payload)

    def to_bytes(self) -> bytes:
        """Standalone form (docs/format.md §4): preamble (magic, version 2.0, flags, lengths, CRC32C
        of the preamble's other fields, the header and the payload), JSON header, payload."""
        head = json.dumps(self._header, separators=(",", ":"), sort_keys=True).encode()
        pre = _PREAMBLE.pack(MAGIC, BYTES_VERSION, 0, 0, len(head), len(self._payload), 0)[:28]
        crc = _core.crc32c(pre + head + self._payload)
        return pre + struct.pack("<I", crc) + head + self._payload

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> VideoTensor:
        """Parse :meth:`to_bytes` output. Raises :class:`FormatError` for anything that is not a
        well-formed stream of this version and :class:`CorruptDataError` for damaged contents."""
        data = bytes(data)
        if len(data) < _PREAMBLE.size:
            raise FormatError(
                f"video tensor stream truncated: {len(data)} bytes, preamble needs {_PREAMBLE.size}"
            )
        magic, major, _minor, flags, hlen, plen, crc = _PREAMBLE.unpack_from(data)
        if magic != MAGIC:
            raise FormatError("not a tensorpress video tensor (bad magic)")
        if major not in (1, BYTES_VERSION):
            raise FormatError(f"video tensor format version {major} is not supported (this reads 1 and 2)")
        if flags:
            raise FormatError(f"reserved flag bits set: {flags:#x}")
        if hlen > _MAX_HEADER:
            raise FormatError(f"header length {hlen} exceeds the {_MAX_HEADER}-byte limit")
        if len(data) != _PREAMBLE.size + hlen + plen:
            raise FormatError(
                f"video tensor stream is {len(data)} bytes, its preamble says {_PREAMBLE.size + hlen + plen}"
            )
        head = data[_PREAMBLE.size : _PREAMBLE.size + hlen]
        payload = data[_PREAMBLE.size + hlen :]
        if major == 2:  # CRC32C of the preamble's first 28 bytes, the header and the payload
            actual = _core.crc32c(data[:28] + data[_PREAMBLE.size :])
        else:
            actual = zlib.crc32(payload, zlib.crc32(head))
        if actual != crc:
            raise ChecksumError("video tensor checksum mismatch: the bytes are damaged")
        return cls.from_parts(base.parse_json(head, "video tensor header"), payload)

    # -- payload pieces
    def _split_payload(self) -> tuple[np.ndarray, np.ndarray, list[bytes], np.ndarray | None]:
        h = self._header
        rows = h["layout"]["rows"]
        n = pipeline.TileLayout(**h["layout"]).n_frames
        sdt = np.dtype(h["scale_dtype"])
        sizes = np.frombuffer(self._payload, dtype="<u4", count=n)
        pos = 4 * n
        scale = np.frombuffer(self._payload, dtype=sdt, count=rows, offset=pos)
        pos += rows * sdt.itemsize
        offset = np.frombuffer(self._payload, dtype=sdt, count=rows, offset=pos)
        pos += rows * sdt.itemsize
        col_scale = None
        if h.get("col_scale", False):
            cols = pipeline.fold_2d(tuple(h["shape"]))[1]
            col_scale = np.frombuffer(self._payload, dtype="<f2", count=cols, offset=pos)
            pos += 2 * cols
        packets = []
        for s in sizes.tolist():
            packets.append(self._payload[pos : pos + s])
            pos += s
        return scale, offset, packets, col_scale


def _validate_header(h: dict[str, Any], payload: bytes) -> None:
    def need(cond: bool, what: str) -> None:
        if not cond:
            raise FormatError(f"invalid video tensor header: {what}")

    is_int = base.is_int
    need(h.get("format") == FORMAT_NAME, "format is not tensorpress.video")
    need(
        is_int(h.get("version")) and h.get("version") == FORMAT_VERSION,
        f"version {base.show(h.get('version'))}",
    )
    shape = base.need_shape(h, "video")
    need(h.get("dtype") in _FLOAT_DTYPES, "dtype")
    base.need_kind(h, "video")
    need(isinstance(h.get("device"), str), "device")
    base.need_device(h, "video")
    need(h.get("codec") in CODECS, "codec")
    need(is_int(h.get("bit_depth")) and h.get("bit_depth") in (8, 10, 12), "bit_depth")
    need(isinstance(h.get("lossless"), bool) and isinstance(h.get("rotate"), bool), "lossless/rotate")
    need(isinstance(h.get("col_scale", False), bool), "col_scale")
    need(h.get("qp") is None or (is_int(h["qp"]) and 0 <= h["qp"] <= _MAX_QP), "qp")
    need(h["lossless"] == (h.get("qp") is None), "lossless and qp disagree")
    need(is_int(h.get("seed")) and 0 <= h["seed"] <= _MAX_SEED, "seed")
    need(h.get("scale_dtype") in ("float16", "float32"), "scale_dtype")
    need(h.get("encoder") is None or isinstance(h.get("encoder"), str), "encoder")
    need(h.get("chroma", "400") in ("400", "420"), "chroma")
    lay: Any = h.get("layout")
    keys = ("rows", "cols", "frame_h", "frame_w", "tiles_r", "tiles_c", "wrap")
    need(isinstance(lay, dict) and set(lay) == set(keys), "layout keys")
    need(
        all(is_int(lay[k]) and 0 <= lay[k] <= base.MAX_NUMEL for k in keys[:6])
        and isinstance(lay["wrap"], bool),
        "layout values",
    )
    need(0 < lay["frame_h"] <= _MAX_FRAME_SIDE and 0 < lay["frame_w"] <= _MAX_FRAME_SIDE, "frame size")
    need(lay["frame_h"] % 2 == 0 and lay["frame_w"] % 2 == 0, "odd frame size")
    rows, cols = pipeline.fold_2d(tuple(shape))
    need(lay["rows"] == rows, "layout rows do not match the shape")
    width = pipeline.hadamard_plan(cols)[1] if h["rotate"] else cols
    need(lay["cols"] == width, "layout cols do not match the shape")
    n_frames = lay["tiles_r"] * lay["tiles_c"]
    # Every frame has at least its 4-byte size entry in the payload: bounds the frame count
    # (and so the decoder's frame buffers) by the payload length before anything is allocated.
    need(4 * n_frames <= len(payload), "more frames than the payload can describe")
    if lay["wrap"]:
        need(rows == 1 and lay["tiles_c"] == 1, "wrap layout")
        need(lay["tiles_r"] * lay["frame_h"] * lay["frame_w"] >= width, "frames do not cover the row")
        need((lay["tiles_r"] - 1) * lay["frame_h"] * lay["frame_w"] < max(width, 1), "superfluous tiles")
    else:
        need(
            lay["tiles_r"] * lay["frame_h"] >= rows and lay["tiles_c"] * lay["frame_w"] >= width,
            "frames cover",
        )
        # No tile row or column beyond the one that covers the matrix: frames bound the output.
        need(
            (lay["tiles_r"] - 1) * lay["frame_h"] < max(rows, 1)
            and (lay["tiles_c"] - 1) * lay["frame_w"] < max(width, 1),
            "superfluous tiles",
        )
    itemsize = 2 if h["scale_dtype"] == "float16" else 4
    fixed = 4 * n_frames + 2 * rows * itemsize + (2 * cols if h.get("col_scale", False) else 0)
    if len(payload) < fixed:
        raise CorruptDataError(f"video payload truncated: {len(payload)} bytes, tables alone need {fixed}")
    coded = int(np.frombuffer(payload, dtype="<u4", count=n_frames).sum(dtype=np.uint64))
    if fixed + coded != len(payload):
        raise CorruptDataError(
            f"video payload is {len(payload)} bytes, its frame-size table says {fixed + coded}"
        )
    if h.get("col_scale", False):
        cs = np.frombuffer(payload, dtype="<f2", count=cols, offset=fixed - 2 * cols).astype(np.float32)
        if not np.all(np.isfinite(cs) & (cs > 0)):
            raise CorruptDataError("video payload holds a non-positive or non-finite column scale")


# --------------------------------------------------------------------------- encode / decode


def _check_args(
    codec: str, bit_depth: int, qp: int | None, bits_per_value: float | None, lossless: bool
) -> None:
    if codec not in CODECS:
        raise InvalidArgumentError(f"codec must be one of {CODECS}, got {codec!r}")
    if bit_depth not in (8, 10, 12):
        raise InvalidArgumentError(f"bit_depth must be 8, 10 or 12, got {bit_depth!r}")
    given = sum(x is not None for x in (qp, bits_per_value)) + bool(lossless)
    if given > 1:
        raise InvalidArgumentError("give at most one of qp=, bits_per_value= and lossless=True")
    lo, hi = QP_RANGE[codec]
    if qp is not None and not (lo <= qp <= hi):
        raise InvalidArgumentError(f"qp for {codec} must be in [{lo}, {hi}], got {qp}")
    if bits_per_value is not None and not (bits_per_value > 0 and math.isfinite(bits_per_value)):
        raise InvalidArgumentError(f"bits_per_value must be a positive number, got {bits_per_value!r}")


def encode(
    tensor: Any,
    bits_per_value: float | None = None,
    qp: int | None = None,
    codec: str = "hevc",
    backend: str = "auto",
    bit_depth: int = 8,
    rotate: bool = False,
    lossless: bool = False,
    seed: int = 0,
    *,
    preset: str | None = None,
    threads: int | None = None,
    tolerance: float = TARGET_TOLERANCE,
    col_scale: Any = None,
    chroma: str = "400",
) -> VideoTensor:
    """Code a float tensor (numpy or torch; fp32/fp16/bf16/fp64; any shape) with a video codec.

    Args:
        bits_per_value: target payload bits per element; the QP is bisected to the smallest QP
            (best quality) whose result is at most ``bits_per_value × (1 + tolerance)``. Raises
            :class:`InvalidArgumentError` if even the coarsest QP overshoots.
        qp: constant quantization parameter (lower = better). Default :data:`DEFAULT_QP`.
        codec: ``"hevc"`` (x265 / NVENC), ``"h264"`` (x264) or ``"av1"`` (SVT-AV1).
        backend: ``"auto"`` (NVENC when this GPU has one, else PyAV), ``"pyav"`` or ``"nvcodec"``.
        bit_depth: code depth, 8/10/12 (x265: all; x264 and SVT-AV1: 8/10).
        rotate: apply the seeded random-Hadamard incoherence rotation along rows first.
        lossless: bit-exact coding of the quantized codes (error = quantization error only).
        seed: seed of the rotation's ±1 diagonal.
        preset: encoder speed preset (x265/x264 names, SVT-AV1 numbers, NVENC ``p1``–``p7``).
        threads: encoder threads (default: the encoder's own choice).
        tolerance: allowed overshoot of ``bits_per_value`` (fraction, default 0.03; 0 = never above).
        col_scale: optional positive per-column multipliers ``s`` (length = last dim): the matrix
            ``W·diag(s)`` is coded and decoding divides by ``s`` again, so column ``j``'s coding
            error shrinks by ``s_j`` (AWQ-style; see :func:`column_scales`). Stored as float16
            (2 bytes per column, counted in ``bits_per_value``); the rounded values are used both
            ways, so scaling adds no error of its own beyond float32 rounding.
        chroma: ``"400"`` (luma only, smallest; FFmpeg decodes it, NVDEC cannot) or ``"420"``
            (constant neutral 4:2:0 chroma, which NVDEC decodes; HEVC/H.264 only, AV1 and NVENC
            streams are always 4:2:0). Recorded in the header so that decoding picks a backend
            that can read the stream.
    """
    _check_args(codec, bit_depth, qp, bits_per_value, lossless)
    if chroma not in ("400", "420"):
        raise InvalidArgumentError(f"chroma must be '400' or '420', got {chroma!r}")
    if not 0 <= tolerance < 1:
        raise InvalidArgumentError(f"tolerance must be in [0, 1), got {tolerance!r}")
    arr, src = _to_numpy(tensor)
    if not np.all(np.isfinite(arr)):
        raise InvalidArgumentError("tensor holds NaN or infinity: video coding needs finite values")
    rows, cols = pipeline.fold_2d(src.shape)
    mat = arr.reshape(rows, cols)
    cs = None if col_scale is None else _check_col_scale(col_scale, cols)
    if cs is not None:
        mat = mat * cs.astype(np.float32)
    if rotate:
        mat = pipeline.rotate(mat, seed)
    quant = pipeline.quantize_rows(mat, bit_depth)
    eng = get_backend(backend, "encode", codec)
    layout = pipeline.plan_tiles(rows, mat.shape[1], min_side=MIN_SIDE[codec])
    frames = pipeline.to_frames(quant.q, layout) if rows * mat.shape[1] else []
    tables = quant.scale.tobytes() + quant.offset.tobytes() + (b"" if cs is None else cs.tobytes())

    def build(qp_: int | None) -> VideoTensor:
        opts = EncodeOptions(
            codec, bit_depth, qp_ if qp_ is not None else 0, qp_ is None, preset, threads, chroma
        )
        packets = eng.encode(frames, opts) if frames else []
        if len(packets) != layout.n_frames:
            packets = [b"".join(packets)] + [b""] * (layout.n_frames - 1)
        sizes = np.asarray([len(p) for p in packets], dtype="<u4").tobytes()
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "shape": list(src.shape),
            "dtype": src.dtype,
            "kind": src.kind,
            "device": src.device,
            "codec": codec,
            "bit_depth": bit_depth,
            "qp": qp_,
            "lossless": qp_ is None,
            "rotate": rotate,
            "col_scale": cs is not None,
            "seed": int(seed),
            "scale_dtype": quant.scale.dtype.name,
            "layout": layout.to_dict(),
            "encoder": eng.name,
        }
        if chroma == "420" and codec != "av1" and eng.name == "pyav":
            header["chroma"] = "420"  # absent: 4:0:0, unless AV1 or NVENC made it (always 4:2:0)
        return VideoTensor(header, sizes + tables + b"".join(packets))

    if lossless:
        return build(None)
    if bits_per_value is None:
        return build(DEFAULT_QP[codec] if qp is None else qp)
    return _bisect(build, codec, bits_per_value, tolerance)


def _check_col_scale(col_scale: Any, cols: int) -> np.ndarray:
    """Validate per-column scales and round them to the stored little-endian float16."""
    s = _check_gain(col_scale, cols, "col_scale")
    tiny, big = float(np.finfo(np.float16).tiny), float(np.finfo(np.float16).max)
    if s.size and (s.min() < tiny or s.max() > big):
        raise InvalidArgumentError(
            f"col_scale must lie in the normal float16 range [{tiny:.3g}, {big:.3g}] (it is stored as "
            "float16): normalize it, e.g. with column_scales()"
        )
    return s.astype("<f2")


def _check_gain(gain: Any, n: int, what: str) -> np.ndarray:
    """``gain`` (array or tensor) as float64 of shape ``(n,)``, finite and positive."""
    raw = gain.detach().cpu().numpy() if hasattr(gain, "detach") else gain
    g = np.asarray(raw, dtype=np.float64)
    if g.shape != (n,):
        raise InvalidArgumentError(f"{what} must have shape ({n},), got {g.shape}")
    if not np.all(np.isfinite(g) & (g > 0)):
        raise InvalidArgumentError(f"{what} must hold finite positive numbers")
    return g


def _rescaled(table: np.ndarray, gain: np.ndarray, what: str, floor: float = -np.inf) -> np.ndarray:
    """``table · gain`` in the table's stored dtype, refused where that dtype cannot hold it or a
    value falls below ``floor``."""
    with np.errstate(over="ignore"):
        out = (table.astype(np.float64) * gain).astype(table.dtype)
    if not np.all(np.isfinite(out) & (out >= floor)):
        raise InvalidArgumentError(f"a gain takes a {what} out of the range of {table.dtype}")
    return out


def _bisect(build: Any, codec: str, target: float, tolerance: float) -> VideoTensor:
    """Smallest QP whose bits/value ≤ target·(1 + tolerance).

    Rate falls roughly exponentially with QP, so each probe interpolates log(bits/value) between
    the bracket ends (regula falsi on integers, falling back to the midpoint): typically 3–5
    encodes instead of 6–7 for plain bisection. The bracket shrinks every step, so it terminates
    even where the rate is not strictly monotone.
    """
    limit = target * (1 + tolerance)
    lo, hi = QP_RANGE[codec]
    cache: dict[int, VideoTensor] = {}

    def at(q: int) -> float:
        if q not in cache:
            cache[q] = build(q)
        return cache[q].bits_per_value

    if at(hi) > limit:
        raise InvalidArgumentError(
            f"bits_per_value={target} is out of reach for {codec}: even the coarsest QP ({hi}) gives "
            f"{at(hi):.3f} bits/value (limit {limit:.3f}); use a higher target "
            "(per-row scales and offsets alone cost 32/width bits/value)"
        )
    good, bad = hi, lo - 1  # at(good) <= limit; at(bad) > limit (bad = lo - 1 stands for "none yet")
    guess = min(max(DEFAULT_QP[codec] + 8, lo), hi - 1)
    while good - bad > 1:
        if guess <= bad or guess >= good:
            guess = (good + bad) // 2
        if at(guess) <= limit:
            good = guess
        else:
            bad = guess
        if bad >= lo:  # interpolate log-rate between the bracket ends
            y0, y1 = math.log(at(bad)), math.log(at(good))
            frac = (y0 - math.log(limit)) / (y0 - y1) if y0 > y1 else 0.5
            guess = bad + max(1, round(frac * (good - bad)))
        else:
            guess = (good + bad) // 2
    return cache[good]


def _chroma_of(header: dict[str, Any]) -> str:
    """The chroma format of a stored bitstream: AV1 and NVENC streams are always 4:2:0, PyAV's
    HEVC/H.264 streams 4:0:0 unless the header says ``"chroma": "420"``."""
    if header["codec"] == "av1" or header.get("encoder") == "nvcodec":
        return "420"
    return str(header.get("chroma", "400"))


def decode(
    obj: VideoTensor | bytes | bytearray | memoryview,
    backend: str = "auto",
    device: str | None = None,
    *,
    as_kind: str | None = None,
) -> Any:
    """Rebuild the tensor: numpy in → numpy out, torch in → torch out (or ``as_kind``); a torch
    tensor goes to ``device``, else its recorded device when this machine has it, else the CPU
    (with a warning); original dtype and shape. ``obj`` may also be :meth:`VideoTensor.to_bytes`
    output. ``backend="auto"`` decodes 4:2:0 streams (see :func:`encode`'s ``chroma``) with NVDEC
    when this GPU can, falling back to PyAV with a warning if NVDEC fails, and 4:0:0 streams
    with PyAV."""
    base.check_as_kind(as_kind)
    vt = obj if isinstance(obj, VideoTensor) else VideoTensor.from_bytes(obj)
    h = vt._header
    layout = pipeline.TileLayout(**h["layout"])
    src = _Source(h["kind"], h["dtype"], tuple(h["shape"]), h["device"])
    rows, cols = pipeline.fold_2d(src.shape)
    scale, offset, packets, col_scale = vt._split_payload()
    extra = 0 if col_scale is None else col_scale.nbytes
    if sum(len(p) for p in packets) + 4 * len(packets) + scale.nbytes + offset.nbytes + extra != vt.nbytes:
        raise CorruptDataError("video payload length does not match its frame-size table")
    if rows * layout.cols == 0:
        mat = np.zeros((rows, cols), dtype=np.float32)
    else:
        args = (packets, vt.codec, vt.bit_depth, layout.frame_h, layout.frame_w)
        if backend == "auto" and _chroma_of(h) == "400":
            backend = "pyav"  # NVDEC has no 4:0:0 profile: do not try it and fall back
        eng = get_backend(backend, "decode", vt.codec)
        try:
            frames = eng.decode(*args)
            if len(frames) != layout.n_frames:
                raise CorruptDataError(f"expected {layout.n_frames} frames, decoded {len(frames)}")
        except TensorpressError as exc:
            if backend != "auto" or eng.name == "pyav":
                raise
            warnings.warn(f"NVDEC could not decode this tensor ({exc}); decoding with PyAV", stacklevel=2)
            frames = get_backend("pyav", "decode", vt.codec).decode(*args)
        q = pipeline.from_frames(frames, layout)
        mat = pipeline.dequantize_rows(q, scale, offset)
        if h["rotate"]:
            mat = pipeline.unrotate(mat, h["seed"], cols)
        if col_scale is not None:
            mat = np.divide(mat, col_scale.astype(np.float32), dtype=np.float32)
    return _from_numpy(mat.reshape(src.shape), src, as_kind, device)


__all__ = [
    "ALLOCATIONS",
    "CODECS",
    "DEFAULT_QP",
    "MAGIC",
    "Capability",
    "LinearStats",
    "RatePoint",
    "VideoTensor",
    "allocate_rd",
    "backends_available",
    "calibrated_options",
    "capabilities",
    "column_scales",
    "decode",
    "encode",
    "encode_many",
    "linear_statistics",
]
