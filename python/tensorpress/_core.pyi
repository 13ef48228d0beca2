"""Type stub of the private Rust extension. Use :mod:`tensorpress.entropy` instead."""

from collections.abc import Sequence
from typing import Any

import numpy as np

# Any C-contiguous buffer of bytes; numpy arrays must be uint8 views.
Buffer = bytes | bytearray | memoryview | np.ndarray[Any, Any]

CODECS: list[str]
MAX_LANES: int
MIN_CHUNK_SIZE: int
MAX_CHUNK_SIZE: int
DEFAULT_CHUNK_SIZE: int
DEFAULT_LANES: int
MAX_THREADS: int
__version__: str

def encode(
    data: Buffer,
    codec: str = "qlc",
    lanes: int = 32,
    chunk_size: int = 262144,
    threads: int | None = None,
    compact: bool = False,
) -> bytes: ...
def decoded_len(blob: Buffer) -> int: ...
def decode_into(blob: Buffer, out: Buffer, threads: int | None = None, kernel: str = "auto") -> None: ...
def decode_chunk(blob: Buffer, index: int, out: Buffer, kernel: str = "auto") -> None: ...
def stream_info(blob: Buffer) -> dict[str, Any]: ...
def byte_histogram(data: Buffer) -> list[int]: ...
def stats(data: Buffer, threads: int | None = None) -> dict[str, Any]: ...
def kernels() -> list[str]: ...
def crc32c(data: Buffer, initial: int = 0) -> int: ...
def crc32c_many(buffers: Sequence[Buffer], threads: int | None = None) -> list[int]: ...
def huffman_lengths(table: bytes, version: int) -> bytes: ...
def lane_lengths(body: bytes, lanes: int) -> tuple[list[int], int]: ...
def json_depth(data: bytes) -> int: ...
def encode_planes(
    data: Buffer,
    transform: str,
    width: int,
    codec: str = "auto",
    candidates: list[str] = ...,
    min_saving: float = 0.01,
    lanes: int = 32,
    chunk_size: int = 262144,
    threads: int | None = None,
    plane_codecs: list[str] | None = None,
) -> tuple[list[str], list[int], bytes]: ...
def encode_planes_many(
    jobs: Sequence[tuple[Buffer, str, int, int, list[str] | None]],
    codec: str = "auto",
    candidates: list[str] = ...,
    min_saving: float = 0.01,
    chunk_size: int = 131072,
    threads: int | None = None,
) -> list[tuple[list[str], list[int], bytes]]: ...
def split_planes_into(
    data: Buffer, transform: str, width: int, planes: Sequence[Buffer], threads: int | None = None
) -> None: ...
def decode_planes_into(
    blobs: Sequence[Buffer],
    transform: str,
    width: int,
    out: Buffer,
    threads: int | None = None,
    kernel: str = "auto",
) -> None: ...
def decode_many(
    items: Sequence[tuple[Sequence[Buffer], str, int, Buffer]],
    threads: int | None = None,
    kernel: str = "auto",
) -> None: ...
def pool_threads() -> int: ...
