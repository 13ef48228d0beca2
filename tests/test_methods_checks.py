"""Every check of every method's ``from_parts`` (and of the packed framing) reached by a crafted
input, asserting that *this* check fired (by its message) — not a later one that would also
catch the damage. The scripted mutation run (benches/mutate_parsers.py) removes each check in
turn; these tests are what notice."""

from __future__ import annotations

import struct
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from tensorpress import _core, entropy, methods
from tensorpress.distributed import unpack_object
from tensorpress.errors import CorruptDataError, FormatError
from tensorpress.methods import lossless, lowrank
from tensorpress.methods.blockwise import BlockwiseTensor, quantize_blockwise, unpack_bits

M = np.arange(16 * 24, dtype=np.float32).reshape(16, 24) / 100


def rejects(
    method: str, header: dict[str, Any], payload: bytes, fragment: str, error: type = FormatError
) -> None:
    with pytest.raises(error, match=fragment):
        methods.from_parts(method, header, payload)


def test_field_rules() -> None:
    q = quantize_blockwise(M, 4, 8, scheme="tender-group", layout="packed")
    h, p = q.header(), q.payload()
    for tmax in (-1.0, 0.0, float("inf"), float("nan"), "1.0", True):
        rejects("blockwise", {**h, "tmax": tmax}, p, "tmax")
    rejects("blockwise", {**h, "dtype": "int8"}, p, "dtype")
    rejects("blockwise", {**h, "dtype": ["float32"]}, p, "dtype")
    c = lossless.compress(M)
    rejects("lossless", {**c.header(), "shape": [1 << 21, 1 << 21]}, c.payload(), "more than 2")
    rejects("lossless", {**c.header(), "shape": [1.0, 2]}, c.payload(), "shape")


def test_lossless_plane_checks() -> None:
    c = lossless.compress(M)
    h, p = c.header(), c.payload()
    rejects("lossless", h, p + b"\0", "planes end at")
    other = "raw" if h["planes"][0]["codec"] != "raw" else "qlc"
    planes = [{**h["planes"][0], "codec": other}, *h["planes"][1:]]
    rejects("lossless", {**h, "planes": planes}, p, "stream of")
    rejects("lossless", {**h, "shape": [16, 23]}, p, "stream of")
    bad = bytearray(p)
    bad[0] ^= 0xFF  # the first plane's stream magic
    rejects("lossless", h, bytes(bad), "not an entropy stream")
    bad = bytearray(p)
    bad[5] = 9  # the first plane's codec id
    rejects("lossless", h, bytes(bad), "not an entropy stream")


def test_merge_planes_checks_its_inputs() -> None:
    planes = lossless.split_planes(M.reshape(-1), "fp32-exponent")
    with pytest.raises(FormatError, match="needs 4 planes"):
        lossless.merge_planes(planes[:3], "fp32-exponent", M.dtype, M.size)
    with pytest.raises(CorruptDataError, match="planes hold"):
        lossless.merge_planes([p[:-1] for p in planes], "fp32-exponent", M.dtype, M.size)
    odd = (np.arange(5) % 3).astype(ml_dtypes.int4)
    packed = lossless.split_planes(odd, "nibbles")
    assert lossless.merge_planes(packed, "nibbles", odd.dtype, 5).tobytes() == odd.tobytes()


def test_blockwise_code_checks() -> None:
    q = quantize_blockwise(M, 3, 8, layout="packed")
    h, p = q.header(), q.payload()
    n = h["codes_length"]
    longer = p[:n] + b"\0" + p[n:]
    rejects("blockwise", {**h, "codes_length": n + 1}, longer, "packed 3-bit codes need")
    coded = quantize_blockwise(M, 4, 8, layout="huffman")
    ch = coded.header()
    rejects("blockwise", {**ch, "layout": "qlc"}, coded.payload(), "code stream is huffman")
    rejects("blockwise", {**ch, "shape": [16, 23]}, coded.payload(), "side information|code stream")
    with pytest.raises(FormatError, match="need"):
        unpack_bits(b"\0" * 3, 3, 5)
    few = quantize_blockwise(np.linspace(-1, 1, 5, dtype=np.float32), 3, 8, layout="packed")
    codes = bytearray(few.codes)  # 5 codes x 3 bits = 15 bits: bit 7 of byte 1 is padding
    codes[-1] |= 0x80
    few.codes = bytes(codes)
    with pytest.raises(CorruptDataError, match="padding bits"):
        few.decode()
    four = entropy.encode(np.full(4, 7, np.uint8), "raw")  # 4 codes where the shape needs 6
    short = BlockwiseTensor("float32", (2, 3), "rtn-block", 4, 8, "raw", four, b"\0\x3c" * 2)
    with pytest.raises(CorruptDataError, match="code stream holds"):
        short.decode()


def test_lowrank_structure_checks() -> None:
    lr = lowrank.from_factors(M[:, :4], M[:4, :], M[:, 0].copy())
    h, p = lr.header(), lr.payload()
    rejects("lowrank", {**h, "shape": [16, 24, 1]}, p, r"\[d_out, d_in\]")
    rejects("lowrank", h, p + b"\0", "factors end at")
    swapped = [{**h["factors"][1], "name": "u"}, {**h["factors"][0], "name": "v"}, h["factors"][2]]
    rejects("lowrank", {**h, "factors": swapped}, p, "does not follow|factor u is")
    renamed = [h["factors"][1] | {"name": "v"}, h["factors"][0], h["factors"][2]]
    rejects("lowrank", {**h, "factors": renamed}, p, "expected 'u'")
    shifted = [h["factors"][0], {**h["factors"][1], "offset": h["factors"][1]["offset"] + 1}, h["factors"][2]]
    rejects("lowrank", {**h, "factors": shifted}, p, "does not follow")


def _message(pre_fields: tuple[Any, ...], body: bytes) -> bytes:
    pre = struct.pack("<4sBBHIQII", *pre_fields)
    return pre + struct.pack("<I", _core.crc32c(pre)) + body


def test_packed_preamble_checks() -> None:
    with pytest.raises(FormatError, match="shorter than its"):
        unpack_object(b"\x89TPO" + b"\0" * 20)
    fields = (b"\x89TPX", 2, 0, 0, 0, 0, _core.crc32c(b""), _core.crc32c(b""))
    with pytest.raises(FormatError, match="bad magic"):
        unpack_object(_message(fields, b""))


@pytest.fixture(scope="module")
def videos() -> dict[str, Any]:
    pytest.importorskip("av")
    video = pytest.importorskip("tensorpress.video")
    rng = np.random.default_rng(3)
    w = rng.standard_normal((32, 32)).astype(np.float32)
    return {
        "matrix": video.encode(w, qp=30, codec="av1"),
        "vector": video.encode(rng.standard_normal(3000).astype(np.float32), qp=30, codec="av1"),
        "scaled": video.encode(w, qp=30, codec="av1", col_scale=np.linspace(0.5, 2, 32)),
    }


def _with(h: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {**h, "layout": dict(h["layout"])}
    for key, value in changes.items():
        if key.startswith("layout_"):
            out["layout"][key.removeprefix("layout_")] = value
        else:
            out[key] = value
    return out


def test_video_header_checks(videos: dict[str, Any]) -> None:
    h, p = videos["matrix"].header(), videos["matrix"].payload()
    cases = [
        (_with(h, format="tensorpress.audio"), "format"),
        (_with(h, col_scale=1), "col_scale"),
        (_with(h, lossless=True), "lossless and qp disagree"),
        (_with(h, seed=-1), "seed"),
        (_with(h, seed=1 << 63), "seed"),
        (_with(h, encoder=5), "encoder"),
        (_with(h, layout_frame_h=0), "frame size"),
        (_with(h, layout_frame_w=8192), "frame size"),
        (_with(h, layout_frame_h=33), "odd frame size"),
        (_with(h, layout_tiles_r=10**6), "more frames than the payload"),
        (_with(h, layout_tiles_r=0), "frames cover"),
    ]
    for header, fragment in cases:
        rejects("video", header, p, fragment)
    n_frames = h["layout"]["tiles_r"] * h["layout"]["tiles_c"]
    rejects("video", h, p[: 4 * n_frames + 2], "tables alone need", CorruptDataError)
    v, vp = videos["vector"].header(), videos["vector"].payload()
    assert v["layout"]["wrap"]
    rejects("video", _with(v, layout_tiles_c=2), vp, "wrap layout")
    rejects("video", _with(v, layout_tiles_r=0), vp, "do not cover the row")
    rejects("video", _with(v, layout_tiles_r=v["layout"]["tiles_r"] + 1), vp, "superfluous tiles")
    s, sp = videos["scaled"].header(), bytearray(videos["scaled"].payload())
    n_frames = s["layout"]["tiles_r"] * s["layout"]["tiles_c"]
    at = 4 * n_frames + 2 * 32 * (2 if s["scale_dtype"] == "float16" else 4)
    sp[at : at + 2] = np.float16(-1.0).tobytes()
    rejects("video", s, bytes(sp), "column scale", CorruptDataError)


def test_video_bytes_framing_checks(videos: dict[str, Any]) -> None:
    from tensorpress.video import VideoTensor

    blob = videos["matrix"].to_bytes()
    with pytest.raises(FormatError, match="its preamble says"):
        VideoTensor.from_bytes(blob + b"\0")
    huge = bytearray(blob)
    huge[16:20] = struct.pack("<I", 2 << 20)
    with pytest.raises(FormatError, match="exceeds the"):
        VideoTensor.from_bytes(bytes(huge))


def test_limits_are_inclusive_where_documented(videos: dict[str, Any], tmp_path: Any) -> None:
    """Values exactly at each documented bound are accepted, one past it refused (docs/format.md)."""
    import json

    import tensorpress as tp
    from tensorpress import video
    from tensorpress.distributed import MAX_PACK_HEADER, PACK_MAGIC, PACK_VERSION
    from tensorpress.methods import base

    assert base.parse_json(b"[" * 32 + b"]" * 32, "x") is not None
    with pytest.raises(FormatError, match="nested"):
        base.parse_json(b"[" * 33 + b"]" * 33, "x")
    assert base.need_shape({"shape": [1] * 32}, "x") == (1,) * 32
    with pytest.raises(FormatError):
        base.need_shape({"shape": [1] * 33}, "x")
    assert base.need_shape({"shape": [1 << 40]}, "x") == (1 << 40,)
    assert base.need_shape({"shape": [1 << 20, 1 << 20]}, "x") == (1 << 20, 1 << 20)
    with pytest.raises(FormatError, match="more than 2"):
        base.need_shape({"shape": [1 << 20, (1 << 20) + 1]}, "x")
    with pytest.raises(FormatError):
        base.need_shape({"shape": [(1 << 40) + 1]}, "x")
    empty = lossless.compress(np.zeros((0, 3), np.float32))
    assert tp.decompress(empty, max_size=0).shape == (0, 3)

    # Entropy stream facts: exactly the fixed header is enough; codec id 6 does not exist.
    blob = lossless.compress(M).planes[0].blob
    assert lossless.stream_facts(blob[:16], "x")[1] == M.size
    bad = bytearray(blob)
    bad[5] = 6
    with pytest.raises(FormatError, match="codec id 6"):
        lossless.stream_facts(bytes(bad), "x")

    # A zero scale is refused like a negative one (blockwise and video column scales).
    q = quantize_blockwise(M, 4, 8, layout="packed")
    side = bytearray(q.side)
    side[0:2] = np.float16(0.0).tobytes()
    with pytest.raises(CorruptDataError, match="scale"):
        BlockwiseTensor(**{**q.__dict__, "side": bytes(side)}).decode()
    s, sp = videos["scaled"].header(), bytearray(videos["scaled"].payload())
    at = 4 * s["layout"]["tiles_r"] * s["layout"]["tiles_c"] + 2 * 32 * (
        2 if s["scale_dtype"] == "float16" else 4
    )
    sp[at : at + 2] = np.float16(0.0).tobytes()
    rejects("video", s, bytes(sp), "column scale", CorruptDataError)

    # A container whose only tensor has an empty payload: its header starts right at D.
    path = tp.save(
        {"e": quantize_blockwise(np.zeros((0, 5), np.float32), layout="packed")}, tmp_path / "e.tpz"
    )
    assert tp.load(path)["e"].shape == (0, 5)
    assert int.from_bytes(path.read_bytes()[32:40], "little") == 64

    # Packed headers of exactly the limit are read.
    obj = lossless.compress(M)
    text = json.dumps({"method": "lossless", "params": {**obj.header(), "pad": ""}}, separators=(",", ":"))
    text = text.replace('"pad":""', '"pad":"' + "x" * (MAX_PACK_HEADER - len(text)) + '"')
    head, payload = text.encode(), obj.payload()
    assert len(head) == MAX_PACK_HEADER
    fields = (
        PACK_MAGIC,
        PACK_VERSION,
        0,
        0,
        len(head),
        len(payload),
        _core.crc32c(head),
        _core.crc32c(payload),
    )
    assert unpack_object(_message(fields, head + payload)).payload() == payload

    # Video: qp 0 and 63, the largest seed and frame side, an empty tensor, an exact wrap cover.
    h, p = videos["matrix"].header(), videos["matrix"].payload()
    for header in (_with(h, qp=0), _with(h, qp=63), _with(h, seed=(1 << 63) - 1)):
        methods.from_parts("video", header, p)
    rejects("video", _with(h, qp=64), p, "qp")
    methods.from_parts("video", _with(h, layout_frame_h=4096, layout_frame_w=4096), p)
    rejects("video", _with(h, layout_frame_w=0), p, "frame size")
    nothing = video.encode(np.zeros((0, 8), np.float32), qp=30, codec="av1")
    assert len(nothing.payload()) == 4
    assert methods.from_parts("video", nothing.header(), nothing.payload()).decode().shape == (0, 8)
    exact = video.encode(np.linspace(-1, 1, 4096, dtype=np.float32), qp=30, codec="av1")
    e = exact.header()
    assert e["layout"]["wrap"] and e["layout"]["frame_h"] * e["layout"]["frame_w"] == 4096
    methods.from_parts("video", e, exact.payload())
    rejects("video", _with(e, layout_tiles_r=2), exact.payload(), "superfluous tiles")


@pytest.mark.parametrize("shape", [(3, 0), (0, 5), (0,), (2, 0, 4), ()])
@pytest.mark.parametrize(("scheme", "block"), [("rtn-block", 8), ("tender-group", 4)])
@pytest.mark.parametrize("layout", ["packed", "qlc"])
def test_blockwise_empty_and_scalar_shapes_round_trip(
    shape: tuple[int, ...], scheme: str, block: int, layout: str
) -> None:
    q = quantize_blockwise(np.full(shape, 0.5, np.float32), 4, block, scheme=scheme, layout=layout)
    out = methods.from_parts("blockwise", q.header(), q.payload()).decode()
    assert out.shape == shape and np.allclose(out, 0.5, atol=1e-3)


def test_video_exact_bounds(videos: dict[str, Any]) -> None:
    import json
    import zlib

    from tensorpress.video import MAGIC, VideoTensor

    h, p = videos["matrix"].header(), videos["matrix"].payload()
    assert h["layout"]["frame_w"] == 32 and h["layout"]["tiles_c"] == 1
    rejects("video", _with(h, layout_tiles_c=2), p, "superfluous tiles")  # (2 − 1)·32 = the width
    text = json.dumps({**h, "pad": ""}, separators=(",", ":"), sort_keys=True)
    text = text.replace('"pad":""', '"pad":"' + "x" * ((1 << 20) - len(text)) + '"')
    head = text.encode()
    assert len(head) == 1 << 20
    pre = struct.pack("<8sHHIIQ", MAGIC, 1, 0, 0, len(head), len(p))
    blob = pre + struct.pack("<I", zlib.crc32(p, zlib.crc32(head))) + head + p
    assert VideoTensor.from_bytes(blob).payload() == p
