"""Golden files of every method: must decode (to independently computed values), must fail (with
the error docs/format.md §7 names), and the writers are pinned (regenerating gives the same bytes)."""

from __future__ import annotations

import re
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

import tensorpress as tp
from golden import make_golden as golden
from tensorpress import entropy, errors
from tensorpress.methods.blockwise import rtn_blockwise, rtn_dequantize, tender_dequantize, tender_group

GOLDEN = Path(__file__).parent / "golden"
SPEC = Path(__file__).parent.parent / "docs" / "format.md"


def spec_table() -> dict[str, tuple[str, str]]:
    """The must-fail table of docs/format.md §7."""
    text = SPEC.read_text().split("## 7. Golden files", 1)[1]
    rows = re.findall(r"^\| `([^`]+\.tp[ze])` \| `(\w+)` \| (.+?) \|$", text, flags=re.MULTILINE)
    return {name: (error, fragment) for name, error, fragment in rows}


def test_spec_names_every_must_fail_file() -> None:
    assert spec_table() == golden.MUST_FAIL
    on_disk = {p.name for p in GOLDEN.glob("v1-*.tpz")} | {p.name for p in GOLDEN.glob("stream-*.tpe")}
    must_decode = {"v1-ok.tpz", "v1-ok-header-first.tpz", "v1-empty.tpz", "v1-methods-ok.tpz"}
    must_decode |= {f"stream-v2-{codec}.tpe" for codec in entropy.CODECS}
    must_decode |= {"stream-v2-huffman-own-tables.tpe"}
    must_decode |= {"v1-video-ok.tpz"} | golden.FROZEN
    assert on_disk == set(golden.MUST_FAIL) | must_decode


@pytest.mark.parametrize("name", sorted(golden.MUST_FAIL))
def test_must_fail_golden(name: str) -> None:
    error, fragment = golden.MUST_FAIL[name]
    with pytest.raises(getattr(errors, error)) as info:
        if name.endswith(".tpe"):
            entropy.decode((GOLDEN / name).read_bytes())
        else:
            tp.load(GOLDEN / name)
    assert type(info.value).__name__ == error
    assert fragment in str(info.value)


def test_method_goldens_decode_to_reference_values() -> None:
    src = golden.method_sources()
    m = src["matrix"]
    got = tp.load(GOLDEN / "v1-methods-ok.tpz")
    assert got["lossless"].tobytes() == m.tobytes()
    assert got["lossless-verbatim"].tobytes() == src["bias"].tobytes()
    int4 = got["lossless-int4-odd"]
    assert int4.dtype.name == "int4"
    assert [int(v) for v in int4.astype(np.int8)] == [(k % 13) - 6 for k in range(9)]
    codes, scales = rtn_blockwise(m, 4, 16)
    assert got["blockwise-rtn"].tobytes() == rtn_dequantize(codes, scales, 16).tobytes()
    codes, scales = rtn_blockwise(m, 3, 8)
    assert got["blockwise-rtn-coded"].tobytes() == rtn_dequantize(codes, scales, 8).tobytes()
    codes, group, tmax = tender_group(m, 6, 4)
    assert got["blockwise-tender"].tobytes() == tender_dequantize(codes, group, tmax, 6, 4).tobytes()
    assert got["lowrank"].tobytes() == (src["u"] @ src["v"]).tobytes()
    with tp.open(GOLDEN / "v1-methods-ok.tpz") as f:
        assert f.compressed("lowrank").factors()["bias"].tobytes() == src["bias"].tobytes()
    assert tp.load(GOLDEN / "v1-empty.tpz") == {}


def test_video_golden_decodes_to_its_quantized_values() -> None:
    pytest.importorskip("av")
    from tensorpress.video import pipeline

    picture = golden.method_sources()["picture"]
    quant = pipeline.quantize_rows(picture, 8)
    expected = pipeline.dequantize_rows(quant.q, quant.scale, quant.offset)
    assert tp.load(GOLDEN / "v1-video-ok.tpz")["video"].tobytes() == expected.tobytes()


def test_regenerating_the_goldens_gives_the_same_bytes(tmp_path: Path) -> None:
    """Pins the writers: a changed default (lanes, chunk size, layout, rounding) shows up here.
    Video bitstreams are the encoder library's and are pinned by their decoded values instead."""
    golden.main(tmp_path, video=False)
    for path in sorted(GOLDEN.iterdir()):
        if path.suffix in (".tpz", ".tpe") and "video" not in path.name and path.name not in golden.FROZEN:
            assert _same_bytes_up_to_deflate(tmp_path / path.name, path), path.name


def _same_bytes_up_to_deflate(new: Path, old: Path) -> bool:
    """Identical files, or containers that differ only in how the zlib library deflated their
    headers (another zlib build may pick other matches): same inflated JSON, same payloads."""
    a, b = new.read_bytes(), old.read_bytes()
    if a == b:
        return True
    if old.suffix != ".tpz" or not (a[12] & b[12] & 1) or a[:12] != b[:12]:
        return False
    try:
        same_header = golden.header_json(a) == golden.header_json(b)
    except zlib.error:
        return False
    return same_header and golden.split(a)[1] == golden.split(b)[1]


def test_old_v1_video_bytes_still_load() -> None:
    """The version-1 standalone framing (zlib CRC-32) is still read."""
    import struct
    import zlib

    pytest.importorskip("av")
    video = pytest.importorskip("tensorpress.video")
    with tp.open(GOLDEN / "v1-video-ok.tpz") as f:
        vt = f.compressed("video")
    blob = vt.to_bytes()
    assert struct.unpack_from("<H", blob, 8)[0] == 2
    head = blob[32:]
    old = bytearray(blob)
    old[8:10] = struct.pack("<H", 1)
    old[28:32] = struct.pack("<I", zlib.crc32(head))  # v1: zlib CRC-32 of header and payload
    again = video.VideoTensor.from_bytes(bytes(old))
    assert again.payload() == vt.payload()
    with pytest.raises(errors.ChecksumError):
        old[40] ^= 1
        video.VideoTensor.from_bytes(bytes(old))
    for at in range(32):  # v2's checksum covers the preamble too: no byte of it changes silently
        bad = bytearray(blob)
        bad[at] ^= 0x10
        with pytest.raises(errors.TensorpressError):
            video.VideoTensor.from_bytes(bytes(bad))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(video.decode(blob), again.decode())


def test_container_checks_behind_the_checksums(tmp_path: Path) -> None:
    """Crafted containers, every CRC recomputed, each reaching one structural check."""
    ok = (GOLDEN / "v1-ok.tpz").read_bytes()
    doc, region = golden.split(ok)
    h = len(golden._header_text(doc))
    empty = golden._header_text({"tensors": [], "metadata": {}})
    duplicate = {
        **doc,
        "tensors": [doc["tensors"][0], {**doc["tensors"][1], "name": doc["tensors"][0]["name"]}],
    }
    cases = {
        "metadata must map": golden.build({**doc, "metadata": {"a": 1}}, region),
        "metadata must": golden.build({**doc, "metadata": ["a"]}, region),
        "an empty container ends": golden.build(None, b"\0" * 64, header_text=empty),
        "truncated after the header": golden.build(doc, region)[: 32 + h + 1],
        "duplicate tensor name": golden.build(duplicate, region),
        "no list of tensors": golden.build({"tensors": {}}, b""),
    }
    for fragment, data in cases.items():
        path = tmp_path / "c.tpz"
        path.write_bytes(data)
        with pytest.raises(errors.FormatError, match=fragment):
            tp.open(path)
    for data in (
        golden.build(None, b"", header_text=empty),
        golden.build(None, b"", header_text=empty)[: 32 + len(empty)],
    ):
        (tmp_path / "e.tpz").write_bytes(data)
        assert tp.load(tmp_path / "e.tpz") == {}
