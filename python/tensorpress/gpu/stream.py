"""Host side of the GPU decode: parse, validate and checksum an entropy stream (docs/format.md §1)
and lay it out as flat index arrays a kernel can follow without any further checks.

Everything a kernel would otherwise have to trust is settled here, on the CPU, before a byte is
uploaded or a buffer proportional to the declared length is allocated: the fixed header fields,
the header CRC32C, every code table (the stream's and each chunk's own), the chunk index, every
chunk's CRC32C, each chunk's mode and, for coded chunks, that the lane lengths tile the chunk.
What is left to the kernel is only what needs the decode itself: invalid codes and lanes that are
not consumed to their last byte. The errors are the Rust decoder's, class for class: a malformed
header or stream table is a :class:`FormatError`, a checksum mismatch a :class:`ChecksumError`,
anything wrong inside a checksummed chunk a :class:`CorruptDataError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tensorpress import _core
from tensorpress.errors import ChecksumError, CorruptDataError, FormatError

MAGIC = b"\x89TPE"
#: Stream versions read: 2 (written now: varint lane lengths, delta-coded Huffman tables) and 1.
VERSIONS = (1, 2)
VERSION = max(VERSIONS)
FIXED_HEADER_BYTES = 24
MAX_LANES = 32
MIN_CHUNK_SIZE = 1 << 10
MAX_CHUNK_SIZE = 1 << 24
MAX_TABLE_BYTES = 265
MAX_DECODED_LEN = 1 << 40
INDEX_ENTRY_BYTES = 8
#: Longest lane-length varint of version 2 (§1.1).
MAX_VARINT_BYTES = 5

#: Codec ids of the stream header.
RAW, QLC, HUFFMAN, EXPGOLOMB, EXPGOLOMB_RANK, DLC = range(6)
CODEC_NAMES = {RAW: "raw", QLC: "qlc", HUFFMAN: "huffman", EXPGOLOMB: "expgolomb",
               EXPGOLOMB_RANK: "expgolomb-rank", DLC: "dlc"}  # fmt: skip

MODE_RAW, MODE_CODED, MODE_CONSTANT, MODE_OWN_TABLE = 0, 1, 2, 3
MAX_AREA_WIDTH = 8
MAX_EXP_GOLOMB_ORDER = 8
QLC_PREFIX_BITS = 3
DLC_PREFIX_BITS = 1


@dataclass(frozen=True)
class CodeTable:
    """A parsed, validated code table of one codec (the fields that codec uses)."""

    codec: int
    huffman_lengths: np.ndarray | None = None  # (256,) uint8, 0 = absent
    prefix_bits: int = 0  # QLC/DLC
    widths: tuple[int, ...] = ()  # QLC/DLC area widths k_i
    rank_to_symbol: np.ndarray | None = None  # (256,) uint8 permutation (QLC/DLC/EG-rank)
    order: int = 0  # Exp-Golomb k


@dataclass(frozen=True)
class StreamPlan:
    """A validated stream, as flat arrays: where each chunk's bytes are and where they go.

    ``tables[0]`` is the stream's table, the rest are the distinct own tables of chunks (mode 3).
    Stored chunks (raw or constant) and coded chunks are listed separately, each in stream order.
    Offsets into the blob (``*_src``, ``lane_start``) and into the output (``*_dst``) are int64.
    """

    codec: int
    lanes: int
    decoded_len: int
    chunk_size: int
    n_chunks: int
    tables: list[CodeTable]
    stored_index: np.ndarray  # chunk number of each stored chunk
    stored_src: np.ndarray  # raw: first payload byte; constant: the repeated byte
    stored_dst: np.ndarray
    stored_len: np.ndarray
    stored_constant: np.ndarray  # int32, 1 for constant chunks
    coded_index: np.ndarray  # chunk number of each coded chunk
    coded_dst: np.ndarray
    coded_len: np.ndarray
    coded_table: np.ndarray  # int32 index into ``tables``
    lane_start: np.ndarray  # (coded chunks, lanes) int64
    lane_len: np.ndarray  # (coded chunks, lanes) int64


def as_stream_bytes(blob: Any) -> np.ndarray:
    """The stream as a flat uint8 numpy array (no copy for contiguous inputs)."""
    if isinstance(blob, np.ndarray):
        if blob.dtype.hasobject:
            raise FormatError("a tensorpress stream must be bytes-like, got an object array")
        return np.ascontiguousarray(blob).reshape(-1).view(np.uint8)
    if isinstance(blob, bytes | bytearray | memoryview):
        view = memoryview(blob)
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        return np.frombuffer(view.cast("B") if view.format != "B" or view.ndim != 1 else view, np.uint8)
    raise FormatError(f"a tensorpress stream must be bytes-like, got {type(blob).__name__}")


def _u32(buf: np.ndarray, at: int) -> int:
    return int(buf[at : at + 4].view("<u4")[0])


def parse_table(codec: int, raw: bytes, version: int = VERSION) -> CodeTable:
    """Parse and validate a code table of ``codec`` (FormatError on any violation of §1.2)."""
    if codec == RAW:
        if raw:
            raise FormatError("raw stream carries a code table")
        return CodeTable(RAW)
    if codec == HUFFMAN:
        # One parser for both decoders: the Rust stream reader's, checks included (lengths ≤ 12,
        # the bit string used to its last byte, Kraft), a FormatError otherwise.
        lengths = np.frombuffer(_core.huffman_lengths(raw, version), np.uint8)
        return CodeTable(HUFFMAN, huffman_lengths=lengths)
    if codec in (QLC, DLC):
        expected_p = QLC_PREFIX_BITS if codec == QLC else DLC_PREFIX_BITS
        if not raw:
            raise FormatError("empty QLC table")
        p = raw[0]
        if p != expected_p:
            raise FormatError(f"QLC table has {p} prefix bits, expected {expected_p}")
        areas = 1 << p
        if len(raw) != 1 + areas + 256:
            raise FormatError(f"QLC table is {len(raw)} bytes, expected {1 + areas + 256}")
        widths = tuple(raw[1 : 1 + areas])
        if any(k > MAX_AREA_WIDTH for k in widths):
            raise FormatError("QLC area width above 8")
        if sum(1 << k for k in widths) < 256:
            raise FormatError("QLC areas do not cover the 256 ranks")
        ranks = _permutation(raw[1 + areas :])
        return CodeTable(codec, prefix_bits=p, widths=widths, rank_to_symbol=ranks)
    if codec in (EXPGOLOMB, EXPGOLOMB_RANK):
        expected = 257 if codec == EXPGOLOMB_RANK else 1
        if len(raw) != expected:
            raise FormatError(f"Exp-Golomb table is {len(raw)} bytes, expected {expected}")
        if raw[0] > MAX_EXP_GOLOMB_ORDER:
            raise FormatError(f"Exp-Golomb order {raw[0]} above 8")
        ranks = _permutation(raw[1:]) if codec == EXPGOLOMB_RANK else np.arange(256, dtype=np.uint8)
        return CodeTable(codec, order=raw[0], rank_to_symbol=ranks)
    raise FormatError(f"unknown codec id {codec}")


def _permutation(raw: bytes) -> np.ndarray:
    ranks = np.frombuffer(raw, np.uint8).copy()
    if np.unique(ranks).size != 256:
        raise FormatError("rank table is not a permutation of the 256 byte values")
    return ranks


def _header(buf: np.ndarray, max_size: int | None) -> tuple[int, int, int, int, int, int, int]:
    """(version, codec, lanes, decoded_len, chunk_size, table_len, n_chunks), every field
    validated."""
    if buf.size < FIXED_HEADER_BYTES + 4:
        raise FormatError(f"stream is {buf.size} bytes, shorter than any header")
    if buf[:4].tobytes() != MAGIC:
        raise FormatError("not a tensorpress entropy stream (bad magic)")
    version = int(buf[4])
    if version not in VERSIONS:
        readable = f"{min(VERSIONS)}..={VERSION}"
        raise FormatError(f"stream version {version} is not supported (this build reads {readable})")
    codec, lanes, flags = int(buf[5]), int(buf[6]), int(buf[7])
    if codec not in CODEC_NAMES:
        raise FormatError(f"unknown codec id {codec}")
    if not 1 <= lanes <= MAX_LANES:
        raise FormatError(f"lane count {lanes} outside 1..={MAX_LANES}")
    if flags:
        raise FormatError(f"reserved flags set: {flags:#04x}")
    decoded_len = int(buf[8:16].view("<u8")[0])
    chunk_size, table_len = _u32(buf, 16), _u32(buf, 20)
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise FormatError(f"chunk size {chunk_size} outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}")
    if table_len > MAX_TABLE_BYTES:
        raise FormatError(f"code table of {table_len} bytes exceeds {MAX_TABLE_BYTES}")
    if decoded_len > MAX_DECODED_LEN:
        raise FormatError(f"declared length {decoded_len} exceeds the limit {MAX_DECODED_LEN}")
    if max_size is not None and decoded_len > max_size:
        raise FormatError(f"stream decodes to {decoded_len} bytes, more than max_size={max_size}")
    n_chunks = -(-decoded_len // chunk_size)
    index_at = FIXED_HEADER_BYTES + table_len
    if buf.size < index_at + n_chunks * (INDEX_ENTRY_BYTES + 2) + 4:
        raise FormatError(f"stream of {buf.size} bytes is too short for {n_chunks} chunks (truncated?)")
    return version, codec, lanes, decoded_len, chunk_size, table_len, n_chunks


def parse_stream(blob: Any, *, max_size: int | None = None) -> tuple[np.ndarray, StreamPlan]:
    """Validate ``blob`` completely (header, tables, index, every CRC32C, chunk framing) and
    return it as a uint8 array with its :class:`StreamPlan`."""
    buf = as_stream_bytes(blob)
    version, codec, lanes, decoded_len, chunk_size, table_len, n_chunks = _header(buf, max_size)
    index_at = FIXED_HEADER_BYTES + table_len
    crc_at = index_at + n_chunks * INDEX_ENTRY_BYTES
    if _core.crc32c(buf[:crc_at]) != _u32(buf, crc_at):
        raise ChecksumError("stream header checksum does not match")
    tables = [parse_table(codec, buf[FIXED_HEADER_BYTES:index_at].tobytes(), version)]
    table_ids: dict[bytes, int] = {}
    index = buf[index_at:crc_at].view("<u4").reshape(n_chunks, 2).astype(np.int64)
    starts = crc_at + 4 + np.concatenate(([0], np.cumsum(index[:, 0])))
    if int(starts[-1]) != buf.size:
        raise FormatError(
            f"chunks end at byte {int(starts[-1])} but the stream has {buf.size} bytes (truncated or padded)"
        )
    stored: list[tuple[int, int, int, int, int]] = []
    coded: list[tuple[int, int, int, int]] = []
    lane_rows: list[np.ndarray] = []
    for i in range(n_chunks):
        at, length, crc = int(starts[i]), int(index[i, 0]), int(index[i, 1])
        chunk = buf[at : at + length]
        if _core.crc32c(chunk) != crc:
            raise ChecksumError(f"chunk {i} checksum does not match")
        dst = i * chunk_size
        out_len = min(chunk_size, decoded_len - dst)

        def corrupt(what: str, i: int = i) -> CorruptDataError:
            return CorruptDataError(f"chunk {i}: {what}")

        if length == 0:
            raise corrupt("empty")
        mode = int(chunk[0])
        if mode == MODE_RAW and length - 1 == out_len:
            stored.append((i, at + 1, dst, out_len, 0))
        elif mode == MODE_CONSTANT and length == 2:
            stored.append((i, at + 1, dst, out_len, 1))
        elif mode in (MODE_CODED, MODE_OWN_TABLE):
            body_at, table_id = at + 1, 0
            if codec == RAW:
                raise corrupt(
                    "coded chunk in a raw stream" if mode == MODE_CODED else "own-table chunk in a raw stream"
                )
            if mode == MODE_OWN_TABLE:
                if length < 3:
                    raise corrupt("own table length truncated")
                own_len = int(chunk[1]) | int(chunk[2]) << 8
                if own_len > MAX_TABLE_BYTES or length - 3 < own_len:
                    raise corrupt("own table truncated or too long")
                own = chunk[3 : 3 + own_len].tobytes()
                if own not in table_ids:  # equal tables share one decode table
                    try:
                        tables.append(parse_table(codec, own, version))
                    except FormatError as exc:
                        raise corrupt(str(exc)) from None
                    table_ids[own] = len(tables) - 1
                body_at, table_id = at + 3 + own_len, table_ids[own]
            lane_rows.append(_split_lanes(buf, body_at, at + length, lanes, version, corrupt))
            coded.append((i, dst, out_len, table_id))
        elif mode in (MODE_RAW, MODE_CONSTANT):
            raise corrupt("stored length does not match the decoded length")
        else:
            raise corrupt(f"unknown chunk mode {mode}")
    s = np.array(stored, dtype=np.int64).reshape(-1, 5)
    c = np.array(coded, dtype=np.int64).reshape(-1, 4)
    lane_info = np.stack(lane_rows) if lane_rows else np.zeros((0, 2, lanes), np.int64)
    plan = StreamPlan(
        codec=codec,
        lanes=lanes,
        decoded_len=decoded_len,
        chunk_size=chunk_size,
        n_chunks=n_chunks,
        tables=tables,
        stored_index=s[:, 0].copy(),
        stored_src=s[:, 1].copy(),
        stored_dst=s[:, 2].copy(),
        stored_len=s[:, 3].copy(),
        stored_constant=s[:, 4].astype(np.int32),
        coded_index=c[:, 0].copy(),
        coded_dst=c[:, 1].copy(),
        coded_len=c[:, 2].copy(),
        coded_table=c[:, 3].astype(np.int32),
        lane_start=np.ascontiguousarray(lane_info[:, 0, :]),
        lane_len=np.ascontiguousarray(lane_info[:, 1, :]),
    )
    return buf, plan


def _split_lanes(
    buf: np.ndarray, body_at: int, end: int, lanes: int, version: int, corrupt: Any
) -> np.ndarray:
    """(2, lanes) int64: each lane's first byte in the stream and its length; the lanes must tile
    the body after the lane-length table exactly."""
    if version == 1:
        data_at = body_at + 4 * lanes
        if data_at > end:
            raise corrupt("jump table truncated")
        lengths = buf[body_at:data_at].view("<u4").astype(np.int64)
    else:
        lengths, data_at = _lane_lengths(buf, body_at, end, lanes, corrupt)
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    if int(offsets[-1]) > end - data_at:
        raise corrupt("lane runs past the chunk")
    if int(offsets[-1]) != end - data_at:
        raise corrupt("bytes after the last lane")
    return np.stack((data_at + offsets[:-1], lengths))


def _lane_lengths(buf: np.ndarray, at: int, end: int, lanes: int, corrupt: Any) -> tuple[np.ndarray, int]:
    """Version 2's lane lengths (§1.1), read by the Rust stream reader's parser (one parser for
    both decoders). Returns the lengths and where the first lane starts."""
    # A table takes at most MAX_VARINT_BYTES per lane: only that much is copied out.
    table = buf[at : min(end, at + MAX_VARINT_BYTES * lanes)].tobytes()
    try:
        lengths, used = _core.lane_lengths(table, lanes)
    except CorruptDataError as exc:
        raise corrupt(str(exc)) from None
    return np.array(lengths, np.int64), at + used
