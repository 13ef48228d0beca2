"""The PyNvVideoCodec backend's glue, against a stand-in module that behaves as PyNvVideoCodec
2.2.4 is documented to (caps dicts, packet lists, host-memory frames, its two exception types).
The real library runs in the ``gpu``-marked tests of test_video.py."""

from __future__ import annotations

import enum
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tensorpress.errors import BackendUnavailableError, CorruptDataError
from tensorpress.video import backends


class PyNvVCException(Exception):  # noqa: N818 (the library's name)
    pass


class PyNvVCExceptionUnsupported(PyNvVCException):
    pass


class _Frame:
    def __init__(self, plane: np.ndarray) -> None:
        self.plane = plane

    def GetPtrToPlane(self, index: int) -> int:  # noqa: N802 (the library's name)
        assert index == 0
        return int(self.plane.ctypes.data)


class _Decoder:
    def __init__(self, nv: Any, frames: list[np.ndarray]) -> None:
        self.nv, self.frames = nv, frames

    def Decode(self, pkt: Any) -> list[_Frame]:  # noqa: N802
        if self.nv.decode_error is not None:
            raise self.nv.decode_error
        # a real decoder returns frames later than their packets; here: everything at the flush
        return [_Frame(f) for f in self.frames] if pkt.bsl == 0 else []


class _Encoder:
    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs
        self.count = 0

    def Encode(self, surface: np.ndarray) -> list[dict[str, Any]]:  # noqa: N802
        self.count += 1
        return [{"data": np.frombuffer(f"AU{self.count}".encode(), np.uint8), "pts": self.count}]

    def EndEncode(self) -> list[dict[str, Any]]:  # noqa: N802
        return []


def _fake_nvc(frames: list[np.ndarray]) -> types.SimpleNamespace:
    nv = types.SimpleNamespace()
    nv.PyNvVCException = PyNvVCException
    nv.PyNvVCExceptionUnsupported = PyNvVCExceptionUnsupported
    nv.cudaVideoCodec = enum.Enum("cudaVideoCodec", "H264 HEVC AV1")
    nv.cudaVideoChromaFormat = enum.Enum("cudaVideoChromaFormat", {"Monochrome": 0, "420": 1})
    nv.PacketData = lambda: types.SimpleNamespace(bsl_data=0, bsl=0)
    nv.decode_error = None
    nv.encoders = []

    def get_decoder_caps(gpuid: int, codec: Any, chromaformat: Any, bitdepth: int) -> dict[str, Any]:
        if codec.name == "AV1":  # Hopper: no AV1 decode
            return {"supported": 0}
        return {"supported": 1, "width_min": 48, "height_min": 16, "width_max": 8192}

    def get_encoder_caps(codec: str, gpuid: int = 0) -> dict[str, Any]:
        return {"num_encoder_engines": 0}  # H100/H200: no NVENC

    def create_encoder(width: int, height: int, fmt: str, cpu: bool, **kwargs: Any) -> _Encoder:
        enc = _Encoder(kwargs)
        nv.encoders.append(enc)
        return enc

    nv.GetDecoderCaps = get_decoder_caps
    nv.GetEncoderCaps = get_encoder_caps
    nv.CreateDecoder = lambda **kw: _Decoder(nv, frames)
    nv.CreateEncoder = create_encoder
    return nv


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.SimpleNamespace]:
    nv = _fake_nvc([])
    backends._nv_probe.cache_clear()
    monkeypatch.setattr(backends, "_import_nvc", lambda: nv)
    yield nv
    backends._nv_probe.cache_clear()


def test_probe_asks_the_driver_caps(fake: types.SimpleNamespace) -> None:
    cap = backends._nv_probe(0)
    assert cap.encode == ()
    assert cap.decode == ("hevc", "h264")
    assert cap.decode_min_size["hevc"] == (48, 16)
    assert backends.get_backend("auto", "encode", "hevc").name == "pyav"
    assert backends.get_backend("auto", "decode", "hevc").name == "nvcodec"
    with pytest.raises(BackendUnavailableError):
        backends.get_backend("nvcodec", "decode", "av1")


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_decode_reads_luma_from_host_frames(fake: types.SimpleNamespace, bit_depth: int) -> None:
    h, w = 32, 64
    rng = np.random.default_rng(bit_depth)
    codes = [rng.integers(0, 1 << bit_depth, (h, w)).astype(np.uint16) for _ in range(2)]
    planes = []
    for c in codes:  # packed NV12 (8-bit) or P016 (high bits), chroma after the luma
        luma = c.astype(np.uint8) if bit_depth == 8 else (c << (16 - bit_depth)).astype(np.uint16)
        chroma = np.full(h * w // 2, 77, luma.dtype)
        planes.append(np.concatenate([luma.reshape(-1), chroma]).view(np.uint8))
    fake.CreateDecoder = lambda **kw: _Decoder(fake, planes)
    got = backends.NvCodecBackend().decode([b"a", b"b"], "hevc", bit_depth, h, w)
    assert len(got) == 2
    for a, b in zip(got, codes, strict=True):
        np.testing.assert_array_equal(a, b)


def test_decode_errors_are_typed(fake: types.SimpleNamespace) -> None:
    nv = backends.NvCodecBackend()
    fake.decode_error = PyNvVCExceptionUnsupported("4:0:0 is not supported")
    with pytest.raises(BackendUnavailableError, match="unsupported"):
        nv.decode([b"x"], "hevc", 8, 64, 64)
    fake.decode_error = PyNvVCException("bitstream error")
    with pytest.raises(CorruptDataError):
        nv.decode([b"x"], "hevc", 8, 64, 64)
    fake.decode_error = None
    with pytest.raises(BackendUnavailableError, match="at least 48x16"):
        nv.decode([b"x"], "hevc", 8, 8, 40)


def test_encode_collects_packet_lists_and_sets_av1_options(fake: types.SimpleNamespace) -> None:
    frames = [np.full((64, 64), 100, np.uint16) for _ in range(3)]
    opts = backends.EncodeOptions("av1", 8, qp=30)
    out = backends.NvCodecBackend().encode(frames, opts)
    assert out == [b"AU1", b"AU2", b"AU3"]
    kwargs = fake.encoders[-1].kwargs
    assert kwargs["use_ivf_container"] == 0
    assert kwargs["constqp"] == 30 * backends.NVENC_AV1_QP_SCALE


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (b"abc", b"abc"),
        ([{"data": b"ab"}, {"data": np.frombuffer(b"cd", np.uint8)}], b"abcd"),
        ([97, 98], b"ab"),
        ([], b""),
        (None, b""),
        (bytearray(b"xy"), b"xy"),
    ],
)
def test_packet_bytes_accepts_every_release_shape(result: Any, expected: bytes) -> None:
    assert backends._packet_bytes(result) == expected


def test_packet_bytes_refuses_unknown_shapes() -> None:
    with pytest.raises(BackendUnavailableError):
        backends._packet_bytes(3.5)


def test_pyav_writes_nvdec_readable_420_on_request() -> None:
    pytest.importorskip("av")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 64)).astype(np.uint16) for _ in range(2)]
    pyav = backends.PyAVBackend()
    for chroma in ("400", "420"):
        opts = backends.EncodeOptions("hevc", 8, qp=0, lossless=True, chroma=chroma)
        packets = pyav.encode(frames, opts)
        got = pyav.decode(packets, "hevc", 8, 64, 64)
        for a, b in zip(got, frames, strict=True):
            np.testing.assert_array_equal(a, b)
    assert backends.PyAVBackend._pix_fmt("hevc", 10, "420") == "yuv420p10le"
    with pytest.raises(Exception, match="chroma"):
        backends.PyAVBackend._pix_fmt("hevc", 8, "444")
