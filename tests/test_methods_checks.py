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
