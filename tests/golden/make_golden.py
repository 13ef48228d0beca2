"""Regenerates the golden files. Run only when the format version changes on purpose:

    .venv/bin/python tests/golden/make_golden.py

The must-decode files pin the readers: a reader change that cannot read them is a format break.
The writers are pinned too: every knob that shapes the bytes (lanes, chunk size, code layout) is
fixed here, and ``tests/test_methods_golden.py`` regenerates every file into a temporary directory and
requires identical bytes — except the video files, whose bitstreams are whatever the installed
encoder library produces (their decoded values are pinned instead).

Frozen files (:data:`FROZEN`) were written by an earlier writer and are kept as they are: the
readers must still decode them, and they are not regenerated.

Must-fail files are built by mutating a good file and recomputing every checksum, so each one
reaches the check it is named after. :data:`MUST_FAIL` (file → error, message fragment) is
repeated, as a table, in docs/format.md §7; the tests require the two to agree.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

import tensorpress as tp
from tensorpress import _core, entropy
from tensorpress.methods.blockwise import quantize_blockwise
from tensorpress.methods.lossless import compress
from tensorpress.methods.lowrank import LowRankTensor

HERE = Path(__file__).parent
#: Stream shape of every golden written here (the library defaults may change; these may not).
LANES = 8
CHUNK_SIZE = 1 << 18
ALIGN = 64

#: Must-decode files kept as an earlier writer wrote them (not regenerated): ``v1-ok-streams.tpz``
#: holds ``golden_tensors`` with every tensor as plane streams, written before ``verbatim``;
#: ``v1-ok-json-header.tpz`` is ``v1-ok.tpz`` as version 1.0 wrote it (plain JSON header).
#: ``stream-v1-*.tpe`` are the entropy streams of version 1 (u32 lane lengths, nibble Huffman
#: tables), written by the version-1 writer from the same data and options as ``stream-v2-*``.
FROZEN = frozenset(
    {"v1-ok-streams.tpz", "v1-ok-json-header.tpz"}
    | {f"stream-v1-{codec}.tpe" for codec in entropy.CODECS}
    | {"stream-v1-huffman-own-tables.tpe"}
)

#: Must-fail golden file -> (error class, fragment of its message).
MUST_FAIL: dict[str, tuple[str, str]] = {
    "v1-bad-magic.tpz": ("FormatError", "magic"),
    "v1-future-major.tpz": ("FormatError", "version 2"),
    "v1-reserved-flag.tpz": ("FormatError", "reserved"),
    "v1-oversized-header.tpz": ("FormatError", "header length"),
    "v1-header-not-zlib.tpz": ("FormatError", "not a valid zlib stream"),
    "v1-header-zlib-trailing.tpz": ("FormatError", "after its zlib stream"),
    "v1-truncated.tpz": ("FormatError", "truncated"),
    "v1-preamble-crc.tpz": ("ChecksumError", "preamble"),
    "v1-header-flip.tpz": ("ChecksumError", "header"),
    "v1-payload-flip.tpz": ("ChecksumError", "checksum"),
    "v1-trailing-bytes.tpz": ("FormatError", "describes"),
    "v1-tiling.tpz": ("FormatError", "tiling"),
    "v1-header-padding.tpz": ("FormatError", "header padding"),
    "v1-payload-padding.tpz": ("CorruptDataError", "padding after"),
    "v1-empty-name.tpz": ("FormatError", "non-empty"),
    "v1-unknown-method.tpz": ("FormatError", "unknown tensor method"),
    "v1-deep-json.tpz": ("FormatError", "nested deeper"),
    "v1-infinity.tpz": ("FormatError", "Infinity"),
    "v1-summary-mismatch.tpz": ("FormatError", "contradicts"),
    "v1-lossless-unknown-transform.tpz": ("FormatError", "transform"),
    "v1-lossless-dtype-swap.tpz": ("FormatError", "transform"),
    "v1-lossless-string-offset.tpz": ("FormatError", "offset"),
    "v1-lossless-plane-gap.tpz": ("FormatError", "does not follow"),
    "v1-lossless-int4-padding.tpz": ("CorruptDataError", "padding nibble"),
    "v1-lossless-verbatim-shape.tpz": ("FormatError", "stored stream of 96 bytes"),
    "v1-blockwise-scale-flip.tpz": ("ChecksumError", "checksum"),
    "v1-blockwise-scale-inf.tpz": ("CorruptDataError", "scale"),
    "v1-blockwise-code-overflow.tpz": ("CorruptDataError", "exceeds"),
    "v1-blockwise-huge-block.tpz": ("FormatError", "block_size"),
    "v1-blockwise-unknown-scheme.tpz": ("FormatError", "scheme"),
    "v1-lowrank-rank-mismatch.tpz": ("FormatError", "factor u"),
    "v1-lowrank-nested.tpz": ("FormatError", "method"),
    "v1-video-bad-device.tpz": ("FormatError", "device"),
    "v1-video-superfluous-tiles.tpz": ("FormatError", "tiles"),
    "v1-video-frame-table.tpz": ("CorruptDataError", "frame-size table"),
    "v1-trailing-truncated.tpz": ("FormatError", "truncated"),
    "v1-trailing-location-crc.tpz": ("ChecksumError", "header offset"),
    "v1-trailing-reserved.tpz": ("FormatError", "reserved preamble bytes"),
    "v1-trailing-header-flip.tpz": ("ChecksumError", "header"),
    "v1-trailing-gap.tpz": ("FormatError", "describes"),
    "stream-v2-future-version.tpe": ("FormatError", "version 3"),
    "stream-v2-lane-length-overlong.tpe": ("CorruptDataError", "shortest form"),
    "stream-v2-huffman-table-trailing.tpe": ("FormatError", "its lengths take"),
}


def golden_tensors() -> dict[str, np.ndarray]:
    """Deterministic content, independent of any random generator's implementation."""
    i = np.arange(600, dtype=np.int64)
    wave = np.sin(i * 0.37) * np.exp(-(i % 50) / 20.0)
    return {
        "fp32": wave.astype(np.float32).reshape(20, 30),
        "bf16": wave.astype(ml_dtypes.bfloat16),
        "e4m3": (wave * 300).astype(ml_dtypes.float8_e4m3fn).reshape(3, 200),
        "int8": ((i * 7919) % 256 - 128).astype(np.int8)[:100],
        "int4": ((i % 13) - 6).astype(ml_dtypes.int4)[:77],
        "scalar": np.array(2.5, dtype=np.float16),
        "empty": np.zeros((0, 5), dtype=np.float32),
    }


def method_sources() -> dict[str, np.ndarray]:
    """Deterministic float32 matrices for the lossy and factorized goldens."""
    r = np.arange(64, dtype=np.float64)[:, None]
    c = np.arange(64, dtype=np.float64)[None, :]
    picture = np.sin(r * 0.21 + c * 0.13) + 0.25 * np.cos(r * c * 0.01)
    k = np.arange(3, dtype=np.float64)
    return {
        "matrix": picture[:24, :40].astype(np.float32),
        "picture": picture.astype(np.float32),
        "u": np.cos(np.arange(24, dtype=np.float64)[:, None] * (k + 1) * 0.3).astype(np.float32),
        "v": np.sin(k[:, None] * 0.7 + np.arange(40, dtype=np.float64)[None, :] * 0.11).astype(np.float32),
        "bias": np.linspace(-1, 1, 24, dtype=np.float32),
    }


def method_tensors() -> dict[str, Any]:
    """One stored tensor per (non-video) method and variant, every stream shape pinned."""
    src = method_sources()
    m = src["matrix"]

    def lossless(a: np.ndarray) -> Any:
        return compress(a, lanes=LANES, chunk_size=CHUNK_SIZE)

    pinned = {"lanes": LANES, "chunk_size": CHUNK_SIZE}
    return {
        "lossless": lossless(m),
        "lossless-int4-odd": lossless(((np.arange(9) % 13) - 6).astype(ml_dtypes.int4)),
        "lossless-verbatim": lossless(src["bias"]),
        "blockwise-rtn": quantize_blockwise(m, 4, 16, layout="packed"),
        "blockwise-rtn-coded": quantize_blockwise(m, 3, 8, layout="huffman", **pinned),
        "blockwise-tender": quantize_blockwise(m, 6, 4, scheme="tender-group", layout="qlc", **pinned),
        "lowrank": LowRankTensor(
            "float32", (24, 40), 3, lossless(src["u"]), lossless(src["v"]), lossless(src["bias"])
        ),
    }


def video_tensor() -> Any:
    """A lossless AV1 picture: its decoded values are exact (quantization only), its bitstream
    is the encoder library's."""
    from tensorpress import video

    return video.encode(method_sources()["picture"], codec="av1", lossless=True, backend="pyav")


def golden_stream_data() -> bytes:
    return bytes((k * k + k // 7) % 23 for k in range(5000))


def golden_own_table_data() -> bytes:
    """Two halves with different statistics: chunks of the second half carry their own table."""
    first = bytes((k * k + k // 7) % 23 for k in range(8192))
    second = bytes(200 + (k * 5 + k // 3) % 53 for k in range(8192))
    return first + second


# --- container surgery (every checksum recomputed) -------------------------------------------


def layout(data: bytes) -> tuple[int, int, int]:
    """(header start, D, E) of a container: its payloads tile bytes [D, E)."""
    flags, h = struct.unpack_from("<IQ", data, 12)
    if flags & 2:  # version 1.2 trailing header: it starts where the payloads end
        (at,) = struct.unpack_from("<Q", data, 32)
        return at, 64, at
    return 32, -(-(32 + h) // ALIGN) * ALIGN, len(data)


def header_json(data: bytes) -> bytes:
    """The JSON header of a container (inflated where preamble flag bit 0 says it is zlib)."""
    (flags, h) = struct.unpack_from("<IQ", data, 12)
    at = layout(data)[0]
    stored = data[at : at + h]
    return zlib.decompress(stored) if flags & 1 else stored


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(header document, payload region [D, E)) of a container."""
    _, start, end = layout(data)
    return json.loads(header_json(data)), data[start:end]


def header_first(data: bytes) -> bytes:
    """A 1.2 (trailing header) container rewritten as version 1.1 wrote it: the same stored
    header first, the same payload region after it."""
    at, start, end = layout(data)
    (h,) = struct.unpack_from("<Q", data, 16)
    return build(None, data[start:end], header_text=data[at : at + h], zlib_flag=True)


def with_location(
    data: bytes, *, offset: int | None = None, reserved: bytes = b"", crc: bool = True
) -> bytes:
    """A 1.2 container with bytes [32, 64) (header offset, reserved, CRC) changed."""
    location = bytearray(data[32:64])
    if offset is not None:
        struct.pack_into("<Q", location, 0, offset)
    location[8 : 8 + len(reserved)] = reserved
    if crc:
        struct.pack_into("<I", location, 28, _core.crc32c(bytes(location[:28])))
    return data[:32] + bytes(location) + data[64:]


def build(
    doc: Any,
    region: bytes,
    *,
    header_text: bytes | None = None,
    pad: bytes = b"",
    zlib_flag: bool = False,
    trailing: bool = False,
) -> bytes:
    """A container with header ``doc`` (or raw ``header_text``, stored as given) over payload
    ``region``, every CRC recomputed. By default in the leading layout: plain JSON (version 1.0)
    unless ``zlib_flag`` sets preamble flag bit 0 (1.1); ``pad`` overrides the start of the header
    padding. ``trailing``: the 1.2 layout (flag bit 1, the header after the payloads)."""
    header = header_text if header_text is not None else json.dumps(doc, separators=(",", ":")).encode()
    flags = (1 if zlib_flag else 0) | (2 if trailing else 0)
    minor = 2 if trailing else 1 if zlib_flag else 0
    head = struct.pack("<8sHHIQI", b"\x89TPZ\r\n\x1a\n", 1, minor, flags, len(header), _core.crc32c(header))
    preamble = head + struct.pack("<I", _core.crc32c(head))
    if trailing:
        location = struct.pack("<Q20s", 64 + len(region), bytes(20))
        return preamble + location + struct.pack("<I", _core.crc32c(location)) + region + header
    padding = bytearray(-(32 + len(header)) % ALIGN)
    padding[: len(pad)] = pad
    return preamble + header + bytes(padding) + region


def with_entry(data: bytes, change: Callable[[dict[str, Any]], None], index: int = 0) -> bytes:
    doc, region = split(data)
    change(doc["tensors"][index])
    return build(doc, region)


def with_payload(
    data: bytes, change: Callable[[bytearray], None], *, crc: bool = True, index: int = 0
) -> bytes:
    """Change tensor ``index``'s payload in place; recompute its CRC unless ``crc`` is False."""
    doc, region = split(data)
    entry = doc["tensors"][index]
    payload = bytearray(region[entry["offset"] : entry["offset"] + entry["length"]])
    change(payload)
    if crc:
        entry["crc32c"] = _core.crc32c(bytes(payload))
    body = region[: entry["offset"]] + bytes(payload) + region[entry["offset"] + entry["length"] :]
    return build(doc, body)


def saved(tensors: dict[str, Any], out: Path, name: str) -> bytes:
    tp.save(tensors, out / name)
    return (out / name).read_bytes()


def write_streams(out: Path) -> None:
    for codec in entropy.CODECS:
        (out / f"stream-v2-{codec}.tpe").write_bytes(
            entropy.encode(golden_stream_data(), codec, lanes=8, chunk_size=2048)
        )
    (out / "stream-v2-huffman-own-tables.tpe").write_bytes(
        entropy.encode(golden_own_table_data(), "huffman", lanes=8, chunk_size=4096)
    )
    blob = bytearray((out / "stream-v2-huffman.tpe").read_bytes())
    future = bytearray(blob)
    future[4] = 3
    (out / "stream-v2-future-version.tpe").write_bytes(reseal_stream(future))
    # Chunk 0's first lane length in two bytes (0x80 | low bits, 0x00): the same value, not in
    # its shortest form.
    table_len = struct.unpack_from("<I", blob, 20)[0]
    chunks = _stream_chunks(blob)
    at, length = chunks[0]
    assert blob[at] == 1, "chunk 0 of the golden Huffman stream is coded with the stream's table"
    chunk = blob[at : at + length]
    chunk[1:2] = bytes([chunk[1] | 0x80, 0])
    (out / "stream-v2-lane-length-overlong.tpe").write_bytes(_with_chunks(blob, [bytes(chunk)]))
    # One zero byte after the stream's Huffman table, declared in its length.
    index_at = 24 + table_len
    longer = blob[:index_at] + b"\0" + blob[index_at:]
    struct.pack_into("<I", longer, 20, table_len + 1)
    (out / "stream-v2-huffman-table-trailing.tpe").write_bytes(reseal_stream(longer))


def _stream_chunks(blob: bytes | bytearray) -> list[tuple[int, int]]:
    """(offset, stored length) of each chunk of an entropy stream (docs/format.md §1)."""
    table_len, n, c = struct.unpack_from("<I", blob, 20)[0], *struct.unpack_from("<QI", blob, 8)
    m, index_at = -(-n // c), 24 + table_len
    at, chunks = index_at + 8 * m + 4, []
    for i in range(m):
        length = struct.unpack_from("<I", blob, index_at + 8 * i)[0]
        chunks.append((at, length))
        at += length
    return chunks


def _with_chunks(blob: bytes | bytearray, first: list[bytes]) -> bytes:
    """``blob`` with its first chunks replaced by ``first``; index and CRCs recomputed."""
    table_len = struct.unpack_from("<I", blob, 20)[0]
    chunks = _stream_chunks(blob)
    stored = first + [bytes(blob[at : at + n]) for at, n in chunks[len(first) :]]
    head = bytearray(blob[: 24 + table_len])
    for chunk in stored:
        head += struct.pack("<II", len(chunk), _core.crc32c(chunk))
    head += struct.pack("<I", _core.crc32c(bytes(head)))
    return bytes(head) + b"".join(stored)


def reseal_stream(blob: bytes | bytearray) -> bytes:
    """Recompute an entropy stream's chunk CRCs and header CRC."""
    return _with_chunks(blob, [])


def write_container_goldens(out: Path) -> None:
    stored = {k: compress(v, lanes=LANES, chunk_size=CHUNK_SIZE) for k, v in golden_tensors().items()}
    tp.save(stored, out / "v1-ok.tpz", metadata={"purpose": "golden"})
    ok = (out / "v1-ok.tpz").read_bytes()
    # The same file as version 1.1 wrote it (header first); the must-fail files of that layout
    # are made from it.
    lead = header_first(ok)
    (out / "v1-ok-header-first.tpz").write_bytes(lead)
    # The last tensor with a payload: its first byte flipped, its CRC left as it was.
    last_coded = max(i for i, e in enumerate(split(ok)[0]["tensors"]) if e["length"])
    # An empty container ending right after its header (no padding): allowed by §2.
    empty_header = b'{"tensors":[],"metadata":{}}'
    (out / "v1-empty.tpz").write_bytes(build(None, b"", header_text=empty_header)[: 32 + len(empty_header)])

    def with_preamble(
        magic: bytes = b"", major: int | None = None, flags: int = 0, header_len: int | None = None
    ) -> bytes:
        fields = list(struct.unpack_from("<8sHHIQII", lead))
        if magic:
            fields[0] = magic
        if major is not None:
            fields[1] = major
        fields[3] = flags
        if header_len is not None:
            fields[4] = header_len
        head = struct.pack("<8sHHIQI", *fields[:6])
        return head + struct.pack("<I", _core.crc32c(head)) + lead[32:]

    doc, region = split(ok)
    header_at = layout(ok)[0]

    tiling_doc = json.loads(json.dumps(doc))
    tiling_doc["tensors"][1]["offset"] += 1
    deep = b'{"tensors":[],"metadata":{},"x":' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    bad = {
        "bad-magic": with_preamble(magic=b"\x89TPZ\r\n\x1a\x00"),
        "future-major": with_preamble(major=2),
        "reserved-flag": with_preamble(flags=1 << 7),
        "oversized-header": with_preamble(header_len=1 << 40),
        # Flag bit 0 set over a plain JSON header; then a good zlib header with bytes after it.
        "header-not-zlib": build(doc, region, header_text=_header_text(doc), zlib_flag=True),
        "header-zlib-trailing": build(
            doc, region, header_text=zlib.compress(_header_text(doc), 9) + b"\0", zlib_flag=True
        ),
        "truncated": lead[: len(lead) - 10],
        "preamble-crc": lead[:28] + bytes([lead[28] ^ 1]) + lead[29:],
        "header-flip": lead[:40] + bytes([lead[40] ^ 4]) + lead[41:],
        "payload-flip": with_payload(ok, _flip_first_byte, crc=False, index=last_coded),
        "trailing-bytes": lead + b"\0" * 64,
        "tiling": build(tiling_doc, region),
        "header-padding": build(doc, region, pad=b"\0\0\x01"),
        "payload-padding": _payload_padding(doc, region),
        "empty-name": with_entry(ok, lambda e: e.update(name="")),
        "unknown-method": with_entry(ok, lambda e: e.update(method="lossless-v9")),
        "deep-json": build(None, b"", header_text=deep),
        "infinity": build(
            None, region, header_text=_header_text(doc).replace(b'"offset":0', b'"offset":Infinity', 1)
        ),
        "summary-mismatch": with_entry(ok, lambda e: e.update(dtype="float16")),
        # Version 1.2 (trailing header), as tp.save writes it.
        "trailing-truncated": ok[: len(ok) - 10],
        "trailing-location-crc": with_location(ok, offset=header_at + 64, crc=False),
        "trailing-reserved": with_location(ok, reserved=b"\x01"),
        "trailing-header-flip": ok[: header_at + 5] + bytes([ok[header_at + 5] ^ 4]) + ok[header_at + 6 :],
        # 64 more zero bytes after the last payload, the header offset moved past them.
        "trailing-gap": with_location(ok[:header_at] + bytes(64) + ok[header_at:], offset=header_at + 64),
    }
    for name, data in bad.items():
        (out / f"v1-{name}.tpz").write_bytes(data)


def _flip_first_byte(payload: bytearray) -> None:
    payload[0] ^= 0x20


def _header_text(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _payload_padding(doc: dict[str, Any], region: bytes) -> bytes:
    """A non-zero byte in the zero gap after the first payload (covered by no payload CRC)."""
    first = doc["tensors"][0]
    at = first["offset"] + first["length"]
    assert at % ALIGN, "the first golden payload must leave a gap"
    return build(doc, region[:at] + b"\x01" + region[at + 1 :])


def write_method_goldens(out: Path, video: bool = True) -> None:
    ok = saved(method_tensors(), out, "v1-methods-ok.tpz")
    names = [e["name"] for e in split(ok)[0]["tensors"]]
    at = {n: i for i, n in enumerate(names)}

    def entry(name: str, change: Callable[[dict[str, Any]], None]) -> bytes:
        return with_entry(ok, change, at[name])

    def params(name: str, change: Callable[[dict[str, Any]], None]) -> bytes:
        return entry(name, lambda e: change(e["params"]))

    def payload(name: str, change: Callable[[bytearray], None], crc: bool = True) -> bytes:
        return with_payload(ok, change, crc=crc, index=at[name])

    def set_fp16(at_byte: int, value: float) -> Callable[[bytearray], None]:
        def change(p: bytearray) -> None:
            codes_length = split(ok)[0]["tensors"][at["blockwise-rtn"]]["params"]["codes_length"]
            p[codes_length + at_byte : codes_length + at_byte + 2] = np.float16(value).tobytes()

        return change

    def plane_gap(p: dict[str, Any]) -> None:
        p["planes"][1]["offset"] += 1

    def overflow_code(p: bytearray) -> None:
        p[0] = 0xFF  # two 4-bit codes of 15 = 2^4 - 1 > 2·qmax

    def nested(p: dict[str, Any]) -> None:
        p["factors"][0]["method"] = "lowrank"

    bad = {
        "lossless-unknown-transform": params("lossless", lambda p: p.update(transform="fp32-exponent-v2")),
        "lossless-dtype-swap": params("lossless", lambda p: p.update(dtype="float16")),
        "lossless-string-offset": params("lossless", lambda p: p["planes"][0].update(offset="0")),
        "lossless-plane-gap": params("lossless", plane_gap),
        "lossless-int4-padding": _int4_padding(ok, at["lossless-int4-odd"]),
        "lossless-verbatim-shape": params("lossless-verbatim", lambda p: p.update(shape=[25])),
        "blockwise-scale-flip": payload("blockwise-rtn", set_fp16(2, 0.5), crc=False),
        "blockwise-scale-inf": payload("blockwise-rtn", set_fp16(2, float("inf"))),
        "blockwise-code-overflow": payload("blockwise-rtn", overflow_code),
        "blockwise-huge-block": params("blockwise-rtn", lambda p: p.update(block_size=1 << 40)),
        "blockwise-unknown-scheme": params("blockwise-tender", lambda p: p.update(scheme="tender-group-v2")),
        "lowrank-rank-mismatch": params("lowrank", lambda p: p.update(rank=2)),
        "lowrank-nested": params("lowrank", nested),
    }
    for name, data in bad.items():
        (out / f"v1-{name}.tpz").write_bytes(data)
    if not video:
        return
    vok = saved({"video": video_tensor()}, out, "v1-video-ok.tpz")

    def superfluous(p: dict[str, Any]) -> None:
        p["layout"]["tiles_r"] += 1

    def frame_table(p: bytearray) -> None:
        p[0] ^= 1  # the first frame's size, off by one

    vbad = {
        "video-bad-device": with_entry(vok, lambda e: e["params"].update(device="cuda:0;")),
        "video-superfluous-tiles": with_entry(vok, lambda e: superfluous(e["params"])),
        "video-frame-table": with_payload(vok, frame_table),
    }
    for name, data in vbad.items():
        (out / f"v1-{name}.tpz").write_bytes(data)


def _int4_padding(ok: bytes, index: int) -> bytes:
    """The odd-length int4 tensor with its padding nibble set (its stream re-encoded)."""
    doc, region = split(ok)
    entry = doc["tensors"][index]
    packed = bytearray(entropy.decode(region[entry["offset"] : entry["offset"] + entry["length"]]).tobytes())
    packed[-1] |= 0x50
    stream = entropy.encode(bytes(packed), "raw", lanes=LANES, chunk_size=CHUNK_SIZE)
    entry["params"]["planes"][0].update(codec="raw", length=len(stream))
    entry["codec"] = "raw"
    entry["length"] = len(stream)
    entry["crc32c"] = _core.crc32c(stream)
    # Re-tile the payloads after this one.
    payloads = [region[e["offset"] : e["offset"] + e["length"]] for e in doc["tensors"]]
    payloads[index] = stream
    body = b""
    for e, p in zip(doc["tensors"], payloads, strict=True):
        body += b"\0" * (-len(body) % ALIGN)
        e["offset"] = len(body)
        body += p
    return build(doc, body)


def main(out: Path = HERE, video: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_container_goldens(out)
    write_streams(out)
    write_method_goldens(out, video)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
