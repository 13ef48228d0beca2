"""Video codec backends: PyAV (bundled FFmpeg — libx265, libx264, libsvtav1, dav1d; CPU, always
available with the ``video`` extra) and PyNvVideoCodec (NVENC encode / NVDEC decode, ``gpu`` extra).

A backend turns equal-size luma frames (uint16 arrays holding ``bit_depth``-bit codes) into one
intra-only bitstream (one packet per frame) and back. Both libraries are imported lazily: importing
this module never fails, using a missing backend raises :class:`BackendUnavailableError`.
"""

from __future__ import annotations

import ctypes
import fractions
import functools
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from tensorpress.errors import (
    BackendUnavailableError,
    CorruptDataError,
    InvalidArgumentError,
    TensorpressError,
)

CODECS = ("hevc", "h264", "av1")

#: Highest QP each codec accepts (x265/x264 8-bit scale; SVT-AV1 0–63).
QP_RANGE: dict[str, tuple[int, int]] = {"hevc": (0, 51), "h264": (0, 51), "av1": (1, 63)}

#: Bit depths each PyAV encoder takes in a luma-only (or constant-chroma) format.
PYAV_BIT_DEPTHS: dict[str, tuple[int, ...]] = {"hevc": (8, 10, 12), "h264": (8, 10), "av1": (8, 10)}

#: Smallest frame side we give each encoder. x265 refuses < 16. SVT-AV1 (PyAV's bundled
#: libsvtav1) opens frames down to 4 pixels but *deadlocks* in ``svt_av1_enc_get_packet`` when one
#: side is ≤ 24 and the other > 64 (e.g. 262×10, 10×262): 32 keeps every frame clear of that.
#: The frame size travels in the header, so decoding never depends on these values.
MIN_SIDE: dict[str, int] = {"hevc": 16, "h264": 2, "av1": 32}


@dataclass(frozen=True)
class EncodeOptions:
    """What the encoder is asked for. ``qp`` is ignored when ``lossless``."""

    codec: str
    bit_depth: int
    qp: int
    lossless: bool = False
    preset: str | None = None
    threads: int | None = None
    #: ``"400"``: luma only where the encoder allows it (smallest); ``"420"``: neutral 4:2:0
    #: chroma, the format NVDEC decodes (AV1 is always 4:2:0: SVT-AV1 has no 4:0:0 input).
    chroma: str = "400"


class Backend(Protocol):
    """An encoder and/or decoder of luma frames."""

    name: str

    def encode(self, frames: list[np.ndarray], opts: EncodeOptions) -> list[bytes]: ...

    def decode(
        self, packets: list[bytes], codec: str, bit_depth: int, height: int, width: int
    ) -> list[np.ndarray]: ...


# --------------------------------------------------------------------------- helpers


def _strip_h264_sei(data: bytes) -> bytes:
    """Drop SEI NAL units (type 6) from an Annex-B H.264 access unit: x264 writes ~600 bytes of
    its settings there, which no decoder needs and which dominate small tensors."""
    out = bytearray()
    i, n = 0, len(data)
    starts = []
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append(j)
        i = j + 3
    if not starts:
        return data
    for k, s in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else n
        # a 4-byte start code leaves its leading zero on the previous unit: harmless (trailing zero)
        nal_type = data[s + 3] & 0x1F if s + 3 < n else 0
        if nal_type != 6:
            out += data[s:end]
    return bytes(out)


def _check_depth(codec: str, bit_depth: int, backend: str) -> None:
    if codec not in CODECS:
        raise InvalidArgumentError(f"codec must be one of {CODECS}, got {codec!r}")
    if bit_depth not in PYAV_BIT_DEPTHS[codec]:
        raise InvalidArgumentError(
            f"{backend} cannot code {codec} at bit_depth={bit_depth}; supported: {PYAV_BIT_DEPTHS[codec]}"
        )


# --------------------------------------------------------------------------- PyAV


@functools.lru_cache(maxsize=1)
def _import_av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise BackendUnavailableError("PyAV is not installed", extra="video") from exc
    return av


class PyAVBackend:
    """CPU encode and decode through PyAV's bundled FFmpeg."""

    name = "pyav"
    ENCODERS: ClassVar[dict[str, str]] = {"hevc": "libx265", "h264": "libx264", "av1": "libsvtav1"}
    DECODERS: ClassVar[dict[str, tuple[str, ...]]] = {
        "hevc": ("hevc",),
        "h264": ("h264",),
        "av1": ("libdav1d", "av1"),
    }

    def __init__(self) -> None:
        self.av = _import_av()

    # -- capability
    def can_encode(self, codec: str) -> bool:
        return self._has(self.ENCODERS[codec], "w")

    def can_decode(self, codec: str) -> bool:
        return any(self._has(name, "r") for name in self.DECODERS[codec])

    def _has(self, name: str, mode: str) -> bool:
        try:
            self.av.codec.Codec(name, mode)
        except Exception:
            return False
        return True

    # -- encode
    @staticmethod
    def _pix_fmt(codec: str, bit_depth: int, chroma: str = "400") -> str:
        if chroma not in ("400", "420"):
            raise InvalidArgumentError(f"chroma must be '400' or '420', got {chroma!r}")
        if codec == "av1" or chroma == "420":
            # SVT-AV1 has no 4:0:0 input, NVDEC no 4:0:0 profile: constant neutral chroma
            return {8: "yuv420p", 10: "yuv420p10le", 12: "yuv420p12le"}[bit_depth]
        return {8: "gray", 10: "gray10le", 12: "gray12le"}[bit_depth]

    @staticmethod
    def _options(opts: EncodeOptions) -> dict[str, str]:
        if opts.codec == "hevc":
            # keyint=1: every frame an IDR; tune psnr: no psycho-visual tricks (we want MSE);
            # info=0: no ~1 kB settings SEI.
            params = ["keyint=1", "min-keyint=1", "bframes=0", "info=0", "log-level=error", "range=full"]
            params += ["lossless=1"] if opts.lossless else [f"qp={opts.qp}"]
            if opts.threads:
                params.append(f"pools={opts.threads}")
            out = {"x265-params": ":".join(params), "tune": "psnr"}
        elif opts.codec == "h264":
            out = {"g": "1", "bf": "0", "tune": "psnr", "qp": "0" if opts.lossless else str(opts.qp)}
            out["x264-params"] = "keyint=1:min-keyint=1:scenecut=0"
            if opts.threads:
                out["threads"] = str(opts.threads)
        else:
            params = ["keyint=1"]
            if opts.lossless:
                params.append("lossless=1")
            out = {"svtav1-params": ":".join(params)}
            if not opts.lossless:
                out["qp"] = str(opts.qp)
            if opts.threads:
                out["svtav1-params"] += f":lp={opts.threads}"
        if opts.preset:
            out["preset"] = opts.preset
        return out

    def encode(self, frames: list[np.ndarray], opts: EncodeOptions) -> list[bytes]:
        _check_depth(opts.codec, opts.bit_depth, "PyAV")
        av = self.av
        if not frames:
            return []
        height, width = frames[0].shape
        pix_fmt = self._pix_fmt(opts.codec, opts.bit_depth, opts.chroma)
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner at info level otherwise
        av.logging.set_level(av.logging.ERROR)
        cc = av.CodecContext.create(self.ENCODERS[opts.codec], "w")
        cc.width, cc.height, cc.pix_fmt = width, height, pix_fmt
        cc.time_base = fractions.Fraction(1, 25)
        cc.color_range = 2  # full (JPEG) range: code values are data, not video levels
        cc.options = self._options(opts)
        try:
            cc.open()
        except Exception as exc:
            raise InvalidArgumentError(
                f"{self.ENCODERS[opts.codec]} refused {width}x{height} {pix_fmt}: {exc}"
            ) from exc
        wide = opts.bit_depth > 8
        dtype = np.uint16 if wide else np.uint8
        neutral = 1 << (opts.bit_depth - 1)
        packets: list[Any] = []
        for idx, f in enumerate(frames):
            vf = av.VideoFrame(width, height, pix_fmt)
            plane = vf.planes[0]
            itemsize = 2 if wide else 1
            view = np.frombuffer(plane, dtype=dtype).reshape(height, plane.line_size // itemsize)
            view[:, :width] = f
            for p in vf.planes[1:]:
                np.frombuffer(p, dtype=dtype)[:] = neutral
            vf.pts = idx
            vf.pict_type = av.video.frame.PictureType.I
            packets.extend(cc.encode(vf))
        packets.extend(cc.encode(None))
        if len(packets) != len(frames):
            raise TensorpressError(f"encoder produced {len(packets)} packets for {len(frames)} frames")
        packets.sort(key=lambda p: p.pts if p.pts is not None else 0)
        if not all(p.is_keyframe for p in packets):
            raise TensorpressError("encoder produced a non-key frame in intra-only mode")
        out = [bytes(p) for p in packets]
        if opts.codec == "h264":
            out = [_strip_h264_sei(b) for b in out]
        return out

    # -- decode
    def decode(
        self, packets: list[bytes], codec: str, bit_depth: int, height: int, width: int
    ) -> list[np.ndarray]:
        av = self.av
        av.logging.set_level(av.logging.ERROR)
        name = next((n for n in self.DECODERS[codec] if self._has(n, "r")), None)
        if name is None:
            raise BackendUnavailableError(f"this PyAV build has no {codec} decoder", extra="video")
        cc = av.CodecContext.create(name, "r")
        decoded: list[Any] = []
        try:
            if any(not p for p in packets):
                # one bitstream not cut per frame (NVENC may batch access units): let FFmpeg split it
                units = list(cc.parse(b"".join(packets))) + list(cc.parse(None))
            else:
                units = [av.Packet(p) for p in packets]
            for unit in units:
                decoded.extend(cc.decode(unit))
            decoded.extend(cc.decode(None))
        except av.FFmpegError as exc:
            raise CorruptDataError(f"{codec} bitstream does not decode: {exc}") from exc
        out = []
        wide = bit_depth > 8
        for vf in decoded:
            if vf.width != width or vf.height != height:
                raise CorruptDataError(f"decoded a {vf.width}x{vf.height} frame, expected {width}x{height}")
            depth = vf.format.components[0].bits
            if depth != bit_depth:
                raise CorruptDataError(f"decoded {depth}-bit samples, expected {bit_depth}")
            if not vf.key_frame:
                raise CorruptDataError("stream holds a non-key frame; tensorpress writes intra-only streams")
            plane = vf.planes[0]  # luma read directly: no pixel-format conversion touches the codes
            itemsize = 2 if wide else 1
            arr = np.frombuffer(plane, dtype=np.uint16 if wide else np.uint8)
            arr = arr.reshape(height, plane.line_size // itemsize)[:, :width]
            out.append(arr.astype(np.uint16))
        return out


# --------------------------------------------------------------------------- PyNvVideoCodec


@functools.lru_cache(maxsize=1)
def _import_nvc() -> Any:
    try:
        import PyNvVideoCodec as nvc  # noqa: N813 (the library's own docs use this name)
    except (ImportError, RuntimeError, OSError) as exc:
        # RuntimeError/OSError: the wheel is there but no driver/GPU (it probes CUDA on import)
        raise BackendUnavailableError(f"PyNvVideoCodec is unusable here: {exc}", extra="gpu") from exc
    return nvc


def _nv_error(nvc: Any, exc: Exception, what: str) -> TensorpressError:
    """A typed error for a PyNvVideoCodec failure: an unsupported stream/profile/size means the
    hardware cannot do it (BackendUnavailableError, so callers may use another backend); anything
    else while decoding is treated as bad data."""
    unsupported = getattr(nvc, "PyNvVCExceptionUnsupported", None)
    if isinstance(unsupported, type) and isinstance(exc, unsupported):
        return BackendUnavailableError(f"{what}: unsupported here: {exc}")  # installed, but this GPU cannot
    return CorruptDataError(f"{what}: {exc}")


def _packet_bytes(result: Any) -> bytes:
    """The bitstream bytes of an ``Encode``/``EndEncode`` result. PyNvVideoCodec 2.2 returns a
    list of packets (dicts with a ``data`` buffer); older releases returned one byte buffer."""
    if result is None:
        return b""
    if isinstance(result, bytes | bytearray | memoryview | np.ndarray):
        return bytes(result)
    if isinstance(result, dict):
        return _packet_bytes(result.get("data"))
    if isinstance(result, list | tuple):
        if all(isinstance(v, int) for v in result):
            return bytes(result)
        return b"".join(_packet_bytes(v) for v in result)
    try:
        return bytes(memoryview(result))
    except TypeError:
        raise BackendUnavailableError(
            f"PyNvVideoCodec returned an encoded packet of unexpected type {type(result).__name__}",
            extra="gpu",
        ) from None


#: NVENC's AV1 QP runs 0-255, four steps per SVT-AV1 QP (1-63).
NVENC_AV1_QP_SCALE = 4


class _CudaPlane:
    """One plane of a frame in device memory, described by the CUDA array interface."""

    def __init__(self, ptr: int, shape: tuple[int, ...], strides: tuple[int, ...]) -> None:
        self.__cuda_array_interface__ = {
            "shape": shape,
            "strides": strides,
            "typestr": "|u2",
            "data": (ptr, False),
            "version": 3,
        }


class _DeviceP010:
    """A P010 frame (luma, then interleaved chroma, 10 bits in the high bits of 16) in device
    memory, in the form PyNvVideoCodec's encoder takes GPU input: ``cuda()`` returns one array
    interface per plane, laid out as NVIDIA's encode samples lay out theirs. 10-bit input from a
    host buffer misplaces the chroma, so 10-bit frames go through this."""

    def __init__(self, surface: np.ndarray, device: str) -> None:
        torch = _import_torch()
        height, width = surface.shape[0] * 2 // 3, surface.shape[1]
        try:  # the buffer stays referenced here while the encoder reads it
            self.buf = torch.from_numpy(surface).to(device)
        except (RuntimeError, AssertionError) as exc:  # torch built without CUDA, or no such device
            raise BackendUnavailableError(f"cannot place a 10-bit frame on {device}: {exc}") from exc
        ptr = int(self.buf.data_ptr())
        self.planes = [
            _CudaPlane(ptr, (height, width, 1), (width * 2, 2, 1)),
            _CudaPlane(ptr + height * width * 2, (height // 2, width // 2, 2), (width * 2, 2, 1)),
        ]

    def cuda(self) -> list[_CudaPlane]:
        return self.planes


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError(
            "10-bit NVENC input must be in GPU memory, which needs torch", extra="gpu"
        ) from None
    return torch


def _surface_device(gpu_id: int) -> str:
    return f"cuda:{gpu_id}"


class NvCodecBackend:
    """NVENC encode (NV12/P010 with neutral chroma) and NVDEC decode through PyNvVideoCodec
    (2.2.4 or later: earlier releases decode on GPU 0 only or export 10-bit frames wrongly).

    Data-center GPUs (H100/H200/A100) have NVDEC but no NVENC: :func:`capabilities` asks the
    driver (encoder/decoder caps), and ``backend="auto"`` then encodes on the CPU and decodes here.
    NVDEC reads 4:2:0 streams (Main/Main10 profiles), not the 4:0:0 ones PyAV writes by default:
    encode with ``EncodeOptions(chroma="420")`` for streams NVDEC must read. Decoded frames are
    copied to host memory by the library (no torch needed). NVENC takes 8-bit frames from host
    memory and 10-bit ones from device memory (through torch). NVDEC conceals some bitstream errors
    instead of failing; the container's payload checksum is what guarantees the bytes.
    """

    name = "nvcodec"
    _NV_BIT_DEPTHS = (8, 10)

    def __init__(self, gpu_id: int = 0) -> None:
        self.nvc = _import_nvc()
        self.gpu_id = gpu_id

    def _codec_id(self, codec: str) -> Any:
        ids = self.nvc.cudaVideoCodec
        return {"hevc": ids.HEVC, "h264": ids.H264, "av1": ids.AV1}[codec]

    def encode(self, frames: list[np.ndarray], opts: EncodeOptions) -> list[bytes]:
        if opts.bit_depth not in self._NV_BIT_DEPTHS:
            raise InvalidArgumentError(f"NVENC codes 8 or 10 bits, not {opts.bit_depth}")
        if not frames:
            return []
        height, width = frames[0].shape
        fmt = "NV12" if opts.bit_depth == 8 else "P010"
        qp = 0 if opts.lossless else opts.qp * (NVENC_AV1_QP_SCALE if opts.codec == "av1" else 1)
        kwargs: dict[str, Any] = {
            "codec": opts.codec,
            "gpu_id": self.gpu_id,
            "preset": (opts.preset or "P7").upper(),
            "rc": "constqp",
            "constqp": qp,
            "gop": 1,
            "idrperiod": 1,
            "bf": 0,
            "repeatspspps": 1,
        }
        if opts.codec == "av1":
            kwargs["use_ivf_container"] = 0  # raw OBUs, as SVT-AV1 and the decoders expect
        if opts.lossless:
            kwargs["tuning_info"] = "lossless"
        host_input = opts.bit_depth == 8
        try:
            enc = self.nvc.CreateEncoder(width, height, fmt, host_input, **kwargs)
        except Exception as exc:
            raise BackendUnavailableError(f"NVENC cannot encode {opts.codec} here: {exc}") from exc
        out: list[bytes] = []
        neutral = 1 << (opts.bit_depth - 1)
        surf: Any
        try:
            for f in frames:
                if opts.bit_depth == 8:
                    surf = np.empty((height * 3 // 2, width), dtype=np.uint8)
                    surf[:height] = f
                    surf[height:] = neutral
                else:  # P010: 10 significant bits in the high bits of 16, from device memory
                    surf16 = np.empty((height * 3 // 2, width), dtype=np.uint16)
                    surf16[:height] = f.astype(np.uint16) << 6
                    surf16[height:] = neutral << 6
                    surf = _DeviceP010(surf16, _surface_device(self.gpu_id))
                data = _packet_bytes(enc.Encode(surf))
                if data:
                    out.append(data)
            tail = _packet_bytes(enc.EndEncode())
        except TensorpressError:
            raise
        except Exception as exc:
            raise _nv_error(self.nvc, exc, f"NVENC failed on {opts.codec}") from exc
        if tail:
            out.append(tail)
        if len(out) != len(frames):
            # NVENC may batch access units: keep one bitstream, decoders re-split it (parser / NVDEC)
            out = [b"".join(out)] + [b""] * (len(frames) - 1)
        return out

    def decode(
        self, packets: list[bytes], codec: str, bit_depth: int, height: int, width: int
    ) -> list[np.ndarray]:
        nvc = self.nvc
        limits = _nv_probe(self.gpu_id).decode_min_size.get(codec)
        if limits and (width < limits[0] or height < limits[1]):
            raise BackendUnavailableError(
                f"NVDEC decodes {codec} frames of at least {limits[0]}x{limits[1]}, not {width}x{height}",
            )
        try:
            dec = nvc.CreateDecoder(gpuid=self.gpu_id, codec=self._codec_id(codec), usedevicememory=False)
        except Exception as exc:
            raise BackendUnavailableError(f"NVDEC cannot decode {codec} here: {exc}") from exc
        wide = bit_depth > 8
        luma_bytes = height * width * (2 if wide else 1)
        out: list[np.ndarray] = []
        keep: list[np.ndarray] = []  # the packet buffers must outlive Decode()
        try:
            for data in [*packets, b""]:  # an empty packet (bsl = 0) flushes the decoder
                buf = np.frombuffer(data, dtype=np.uint8) if data else np.zeros(1, dtype=np.uint8)
                keep.append(buf)
                pkt = nvc.PacketData()
                pkt.bsl_data = int(buf.ctypes.data)
                pkt.bsl = len(data)
                for frame in dec.Decode(pkt):
                    # Host output: packed NV12/P016, the luma plane first (height x width samples).
                    ptr = ctypes.cast(frame.GetPtrToPlane(0), ctypes.POINTER(ctypes.c_uint8))
                    luma = np.ctypeslib.as_array(ptr, (luma_bytes,)).copy()
                    codes = luma.view(np.uint16) >> (16 - bit_depth) if wide else luma.astype(np.uint16)
                    out.append(codes.reshape(height, width))
        except TensorpressError:
            raise
        except Exception as exc:
            raise _nv_error(nvc, exc, f"NVDEC failed on the {codec} bitstream") from exc
        return out


# --------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Capability:
    """What one backend can do on this machine (``reason`` says why not, when it cannot).
    ``decode_min_size``: smallest (width, height) the hardware decoder takes, per codec."""

    backend: str
    encode: tuple[str, ...]
    decode: tuple[str, ...]
    reason: str | None = None
    decode_min_size: dict[str, tuple[int, int]] = field(default_factory=dict)


def _caps_dict(caps: Any) -> dict[str, Any]:
    if isinstance(caps, dict):
        return caps
    return {k: getattr(caps, k) for k in dir(caps) if not k.startswith("_")}


def _encoder_caps(nvc: Any, codec: str, gpu_id: int) -> Any:
    try:
        return nvc.GetEncoderCaps(codec=codec, gpuid=gpu_id)
    except TypeError:  # a release whose GetEncoderCaps takes no device: it asks the current one
        return nvc.GetEncoderCaps(codec=codec)


@functools.lru_cache(maxsize=4)
def _nv_probe(gpu_id: int = 0) -> Capability:
    """Ask the driver what GPU ``gpu_id`` supports (opening a session proves nothing: a decoder
    session only builds a parser, and a tiny encoder session is below NVENC's minimum size)."""
    try:
        nvc = _import_nvc()
    except BackendUnavailableError as exc:
        return Capability("nvcodec", (), (), str(exc))
    enc: list[str] = []
    dec: list[str] = []
    min_size: dict[str, tuple[int, int]] = {}
    notes: list[str] = []
    ids = {"hevc": "HEVC", "h264": "H264", "av1": "AV1"}
    for codec in CODECS:
        try:
            caps = _caps_dict(_encoder_caps(nvc, codec, gpu_id))
            if int(caps.get("num_encoder_engines", 0) or 0) > 0:
                enc.append(codec)
        except Exception as exc:
            notes.append(f"NVENC {codec}: {exc}")
        try:
            caps = _caps_dict(
                nvc.GetDecoderCaps(
                    gpuid=gpu_id,
                    codec=getattr(nvc.cudaVideoCodec, ids[codec]),
                    chromaformat=nvc.cudaVideoChromaFormat.__members__["420"],
                    bitdepth=8,
                )
            )
            if caps.get("supported"):
                dec.append(codec)
                min_size[codec] = (int(caps.get("width_min", 0) or 0), int(caps.get("height_min", 0) or 0))
        except Exception as exc:
            notes.append(f"NVDEC {codec}: {exc}")
    reason = None if enc or dec else ("; ".join(notes) or "no NVENC/NVDEC on this GPU")
    return Capability("nvcodec", tuple(enc), tuple(dec), reason, min_size)


def capabilities() -> dict[str, Capability]:
    """Probe every backend once: which codecs each can encode and decode here."""
    try:
        pyav = PyAVBackend()
        cap = Capability(
            "pyav",
            tuple(c for c in CODECS if pyav.can_encode(c)),
            tuple(c for c in CODECS if pyav.can_decode(c)),
        )
    except BackendUnavailableError as exc:
        cap = Capability("pyav", (), (), str(exc))
    return {"pyav": cap, "nvcodec": _nv_probe()}


def backends_available() -> dict[str, dict[str, list[str]]]:
    """JSON-friendly summary: ``{"pyav": {"encode": [...], "decode": [...]}, "nvcodec": {...}}``."""
    return {name: {"encode": list(c.encode), "decode": list(c.decode)} for name, c in capabilities().items()}


def get_backend(name: str, role: str, codec: str) -> Backend:
    """The backend to ``role`` (``"encode"``/``"decode"``) ``codec`` with. ``"auto"`` prefers the GPU
    (NVENC for encode, NVDEC for decode) when it can do the job, else PyAV."""
    if name not in ("auto", "pyav", "nvcodec"):
        raise InvalidArgumentError(f"backend must be 'auto', 'pyav' or 'nvcodec', got {name!r}")
    if codec not in CODECS:
        raise InvalidArgumentError(f"codec must be one of {CODECS}, got {codec!r}")
    if name in ("auto", "nvcodec"):
        cap = _nv_probe()
        if codec in getattr(cap, role):
            return NvCodecBackend()
        if name == "nvcodec":
            why = (
                cap.reason
                or f"NVIDIA {'NVENC' if role == 'encode' else 'NVDEC'} cannot {role} {codec} on this GPU"
            )
            # the install hint only where the library itself is missing or unusable
            extra = "gpu" if cap.reason else None
            raise BackendUnavailableError(f"nvcodec backend unavailable: {why}", extra=extra)
    return PyAVBackend()


__all__ = [
    "CODECS",
    "MIN_SIDE",
    "QP_RANGE",
    "Capability",
    "EncodeOptions",
    "NvCodecBackend",
    "PyAVBackend",
    "backends_available",
    "capabilities",
    "get_backend",
]
