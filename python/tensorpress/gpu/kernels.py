"""Triton kernels of the GPU decode. Imported only when a decode runs (Triton is optional).

Two kernels, both reading the uploaded stream as it is stored:

- ``fill_stored_chunks``: raw chunks are copied and constant chunks filled, one program per
  (chunk, block of bytes).
- ``decode_coded_chunks``: one program per (coded chunk, lane group); its lanes decode side by
  side, each from its own bit position (lanes are independent bitstreams, symbol ``i`` of the
  chunk being in lane ``i mod L``). Each step reads three bytes at the lane's bit position
  (17 valid bits at any bit offset, enough for any valid code), decodes one symbol per lane with the
  chunk's table, and stores it.

Nothing is ever read or written outside its buffer, whatever the bytes say: a lane's reads are
masked to that lane's bytes (past its end they read zero, as the Rust reference does), table
indices are masked to the table, and outputs to the chunk. A code no encoder writes and a lane
not consumed to exactly its last byte are reported per program in an error-flag tensor
(``INVALID_CODE``, ``LANE_LENGTH``), which the host turns into a CorruptDataError.

Under ``TRITON_INTERPRET=1`` (set before Triton itself is first imported: Triton reads it when
each of its and our functions is decorated) the same kernels run on CPU tensors; that is how the
tests run them without a GPU.
"""

from __future__ import annotations

import triton
import triton.language as tl

#: Error flags a coded-chunk program reports (constexpr: kernels may only read such globals).
INVALID_CODE = tl.constexpr(1)
LANE_LENGTH = tl.constexpr(2)

#: True when the kernels were built for the interpreter (they then take CPU tensors).
INTERPRETED: bool = bool(triton.knobs.runtime.interpret)


@triton.jit
def fill_stored_chunks(blob, out, src, dst, length, constant, BLOCK: tl.constexpr):
    c = tl.program_id(0)
    offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    n = tl.load(length + c)
    inside = offs < n
    first = tl.load(src + c)
    is_constant = tl.load(constant + c) != 0
    read_at = tl.where(is_constant, first, first + offs)
    values = tl.load(blob + read_at, mask=inside, other=0)
    tl.store(out + tl.load(dst + c) + offs, values, mask=inside)


@triton.jit
def _exp_golomb(window, lut, table, order):
    """(symbol, length, invalid) of the Exp-Golomb code in the low bits of ``window``."""
    # Trailing zeros of the low 16 bits by halving (16 → 15: a run that long is invalid anyway).
    t = window & 0xFFFF
    zeros = tl.zeros_like(t)
    step = (t & 0xFF) == 0
    zeros += tl.where(step, 8, 0)
    t = tl.where(step, t >> 8, t)
    step = (t & 0xF) == 0
    zeros += tl.where(step, 4, 0)
    t = tl.where(step, t >> 4, t)
    step = (t & 0x3) == 0
    zeros += tl.where(step, 2, 0)
    t = tl.where(step, t >> 2, t)
    zeros += tl.where((t & 1) == 0, 1, 0)
    width = zeros + order
    # width ≥ 9 means a value ≥ 256: invalid, and the read below would need more bits than
    # the window holds, so clamp it (the result is discarded).
    safe_width = tl.minimum(width, 8)
    rest = (window >> (zeros + 1)) & ((1 << safe_width) - 1)
    value = rest + (1 << safe_width) - (1 << order)
    invalid = (width > 8) | (value > 255)
    symbol = tl.load(lut + table * 256 + (value & 0xFF)).to(tl.int32)
    return symbol, 2 * zeros + order + 1, invalid


@triton.jit
def decode_coded_chunks(
    blob,
    out,
    errors,
    dst,
    length,
    table_of,
    lane_start,
    lane_len,
    lut,
    order_of,
    n_lanes,
    LUT_BITS: tl.constexpr,
    EXP_GOLOMB: tl.constexpr,
    LANE_BLOCK: tl.constexpr,
):
    # int64: chunk x lane and table x table-size products exceed 2^31 on large streams.
    c = tl.program_id(0).to(tl.int64)
    group = tl.program_id(1)
    lanes = group * LANE_BLOCK + tl.arange(0, LANE_BLOCK)
    active = lanes < n_lanes
    n = tl.load(length + c)
    table = tl.load(table_of + c).to(tl.int64)
    order = tl.load(order_of + table)
    start = tl.load(lane_start + c * n_lanes + lanes, mask=active, other=0)
    nbytes = tl.load(lane_len + c * n_lanes + lanes, mask=active, other=0)
    end = start + nbytes
    # Symbols in each lane (lane l holds symbols l, l + L, ...; none for inactive lanes).
    count = tl.where(active, (n - lanes + n_lanes - 1) // n_lanes, 0)
    dst_lane = out + tl.load(dst + c) + lanes
    pos = tl.zeros([LANE_BLOCK], tl.int64)
    bad = tl.zeros([LANE_BLOCK], tl.int32)
    for row in range(0, (n + n_lanes - 1) // n_lanes):
        live = row < count
        # Three bytes at the lane's bit position, zero past the lane's end: ≥ 17 valid bits.
        at = start + (pos >> 3)
        b0 = tl.load(blob + at, mask=at < end, other=0).to(tl.int32)
        b1 = tl.load(blob + at + 1, mask=at + 1 < end, other=0).to(tl.int32)
        b2 = tl.load(blob + at + 2, mask=at + 2 < end, other=0).to(tl.int32)
        window = (b0 | (b1 << 8) | (b2 << 16)) >> (pos & 7).to(tl.int32)
        if EXP_GOLOMB:
            symbol, code_len, invalid = _exp_golomb(window, lut, table, order)
        else:
            entry = tl.load(lut + (table << LUT_BITS) + (window & ((1 << LUT_BITS) - 1))).to(tl.int32)
            symbol = entry & 0xFF
            code_len = entry >> 8
            invalid = code_len == 0
        tl.store(dst_lane + row * n_lanes, symbol.to(tl.uint8), mask=live)
        bad = bad | (live & invalid).to(tl.int32)
        pos += tl.where(live, code_len, 0).to(tl.int64)
    consumed = ((pos + 7) >> 3) == nbytes
    bad = bad | tl.where(active & (consumed == 0), LANE_LENGTH, 0)
    invalid_any = tl.max(bad & INVALID_CODE, axis=0)
    length_any = tl.max(bad & LANE_LENGTH, axis=0)
    tl.store(errors + c * tl.num_programs(1) + group, invalid_any | length_any)
