"""The PyNvVideoCodec backend's glue, against a stand-in module that behaves as PyNvVideoCodec
2.2.4 is documented to (caps dicts, packet lists, host-memory frames, its two exception types),
and which backend ``tensorpress.video.decode`` picks for which stream. The real library runs in
the ``gpu``-marked tests at the end, which need no PyAV where CPU-made streams were carried
(``TENSORPRESS_NVDEC_STREAMS``, the file benches/nvdec_streams.py writes)."""

from __future__ import annotations

import ctypes
import enum
import importlib
import json
import os
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tensorpress.errors import BackendUnavailableError, CorruptDataError, FormatError, InvalidArgumentError
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
    def __init__(self, kwargs: dict[str, Any], host_input: bool) -> None:
        self.kwargs, self.host_input = kwargs, host_input
        self.count = 0
        self.surfaces: list[Any] = []

    def Encode(self, surface: Any) -> list[dict[str, Any]]:  # noqa: N802
        # host input: a numpy frame; device input: an object whose cuda() lists the planes
        assert isinstance(surface, np.ndarray) == self.host_input
        self.surfaces.append(surface)
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
        enc = _Encoder(kwargs, cpu)
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
    with pytest.raises(BackendUnavailableError) as info:
        backends.get_backend("nvcodec", "decode", "av1")
    assert info.value.extra is None  # installed: no install hint for what the GPU cannot do


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


def test_10_bit_frames_reach_nvenc_from_device_memory(
    fake: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """P010 from device memory (a host buffer misplaces 10-bit chroma): luma codes in the high
    bits, then neutral interleaved chroma, described plane by plane as NVIDIA's samples do."""
    pytest.importorskip("torch")
    monkeypatch.setattr(backends, "_surface_device", lambda gpu_id: "cpu")  # no GPU in CI
    h, w = 64, 96
    codes = np.random.default_rng(5).integers(0, 1024, (h, w)).astype(np.uint16)
    backends.NvCodecBackend().encode([codes], backends.EncodeOptions("hevc", 10, qp=20))
    (surface,) = fake.encoders[-1].surfaces
    luma, chroma = (p.__cuda_array_interface__ for p in surface.cuda())
    assert luma["shape"] == (h, w, 1) and luma["strides"][0] == 2 * w and luma["typestr"] == "|u2"
    assert chroma["shape"] == (h // 2, w // 2, 2) and chroma["data"][0] == luma["data"][0] + 2 * h * w
    memory = surface.buf.numpy()  # the buffer the interfaces point into
    assert memory.ctypes.data == luma["data"][0]
    np.testing.assert_array_equal(memory[:h] >> 6, codes)
    assert np.all(memory[h:] == 512 << 6)
    backends.NvCodecBackend().encode([codes.astype(np.uint8)], backends.EncodeOptions("hevc", 8, qp=20))
    assert isinstance(fake.encoders[-1].surfaces[0], np.ndarray)  # 8-bit: host memory


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


# --------------------------------------------------------------------------- which backend decodes


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch, fake: types.SimpleNamespace) -> list[str]:
    """NVDEC present (the stand-in's caps) with its decode replaced by FFmpeg's, recording calls;
    ``fake.fail`` makes it raise as a real NVDEC refusing a stream would."""
    pytest.importorskip("av")
    calls: list[str] = []
    fake.fail = None

    def nv_decode(self: Any, packets: list[bytes], codec: str, *args: Any) -> list[np.ndarray]:
        calls.append(codec)
        if fake.fail is not None:
            raise fake.fail
        return backends.PyAVBackend().decode(packets, codec, *args)

    monkeypatch.setattr(backends.NvCodecBackend, "decode", nv_decode)
    return calls


def _weights() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((64, 96)).astype(np.float32)


def test_luma_only_streams_never_go_to_nvdec(recorded: list[str]) -> None:
    import tensorpress.video as tv

    w = _weights()
    vt = tv.encode(w, qp=20, codec="hevc", backend="pyav")
    assert "chroma" not in vt.header()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = tv.decode(vt)
    assert recorded == [] and out.shape == w.shape


def test_420_streams_decode_on_nvdec_and_fall_back_with_a_warning(
    recorded: list[str], fake: types.SimpleNamespace
) -> None:
    import tensorpress.video as tv

    w = _weights()
    luma = tv.encode(w, qp=20, codec="hevc", backend="pyav")
    vt = tv.encode(w, qp=20, codec="hevc", backend="pyav", chroma="420")
    assert vt.header()["chroma"] == "420"
    assert vt.nbytes > luma.nbytes  # the neutral chroma costs a few bytes per frame
    want = tv.decode(vt, backend="pyav")
    np.testing.assert_array_equal(tv.decode(vt), want)
    assert recorded == ["hevc"]
    fake.fail = CorruptDataError("NVDEC refused the stream")
    with pytest.warns(UserWarning, match="NVDEC could not decode"):
        np.testing.assert_array_equal(tv.decode(vt), want)
    fake.fail = CorruptDataError("corrupt")
    with pytest.raises(CorruptDataError):
        tv.decode(vt, backend="nvcodec")  # a forced backend never falls back
    av1 = tv.encode(w, qp=30, codec="av1", backend="pyav")  # SVT-AV1 writes 4:2:0 anyway
    assert "chroma" not in av1.header()
    assert tv.decode(av1, backend="pyav").shape == w.shape


def test_chroma_is_checked() -> None:
    import tensorpress.video as tv

    with pytest.raises(InvalidArgumentError, match="chroma"):
        tv.encode(_weights(), qp=20, chroma="444")
    pytest.importorskip("av")
    vt = tv.encode(_weights(), qp=20, codec="hevc", backend="pyav", chroma="420")
    header = vt.header() | {"chroma": "444"}
    with pytest.raises(FormatError, match="chroma"):
        tv.VideoTensor.from_parts(header, vt.payload())


# --------------------------------------------------------------------------- the device probe script


class _FFmpegNvdec:
    """A decoder session of the stand-in whose NVDEC is FFmpeg: packets are collected until the
    end-of-stream packet, then returned as packed NV12/P016 host frames (4:0:0 refused)."""

    def __init__(self, av: Any, name: str) -> None:
        self.av, self.cc, self.data = av, av.CodecContext.create(name, "r"), []
        self.frames: list[_Frame] = []

    def Decode(self, pkt: Any) -> list[_Frame]:  # noqa: N802
        if pkt.bsl:
            self.data.append(ctypes.string_at(pkt.bsl_data, pkt.bsl))
            return []
        decoded = [f for d in self.data for f in self.cc.decode(self.av.Packet(d))]
        for vf in decoded + list(self.cc.decode(None)):
            if vf.format.name.startswith("gray"):
                raise PyNvVCExceptionUnsupported("no 4:0:0 decode")
            bits = vf.format.components[0].bits
            dtype = np.uint16 if bits > 8 else np.uint8
            plane = np.frombuffer(vf.planes[0], dtype).reshape(vf.height, -1)[:, : vf.width]
            luma = (plane << (16 - bits)).astype(np.uint16) if bits > 8 else plane
            chroma = np.full(vf.height * vf.width // 2, 7, dtype)
            self.frames.append(_Frame(np.concatenate([luma.reshape(-1), chroma]).view(np.uint8)))
        return self.frames


def test_nvdec_check_script_runs_against_a_stand_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: types.SimpleNamespace
) -> None:
    """benches/nvdec_check.py, the prepared device probe, end to end on streams made by
    benches/nvdec_streams.py, with an NVDEC that is FFmpeg: what it reports must be right before
    the one device session that runs it."""
    av = pytest.importorskip("av")
    names = {"HEVC": "hevc", "H264": "h264"}

    def create_decoder(gpuid: int = 0, codec: Any = None, usedevicememory: bool = True) -> _FFmpegNvdec:
        if codec.name not in names:
            raise PyNvVCExceptionUnsupported(f"no {codec.name} decode on this GPU")
        return _FFmpegNvdec(av, names[codec.name])

    fake.CreateDecoder, fake.__version__ = create_decoder, "stand-in"
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", fake)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benches"))
    streams, check = importlib.import_module("nvdec_streams"), importlib.import_module("nvdec_check")
    path, out = str(tmp_path / "streams.npz"), tmp_path / "rows.json"
    cases = [("hevc", 8, "420", 64, 96), ("hevc", 10, "420", 64, 96), ("hevc", 8, "400", 64, 96)]
    streams.make(path, cases, [("h264", 8)], speed_side=64, speed_frames=1)
    assert check.main([path, "--repeat", "2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    exact = {(r["case"], r["decoder"]): r for r in rows if r["kind"] == "bit-exact"}
    for case in ("hevc_8b_420_64x96", "hevc_10b_420_64x96"):
        assert exact[case, "raw-nvdec"]["ok"] is True and exact[case, "tensorpress-nvcodec"]["ok"] is True
    refused = exact["hevc_8b_400_64x96", "tensorpress-nvcodec"]
    assert refused["ok"] is False and "BackendUnavailableError" in refused["error"]
    (speed,) = [r for r in rows if r["kind"] == "nvdec-speed"]
    assert speed["bit_exact"] is True and speed["frames"] == 2 and speed["frames_per_s"] > 0
    assert [r["supported"] for r in rows if r["kind"] == "decoder-caps" and r["codec"] == "AV1"] == [0] * 4


# --------------------------------------------------------------------------- GPU (the real library)


def _streams(codec: str, bit_depth: int) -> tuple[list[bytes], np.ndarray]:
    """CPU-made 4:2:0 streams of three 256x320 frames and FFmpeg's decode of them: made now with
    PyAV, or read from the carried file on a GPU machine without PyAV."""
    path = os.environ.get("TENSORPRESS_NVDEC_STREAMS")
    try:
        pyav = backends.PyAVBackend()
    except BackendUnavailableError:
        if not path:
            pytest.skip("neither PyAV nor TENSORPRESS_NVDEC_STREAMS (benches/nvdec_streams.py) here")
        with np.load(path) as z:
            name = f"{codec}_{bit_depth}b_420_256x320"
            case = next(c for c in json.loads(bytes(z["cases"]).decode()) if c["name"] == name)
            packets = [bytes(z[f"{name}.p{k}"]) for k in range(case["frames"])]
            return packets, np.asarray(z[f"{name}.ref"], np.uint16)
    rng = np.random.default_rng(bit_depth)
    mid, sd, top = 2 ** (bit_depth - 1), 2 ** (bit_depth - 3), 2**bit_depth - 1
    frames = [np.clip(rng.normal(mid, sd, (256, 320)), 0, top).astype(np.uint16) for _ in range(3)]
    packets = pyav.encode(frames, backends.EncodeOptions(codec, bit_depth, qp=25, chroma="420"))
    return packets, np.stack(pyav.decode(packets, codec, bit_depth, 256, 320))


@pytest.mark.gpu
@pytest.mark.parametrize(("codec", "bit_depth"), [("hevc", 8), ("hevc", 10), ("h264", 8), ("av1", 8)])
def test_nvdec_decodes_cpu_streams(
    codec: str, bit_depth: int, record_property: Callable[[str, object], None]
) -> None:
    """NVDEC itself (no fallback) on CPU-made 4:2:0 streams of 256x320 frames (above NVDEC's
    minimum), bit for bit against FFmpeg; the decoder that ran is recorded in the test report."""
    backends._nv_probe.cache_clear()
    cap = backends.capabilities()["nvcodec"]
    if codec not in cap.decode:
        pytest.skip(f"no NVDEC {codec} here: {cap.reason}")
    packets, want = _streams(codec, bit_depth)
    nvdec = backends.get_backend("nvcodec", "decode", codec)
    record_property("decoder", nvdec.name)
    assert isinstance(nvdec, backends.NvCodecBackend)
    got = nvdec.decode(packets, codec, bit_depth, 256, 320)
    assert len(got) == len(want) == 3
    np.testing.assert_array_equal(np.stack(got), want)
