"""Pure-numpy stages of the video tensor codec (DESIGN.md §1.2): 2-D folding, the random-Hadamard
incoherence rotation, per-row asymmetric min–max quantization and tiling into luma frames.

Nothing here touches a video library, so every stage is unit-testable and exactly invertible
(up to the quantization itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tensorpress.errors import CorruptDataError, InvalidArgumentError

#: Largest frame side: 2048 keeps every frame inside every encoder's level limits (and NVENC's).
MAX_FRAME_SIDE = 2048
#: Hadamard blocks are at most this long (longer blocks add little incoherence, cost more flops).
MAX_HADAMARD_BLOCK = 4096
#: Below this the blocks are too short to spread outliers: pad the columns instead.
MIN_HADAMARD_BLOCK = 64
#: Smallest positive normal float16; smaller per-row scales lose precision in fp16.
_FP16_TINY = float(np.finfo(np.float16).tiny)
_FP16_MAX = float(np.finfo(np.float16).max)


def fold_2d(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, cols) of the matrix a tensor is coded as: the last dim is the row width, the leading
    dims are folded into rows (a 2-D matrix is kept as is; a scalar is 1×1)."""
    if len(shape) == 0:
        return 1, 1
    cols = int(shape[-1])
    rows = int(math.prod(shape[:-1])) if len(shape) > 1 else 1
    return rows, cols


# --------------------------------------------------------------------------- rotation


def hadamard_plan(cols: int) -> tuple[int, int]:
    """(block, padded_cols) of the blockwise rotation of rows of width ``cols``.

    The block is the largest power of two dividing the (padded) width, capped at
    :data:`MAX_HADAMARD_BLOCK`; widths whose power-of-two factor is too small are zero-padded to a
    multiple of :data:`MIN_HADAMARD_BLOCK` (or to the next power of two when narrower).
    """
    if cols <= 0:
        return 1, cols
    padded = cols
    if (cols & -cols) < MIN_HADAMARD_BLOCK:
        padded = 1 << (cols - 1).bit_length() if cols < MIN_HADAMARD_BLOCK else _round_up(cols, 64)
    block = min(padded & -padded, MAX_HADAMARD_BLOCK)
    return block, padded


def _signs(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x7E45]))
    return rng.integers(0, 2, size=n, dtype=np.int8).astype(np.float32) * 2.0 - 1.0


def _fwht(x: np.ndarray, block: int) -> np.ndarray:
    """Orthonormal fast Walsh–Hadamard transform of consecutive ``block``-long pieces of each row
    (in place on a float32 copy). Self-inverse."""
    rows, width = x.shape
    y = x.reshape(rows * (width // block), block)
    h = 1
    while h < block:
        v = y.reshape(y.shape[0], block // (2 * h), 2, h)
        a = v[:, :, 0, :].copy()
        b = v[:, :, 1, :]
        v[:, :, 0, :] += b
        a -= b
        v[:, :, 1, :] = a
        h *= 2
    y *= np.float32(1.0 / math.sqrt(block))
    return y.reshape(rows, width)


def rotate(x: np.ndarray, seed: int) -> np.ndarray:
    """Random-Hadamard rotation of each row: ``H · diag(±1) · row`` blockwise (rows zero-padded to
    the width :func:`hadamard_plan` gives). Returns float32 of shape (rows, padded_cols)."""
    rows, cols = x.shape
    block, padded = hadamard_plan(cols)
    out = np.zeros((rows, padded), dtype=np.float32)
    out[:, :cols] = x
    out *= _signs(seed, padded)
    return _fwht(out, block)


def unrotate(y: np.ndarray, seed: int, cols: int) -> np.ndarray:
    """Inverse of :func:`rotate`: back to (rows, cols) float32."""
    block, padded = hadamard_plan(cols)
    if y.shape[1] != padded:
        raise CorruptDataError(f"rotated width {y.shape[1]} does not match {padded} for {cols} columns")
    out = _fwht(np.array(y, dtype=np.float32, copy=True), block)
    out *= _signs(seed, padded)
    return out[:, :cols]


# --------------------------------------------------------------------------- quantization


@dataclass(frozen=True)
class Quantized:
    """Per-row asymmetric quantization: ``x ≈ offset[r] + scale[r] · q[r, c]``."""

    q: np.ndarray  # uint16 (rows, cols), values in [0, 2**bits - 1]
    scale: np.ndarray  # (rows,) float16 or float32 (what is stored, and what dequantizes)
    offset: np.ndarray  # (rows,) same dtype as scale


def _fits_fp16(lo: np.ndarray, hi: np.ndarray, scale: np.ndarray) -> bool:
    bound = max(float(np.max(np.abs(lo), initial=0.0)), float(np.max(np.abs(hi), initial=0.0)))
    if bound > _FP16_MAX / 2:
        return False
    nonzero = scale[scale > 0]
    return bool(nonzero.size == 0 or float(nonzero.min()) >= _FP16_TINY)


def quantize_rows(x: np.ndarray, bits: int) -> Quantized:
    """Per-row min–max quantization of a finite float (rows, cols) matrix to ``bits`` bits.

    Scales and offsets are stored as float16 when that loses nothing material (otherwise float32),
    and the codes are computed against the *stored* (rounded) values so that dequantization is
    exactly what the encoder assumed: the offset is rounded down and the scale up, so every value
    stays in range.
    """
    levels = (1 << bits) - 1
    x = np.asarray(x, dtype=np.float32)
    rows = x.shape[0]
    if x.shape[1] == 0:
        z = np.zeros(rows, dtype=np.float16)
        return Quantized(np.zeros(x.shape, dtype=np.uint16), z, z.copy())
    lo = x.min(axis=1)
    hi = x.max(axis=1)
    raw_scale = (hi.astype(np.float64) - lo) / levels
    sdt: type[np.floating] = np.float16 if _fits_fp16(lo, hi, raw_scale) else np.float32
    offset = lo.astype(sdt)
    too_high = offset.astype(np.float64) > lo
    offset[too_high] = np.nextafter(offset[too_high], sdt(-np.inf))
    scale = ((hi.astype(np.float64) - offset.astype(np.float64)) / levels).astype(sdt)
    short = scale.astype(np.float64) * levels + offset.astype(np.float64) < hi
    scale[short] = np.nextafter(scale[short], sdt(np.inf))
    s64 = scale.astype(np.float64)[:, None]
    safe = np.where(s64 > 0, s64, 1.0)
    q = np.rint((x - offset.astype(np.float64)[:, None]) / safe)
    q = np.where(s64 > 0, q, 0.0)
    np.clip(q, 0, levels, out=q)
    return Quantized(q.astype(np.uint16), scale, offset)


def dequantize_rows(q: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """float32 ``offset[r] + scale[r] · q[r, c]``."""
    s = scale.astype(np.float32)[:, None]
    o = offset.astype(np.float32)[:, None]
    return q.astype(np.float32) * s + o


# --------------------------------------------------------------------------- tiling


@dataclass(frozen=True)
class TileLayout:
    """How a (rows, cols) code matrix maps onto equal-size luma frames.

    ``wrap`` is used for single-row matrices (1-D tensors): the row is cut into lines of
    ``frame_w`` values so a long vector does not become a 2-pixel-high strip of frames.
    """

    rows: int
    cols: int
    frame_h: int
    frame_w: int
    tiles_r: int
    tiles_c: int
    wrap: bool

    @property
    def n_frames(self) -> int:
        return self.tiles_r * self.tiles_c

    def to_dict(self) -> dict[str, int | bool]:
        return {
            "rows": self.rows,
            "cols": self.cols,
            "frame_h": self.frame_h,
            "frame_w": self.frame_w,
            "tiles_r": self.tiles_r,
            "tiles_c": self.tiles_c,
            "wrap": self.wrap,
        }


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _split(n: int, max_side: int, min_side: int) -> tuple[int, int]:
    """(tiles, side): the fewest tiles of even side ≤ max_side covering n, with minimal padding."""
    tiles = max(1, -(-n // max_side))
    side = _round_up(-(-n // tiles), 2)
    return tiles, max(side, min_side)


def plan_tiles(rows: int, cols: int, *, max_side: int = MAX_FRAME_SIDE, min_side: int = 2) -> TileLayout:
    """Choose the frame size and tile grid for a (rows, cols) matrix (never flattening 2-D data)."""
    if max_side < 2 or max_side % 2 or min_side > max_side:
        raise InvalidArgumentError(f"bad frame limits: max_side={max_side}, min_side={min_side}")
    min_side = _round_up(max(min_side, 2), 2)
    if rows == 1 and cols > min_side:
        # A lone row has no 2-D structure to keep: wrap it into a near-square picture.
        frame_w = min(max_side, max(min_side, _round_up(math.isqrt(cols - 1) + 1, 2)))
        lines = -(-cols // frame_w)
        tiles_r, frame_h = _split(lines, max_side, min_side)
        return TileLayout(rows, cols, frame_h, frame_w, tiles_r, 1, True)
    tiles_r, frame_h = _split(max(rows, 1), max_side, min_side)
    tiles_c, frame_w = _split(max(cols, 1), max_side, min_side)
    return TileLayout(rows, cols, frame_h, frame_w, tiles_r, tiles_c, False)


def to_frames(q: np.ndarray, layout: TileLayout) -> list[np.ndarray]:
    """Cut the code matrix into ``layout.n_frames`` uint16 frames, row-major over the tile grid.
    Padding replicates the edge values (cheap to code; cropped on decode)."""
    if layout.wrap:
        flat = q.reshape(-1)
        grid = np.pad(flat, (0, layout.tiles_r * layout.frame_h * layout.frame_w - flat.size), mode="edge")
        grid = grid.reshape(layout.tiles_r * layout.frame_h, layout.frame_w)
    else:
        H = layout.tiles_r * layout.frame_h
        W = layout.tiles_c * layout.frame_w
        grid = np.pad(q, ((0, H - q.shape[0]), (0, W - q.shape[1])), mode="edge")
    frames = []
    for i in range(layout.tiles_r):
        for j in range(layout.tiles_c):
            tile = grid[
                i * layout.frame_h : (i + 1) * layout.frame_h, j * layout.frame_w : (j + 1) * layout.frame_w
            ]
            frames.append(np.ascontiguousarray(tile, dtype=np.uint16))
    return frames


def from_frames(frames: list[np.ndarray], layout: TileLayout) -> np.ndarray:
    """Inverse of :func:`to_frames`: reassemble and crop to (rows, cols)."""
    if len(frames) != layout.n_frames:
        raise CorruptDataError(f"expected {layout.n_frames} frames, decoded {len(frames)}")
    for f in frames:
        if f.shape != (layout.frame_h, layout.frame_w):
            raise CorruptDataError(
                f"decoded frame is {f.shape[0]}x{f.shape[1]}, expected {layout.frame_h}x{layout.frame_w}"
            )
    grid = np.block(
        [[frames[i * layout.tiles_c + j] for j in range(layout.tiles_c)] for i in range(layout.tiles_r)]
    )
    if layout.wrap:
        return grid.reshape(-1)[: layout.cols].reshape(1, layout.cols)
    return grid[: layout.rows, : layout.cols]


__all__ = [
    "MAX_FRAME_SIDE",
    "Quantized",
    "TileLayout",
    "dequantize_rows",
    "fold_2d",
    "from_frames",
    "hadamard_plan",
    "plan_tiles",
    "quantize_rows",
    "rotate",
    "to_frames",
    "unrotate",
]
