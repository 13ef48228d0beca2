"""Decode tables for the kernels, built on the host from validated code tables.

Huffman, QLC and DLC all become one kind of table: a lookup indexed by the next ``bits`` bits of
a lane (LSB-first), whose entry is ``symbol | length << 8``; length 0 marks a code no encoder
writes (an unused Huffman slot, a QLC rank ≥ 256). All tables of a stream share one width (the
longest code of any of them), so a chunk's table is row ``table_id`` of one 2-D array.
Exp-Golomb is decoded arithmetically; its tables are the order ``k`` and the value → byte map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tensorpress.gpu.stream import DLC, EXPGOLOMB, EXPGOLOMB_RANK, HUFFMAN, QLC, CodeTable


@dataclass(frozen=True)
class DecodeTables:
    """``lut``: (tables, 2^bits) int16 entries ``symbol | length << 8`` (lookup codecs), or
    (tables, 256) int16 value → symbol (Exp-Golomb); ``order``: (tables,) int32 Exp-Golomb k.
    At most 2^12 entries of 2 bytes per table: 8 KiB on the device per distinct table."""

    exp_golomb: bool
    bits: int
    lut: np.ndarray
    order: np.ndarray


def max_code_len(table: CodeTable) -> int:
    """Longest code of a lookup-decoded table (Huffman, QLC, DLC)."""
    if table.codec == HUFFMAN:
        assert table.huffman_lengths is not None
        return int(table.huffman_lengths.max())
    return table.prefix_bits + max(table.widths)


def huffman_lut(lengths: np.ndarray, bits: int) -> np.ndarray:
    """Canonical Huffman lookup of width ``bits`` (≥ every code length)."""
    lut = np.zeros(1 << bits, np.int32)
    present = np.flatnonzero(lengths)
    # Canonical order: by (length, symbol); codes assigned increasing MSB-first.
    order = present[np.lexsort((present, lengths[present]))]
    code, prev = 0, 0
    for s in order:
        length = int(lengths[s])
        code <<= length - prev
        reversed_code = int(f"{code:0{length}b}"[::-1], 2)
        lut[reversed_code :: 1 << length] = int(s) | length << 8
        code += 1
        prev = length
    return lut


def qlc_lut(table: CodeTable, bits: int) -> np.ndarray:
    """QLC/DLC lookup of width ``bits`` (≥ prefix bits + widest area)."""
    assert table.rank_to_symbol is not None
    p = table.prefix_bits
    widths = np.array(table.widths, np.int64)
    bases = np.concatenate(([0], np.cumsum(1 << widths)[:-1]))
    window = np.arange(1 << bits, dtype=np.int64)
    area = window & ((1 << p) - 1)
    k = widths[area]
    rank = bases[area] + ((window >> p) & ((1 << k) - 1))
    symbol = table.rank_to_symbol[np.minimum(rank, 255)].astype(np.int64)
    return np.where(rank < 256, symbol | (p + k) << 8, 0).astype(np.int32)


def build(tables: list[CodeTable]) -> DecodeTables:
    """One :class:`DecodeTables` for a stream's tables (all of one codec)."""
    codec = tables[0].codec
    if codec in (EXPGOLOMB, EXPGOLOMB_RANK):
        lut = np.stack([t.rank_to_symbol for t in tables]).astype(np.int16)  # type: ignore[misc]
        order = np.array([t.order for t in tables], np.int32)
        return DecodeTables(True, 8, lut, order)
    if codec not in (HUFFMAN, QLC, DLC):
        raise ValueError(f"codec {codec} has no decode table")
    bits = max(1, *(max_code_len(t) for t in tables))
    rows = [
        huffman_lut(t.huffman_lengths, bits) if t.huffman_lengths is not None else qlc_lut(t, bits)
        for t in tables
    ]
    return DecodeTables(False, bits, np.stack(rows).astype(np.int16), np.zeros(len(tables), np.int32))
