"""Regenerates the golden files. Run only when the format version changes on purpose:

    .venv/bin/python tests/golden/make_golden.py

The must-decode files pin the format: a reader change that cannot read them is a format break.
"""

from __future__ import annotations

import struct
from pathlib import Path

import ml_dtypes
import numpy as np

import tensorpress as tp
from tensorpress import _core, entropy

HERE = Path(__file__).parent


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


def golden_stream_data() -> bytes:
    return bytes((k * k + k // 7) % 23 for k in range(5000))


def golden_own_table_data() -> bytes:
    """Two halves with different statistics: chunks of the second half carry their own table."""
    first = bytes((k * k + k // 7) % 23 for k in range(8192))
    second = bytes(200 + (k * 5 + k // 3) % 53 for k in range(8192))
    return first + second


def write_streams() -> None:
    for codec in entropy.CODECS:
        (HERE / f"stream-v1-{codec}.tpe").write_bytes(
            entropy.encode(golden_stream_data(), codec, lanes=8, chunk_size=2048)
        )
    (HERE / "stream-v1-huffman-own-tables.tpe").write_bytes(
        entropy.encode(golden_own_table_data(), "huffman", lanes=8, chunk_size=4096)
    )


def main() -> None:
    tp.save(golden_tensors(), HERE / "v1-ok.tpz", metadata={"purpose": "golden"})
    write_streams()
    ok = (HERE / "v1-ok.tpz").read_bytes()

    def with_preamble(
        magic: bytes = b"", major: int | None = None, flags: int = 0, header_len: int | None = None
    ) -> bytes:
        fields = list(struct.unpack_from("<8sHHIQII", ok))
        if magic:
            fields[0] = magic
        if major is not None:
            fields[1] = major
        fields[3] = flags
        if header_len is not None:
            fields[4] = header_len
        head = struct.pack("<8sHHIQI", *fields[:6])
        return head + struct.pack("<I", _core.crc32c(head)) + ok[32:]

    bad = {
        "bad-magic": with_preamble(magic=b"\x89TPZ\r\n\x1a\x00"),
        "future-major": with_preamble(major=2),
        "reserved-flag": with_preamble(flags=1 << 7),
        "oversized-header": with_preamble(header_len=1 << 40),
        "truncated": ok[: len(ok) - 10],
        "preamble-crc": ok[:28] + bytes([ok[28] ^ 1]) + ok[29:],
        "header-flip": ok[:40] + bytes([ok[40] ^ 4]) + ok[41:],
        "payload-flip": ok[:-3] + bytes([ok[-3] ^ 0x20]) + ok[-2:],
        "trailing-bytes": ok + b"\0" * 64,
    }
    for name, data in bad.items():
        (HERE / f"v1-{name}.tpz").write_bytes(data)


if __name__ == "__main__":
    main()
