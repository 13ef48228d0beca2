"""The planner: pick a compression method per tensor under a constraint, and say why.

:func:`plan` tries every candidate method that fits the constraint on a *sample* of the tensor,
predicts its size (for the whole tensor), its error (relative MSE ``‖x − x̂‖² / ‖x‖²`` measured on
the sample) and its decode speed, then picks one:

- ``lossless=True`` (default): per byte plane (see :mod:`tensorpress.tensors`) every entropy code
  (QLC, Huffman, Exp-Golomb on ranks) and raw storage; sizes come from the plane histograms
  (:func:`tensorpress.entropy.stats`, one pass in Rust) plus the exact stream overheads
  (:func:`tensorpress.tensors.predicted_size`). A constant plane is stored raw (the stream keeps
  one byte per constant chunk).
- ``max_rel_error=ε``: lossless plus lossy candidates whose sample error is at most
  :data:`ERROR_MARGIN` · ε; the smallest wins (``prefer="size"``) or the fastest to decode within
  :data:`SPEED_SLACK` of the smallest (``prefer="speed"``). :meth:`Plan.apply` re-measures the
  error on the *full* tensor and moves to the next candidate if the bound is broken, so the result
  always honours ``max_rel_error``.
- ``bits_per_value=b``: every candidate whose predicted size is at most ``b`` bits per value; the
  smallest error wins (``prefer="speed"``: the fastest within 2x the smallest error).

Lossy candidates:

- ``blockwise`` — round-to-nearest symmetric INT-b with one float16 scale per block of
  ``block_size`` values along the last dimension (the BCT primitive; the same arithmetic as
  :func:`tensorpress.quant.blockwise.quantize` with ``scale_format="fp16"``, re-implemented here in
  numpy so the planner needs no torch). The integer codes are then entropy-coded (or bit-packed,
  whichever is smaller), so a 4-bit code often costs ~3 bits.
- ``tender-group`` — Tender-style channel grouping: channels (last dimension) are put in ``G``
  groups by abs-max with power-of-two scale ratios (thresholds ``TMax / 2^(G−1−i)``), INT-b codes.
  Meant for activations; for weights it is usually beaten by ``blockwise`` and says so.
- ``video`` — :func:`tensorpress.video.encode` (LLM.265) at a few bits-per-value targets, when
  :mod:`tensorpress.video` and its backend are importable; otherwise listed as unavailable.

Decode speeds are table values (:data:`DECODE_GBPS`, measured on the development VM, see the
table's comment) unless ``measure_speed=True``, which times the decoders on the sample.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tensorpress import entropy, tensors
from tensorpress.errors import FormatError, InvalidArgumentError
from tensorpress.methods import lossless
from tensorpress.methods.base import parse_json

# The blockwise format and its numpy reference quantizers live with the method; these names stay
# importable from here.
from tensorpress.methods.blockwise import (
    BlockwiseTensor,
    as_matrix,
    pack_bits,
    quantize_blockwise,
    rtn_blockwise,
    rtn_dequantize,
    tender_dequantize,
    tender_group,
    unpack_bits,
)
from tensorpress.methods.blockwise import code_layouts as _code_layouts

#: Default sample size (elements) the candidates are tried on.
DEFAULT_SAMPLE = 1 << 20
#: A lossy candidate must reach ``ERROR_MARGIN * max_rel_error`` on the sample to be feasible.
ERROR_MARGIN = 0.8
#: ``prefer="speed"`` accepts candidates up to this much larger than the smallest feasible one.
SPEED_SLACK = 0.10
#: Method name of :class:`BlockwiseTensor` in the container.
BLOCKWISE_METHOD = "blockwise"

#: Decode throughput (GB/s of decoded output, one core) per codec, used to predict decode speed.
#: Entropy codes and raw: ``tensorpress.entropy.decode(threads=1)`` on a 4 MB fp32 exponent plane
#: of the MiniLM weights, 32 lanes, AVX2 kernels, development VM (2 vCPU, load 0.8), best of 5:
#: ``python benches/planner_speeds.py`` (2026-11-29). ``expgolomb`` stores that plane raw (7 GB/s),
#: so it takes the rank form's speed, the speed of its real code. Lossy: numpy dequantization on
#: the same VM (the codes' entropy decode is added per candidate). Video: PyAV HEVC decode of the
#: whole pipeline, 54 MB/s of fp32 output (benches/RESULTS.md §4.1).
DECODE_GBPS: dict[str, float] = {
    "raw": 9.9,
    "qlc": 1.88,
    "dlc": 1.89,
    "huffman": 1.40,
    "expgolomb-rank": 1.16,
    "expgolomb": 1.16,
    "dequant": 0.8,
    "video": 0.054,
}
#: Where each :data:`DECODE_GBPS` value comes from.
SPEED_SOURCE: dict[str, str] = {
    **{
        k: "table (measured, dev VM)" for k in ("raw", "qlc", "dlc", "huffman", "expgolomb-rank", "expgolomb")
    },
    "dequant": "table (measured, dev VM)",
    "video": "table (measured, dev VM, HEVC via PyAV)",
}


class DecodeSpeeds(dict[str, float]):
    """Decode GB/s per codec for one plan, and where each value comes from (measured for that
    plan or the table): per call, so one measured plan never relabels later ones."""

    def __init__(self, values: dict[str, float], sources: dict[str, str]) -> None:
        super().__init__(values)
        self.sources = dict(sources)


#: Entropy codecs tried per plane.
PLANE_CODECS = ("qlc", "huffman", "expgolomb-rank")
#: (bits, block_size) pairs tried for ``blockwise``.
BLOCKWISE_GRID = ((2, 32), (3, 64), (3, 32), (4, 128), (4, 64), (4, 32), (5, 64), (6, 64), (8, 128), (8, 64))
#: (bits, groups) pairs tried for ``tender-group``.
TENDER_GRID = ((4, 4), (6, 4), (8, 4), (8, 8))
#: bits-per-value targets tried for ``video``.
VIDEO_TARGETS = (2.0, 3.0, 4.0, 6.0)
_FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")


# --- candidates and plans --------------------------------------------------------------------


@dataclass
class Candidate:
    """One way to store the tensor, with its predictions on the sample."""

    method: str
    label: str
    options: dict[str, Any]
    predicted_bytes: int
    bits_per_value: float
    rel_error: float
    decode_gbps: float
    speed_source: str
    lossless: bool
    feasible: bool = True
    note: str = ""
    verdict: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "method": self.method,
            "label": self.label,
            "options": self.options,
            "predicted_bytes": self.predicted_bytes,
            "bits_per_value": round(self.bits_per_value, 4),
            "rel_error": self.rel_error,
            "decode_gbps": self.decode_gbps,
        }


@dataclass
class Plan:
    """The planner's decision for one tensor: every candidate tried and the one chosen."""

    dtype: str
    shape: tuple[int, ...]
    constraint: str
    prefer: str
    sample_size: int
    candidates: list[Candidate]
    chosen: Candidate
    max_rel_error: float | None = None
    measured_error: float | None = field(default=None, init=False)
    #: False when no candidate reaches the ``bits_per_value`` budget (the smallest was taken).
    budget_met: bool = True

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def raw_nbytes(self) -> int:
        return self.numel * tensors.dtype_from_name(self.dtype).itemsize

    @property
    def method(self) -> str:
        return self.chosen.method

    @property
    def lossless(self) -> bool:
        return self.chosen.lossless

    def summary(self) -> str:
        """One line: the chosen label and its predicted ratio/error (for ``tensorpress inspect``)."""
        c = self.chosen
        ratio = 100 * c.predicted_bytes / self.raw_nbytes if self.raw_nbytes else 100.0
        err = "lossless" if c.lossless else f"err {c.rel_error:.2e}"
        met = "" if self.budget_met else " NOT MET"
        return f"{c.label} ({c.bits_per_value:.2f} bits/value, {ratio:.1f} %, {err}; {self.constraint}{met})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record of the decision (stored by :func:`tensorpress.save_model`)."""
        return {
            "constraint": self.constraint,
            "prefer": self.prefer,
            "chosen": self.chosen.to_dict(),
            "summary": self.summary(),
            "candidates": len(self.candidates),
            "measured_error": self.measured_error,
            "budget_met": self.budget_met,
        }

    def explain(self) -> str:
        """Human-readable table of every candidate: predicted size, error, speed, and verdict."""
        shape = "x".join(str(d) for d in self.shape) or "scalar"
        lines = [
            f"plan for {self.dtype}[{shape}] ({self.raw_nbytes:,} bytes raw), constraint {self.constraint}, "
            f"prefer {self.prefer}; candidates tried on a sample of {self.sample_size:,} values",
            f"chosen: {self.chosen.label} — {self.chosen.verdict}",
            "",
            f"{'candidate':<40}{'bytes':>14}{'bits/val':>10}{'rel MSE':>11}{'GB/s':>8}  verdict",
        ]
        for c in self.candidates:
            mark = "*" if c is self.chosen else " "
            err = "0" if c.lossless else (f"{c.rel_error:.2e}" if math.isfinite(c.rel_error) else "-")
            size = f"{c.predicted_bytes:,}" if c.predicted_bytes >= 0 else "-"
            bpv = f"{c.bits_per_value:.3f}" if c.predicted_bytes >= 0 else "-"
            lines.append(f"{mark}{c.label:<39}{size:>14}{bpv:>10}{err:>11}{c.decode_gbps:>8.2f}  {c.verdict}")
        sources = sorted({c.speed_source for c in self.candidates if c.speed_source})
        lines.append("")
        lines.append("decode speeds: " + "; ".join(sources))
        if self.measured_error is not None:
            lines.append(f"error of the applied result on the full tensor: {self.measured_error:.3e}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.explain()

    def __repr__(self) -> str:  # one line; explain() has the candidate table
        shape = "x".join(str(d) for d in self.shape) or "scalar"
        return f"Plan({self.dtype}[{shape}]: {self.summary()}, {len(self.candidates)} candidates)"

    def apply(self, tensor: Any) -> Any:
        """Compress ``tensor`` (the one planned, or one like it) with the chosen candidate.

        Returns a :class:`~tensorpress.tensors.CompressedTensor`, a :class:`BlockwiseTensor` or a
        video tensor — all storable by :func:`tensorpress.save`. With ``max_rel_error`` the error is
        re-measured on the full tensor; if the chosen candidate breaks the bound, the next feasible
        candidate (by the same ordering) is applied instead and becomes :attr:`chosen`.
        """
        arr, kind, device = tensors.to_numpy(tensor)
        order = [self.chosen] + [c for c in self._ranked() if c is not self.chosen]
        for cand in order:
            obj = _apply_candidate(cand, arr, kind, device)
            if cand.lossless or self.max_rel_error is None:
                self.measured_error = 0.0 if cand.lossless else None
                if not cand.lossless:
                    self.measured_error = rel_mse(arr, _decoded_numpy(obj))
                self.chosen = cand
                return obj
            err = rel_mse(arr, _decoded_numpy(obj))
            if err <= self.max_rel_error:
                self.measured_error = err
                if cand is not self.chosen:
                    cand.verdict = f"applied instead (full-tensor error {err:.2e} meets the bound)"
                self.chosen = cand
                return obj
            cand.verdict = f"rejected on apply: full-tensor error {err:.2e} > {self.max_rel_error:.2e}"
        raise AssertionError("unreachable: the lossless candidate always meets the bound")

    def _ranked(self) -> list[Candidate]:
        return sorted(
            (c for c in self.candidates if c.feasible and c.method != "lossless-plane"), key=_size_key
        )


def _size_key(c: Candidate) -> tuple[float, float]:
    return (c.predicted_bytes, -c.decode_gbps)


# --- numeric helpers --------------------------------------------------------------------------


def rel_mse(reference: np.ndarray, approx: np.ndarray) -> float:
    """``‖x − x̂‖² / ‖x‖²`` in float64 (0 when both are all zero; inf when x is 0 and x̂ is not)."""
    x = np.asarray(reference, dtype=np.float64).reshape(-1)
    y = np.asarray(approx, dtype=np.float64).reshape(-1)
    num = float(np.sum((x - y) ** 2))
    den = float(np.sum(x * x))
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def sample_rows(arr: np.ndarray, max_values: int) -> np.ndarray:
    """A sample of about ``max_values`` values that keeps the matrix structure: evenly spaced whole
    rows of :func:`as_matrix`, or evenly spaced 4096-value segments of a very long row."""
    m = as_matrix(np.ascontiguousarray(arr))
    rows, cols = m.shape
    if m.size <= max_values:
        return m
    if cols <= max_values:
        k = max(1, max_values // cols)
        idx = np.linspace(0, rows - 1, k).round().astype(np.int64)
        return m[np.unique(idx)]
    seg = 4096
    k = max(1, max_values // seg)
    flat = m.reshape(-1)
    starts = np.linspace(0, flat.size - seg, k).round().astype(np.int64)
    return np.stack([flat[s : s + seg] for s in np.unique(starts)])


# --- candidate generation --------------------------------------------------------------------


def _plane_candidates(
    planes: list[np.ndarray], full_n: int, prefer: str, speeds: DecodeSpeeds
) -> tuple[list[Candidate], list[str], int, float]:
    """Per-plane candidates; returns (rows for explain, chosen codec per plane, total bytes,
    predicted decode GB/s of the whole tensor)."""
    rows: list[Candidate] = []
    chosen: list[str] = []
    total = 0
    seconds = 0.0
    lanes, chunk = lossless.auto_lanes(full_n), entropy.DEFAULT_CHUNK_SIZE
    raw_size = tensors.predicted_size(full_n, 8.0, "raw", lanes, chunk)
    for i, plane in enumerate(planes):
        sizes: dict[str, int] = {}
        if plane.size == 0:
            sizes["raw"] = raw_size
            constant = False
        else:
            constant = bool(np.all(plane == plane[0]))
            if constant:
                chunks = -(-full_n // chunk)
                sizes["raw"] = 28 + chunks * (8 + 1 + 1)
            else:
                sizes["raw"] = raw_size
                st = entropy.stats(plane)
                for c in PLANE_CODECS:
                    sizes[c] = tensors.predicted_size(
                        full_n, st.codecs[c].mean_code_len, c, lanes, chunk, st.codecs[c].table_bytes
                    )
        best_size = min(sizes.values())
        coded = {c: s for c, s in sizes.items() if c != "raw"}
        if constant or not coded:
            pick = "raw"
            why = "constant plane: stored as constant chunks" if constant else "empty plane"
        else:
            best_coded = min(coded, key=coded.__getitem__)
            if coded[best_coded] > (1 - tensors.MIN_SAVING) * sizes["raw"]:
                pick, why = "raw", f"no code saves {100 * tensors.MIN_SAVING:.0f} % of the plane"
            elif prefer == "speed":
                ok = [c for c, s in coded.items() if s <= coded[best_coded] + SPEED_SLACK * full_n]
                pick = max(ok, key=lambda c: speeds[c])
                if sizes["raw"] <= coded[pick] * (1 + SPEED_SLACK):
                    pick = "raw"
                why = "fastest decode within the size slack"
            else:
                pick, why = best_coded, "smallest"
        for c, s in sizes.items():
            verdict = f"chosen for plane {i}: {why}" if c == pick else _plane_reject(c, s, best_size, pick)
            rows.append(
                Candidate(
                    method="lossless-plane",
                    label=f"  plane {i}: {c}",
                    options={"plane": i, "codec": c},
                    predicted_bytes=s,
                    bits_per_value=8 * s / full_n if full_n else 0.0,
                    rel_error=0.0,
                    decode_gbps=speeds[c],
                    speed_source=speeds.sources.get(c, ""),
                    lossless=True,
                    verdict=verdict,
                )
            )
        chosen.append(pick)
        total += sizes[pick]
        seconds += full_n / (speeds[pick] * 1e9)
    n_bytes_out = full_n * len(planes)
    return rows, chosen, total, (n_bytes_out / seconds / 1e9 if seconds else speeds["raw"])


def _plane_reject(codec: str, size: int, best: int, pick: str) -> str:
    if size == best:
        return f"as small as {pick} but not preferred"
    return f"rejected: {100 * (size / best - 1):.1f} % larger than the best"


def _lossless_candidates(
    arr: np.ndarray, sample: np.ndarray, prefer: str, speeds: DecodeSpeeds
) -> list[Candidate]:
    name = tensors.dtype_name(arr.dtype)
    transform = tensors.transform_name(name)
    flat = np.ascontiguousarray(sample).reshape(-1)
    planes = tensors.split_planes(flat, transform)
    full_n = arr.size
    if transform == "nibbles":
        full_n = (arr.size + 1) // 2
    rows, codecs, total, gbps = _plane_candidates(planes, full_n, prefer, speeds)
    best = Candidate(
        method="lossless",
        label=f"lossless {transform} [{'+'.join(codecs)}]",
        options={"transform": transform, "codecs": codecs},
        predicted_bytes=total,
        bits_per_value=8 * total / arr.size if arr.size else 0.0,
        rel_error=0.0,
        decode_gbps=gbps,
        speed_source=speeds.sources["raw"],
        lossless=True,
    )
    out = [best]
    raw_bytes = {r.options["plane"]: r.predicted_bytes for r in rows if r.options["codec"] == "raw"}
    # Uniform alternatives: one codec for every plane, and raw.
    for c in (*PLANE_CODECS, "raw"):
        per_plane = [r for r in rows if r.options["codec"] == c]
        size = sum(r.predicted_bytes for r in per_plane)
        if len(per_plane) != len(planes):
            continue  # some plane (constant/empty) has no such code: not a distinct candidate
        if [c] * len(planes) == codecs:
            continue
        if c != "raw" and any(
            r.predicted_bytes > (1 - tensors.MIN_SAVING) * raw_bytes[r.options["plane"]] for r in per_plane
        ):
            # The per-plane rule holds here too: a code that saves under MIN_SAVING of a plane
            # (a bf16 sign·mantissa plane: 0.2 %) would double its decode time for nothing.
            continue
        out.append(
            Candidate(
                method="lossless",
                label=f"lossless {transform} [all {c}]",
                options={"transform": transform, "codecs": [c] * len(planes)},
                predicted_bytes=size,
                bits_per_value=8 * size / arr.size if arr.size else 0.0,
                rel_error=0.0,
                decode_gbps=speeds[c],
                speed_source=speeds.sources.get(c, ""),
                lossless=True,
            )
        )
    return out + rows


def _blockwise_candidates(
    m: np.ndarray, full_numel: int, full_rows: int, speeds: DecodeSpeeds
) -> list[Candidate]:
    out = []
    x64 = m.astype(np.float64)
    cols = m.shape[1]
    for bits, block in BLOCKWISE_GRID:
        qmax = (1 << (bits - 1)) - 1
        codes, scales = rtn_blockwise(m, bits, block)
        err = rel_mse(x64, rtn_dequantize(codes, scales, block))
        u = (codes + qmax).astype(np.uint8).reshape(-1)
        sizes = _code_layouts(u, bits)
        scale = full_numel / max(u.size, 1)
        layout_sizes = {k: int(v * scale) for k, v in sizes.items()}
        layout = min(layout_sizes, key=layout_sizes.__getitem__)
        side = full_rows * -(-cols // block) * 2
        total = layout_sizes[layout] + side
        gbps = 1.0 / (1.0 / speeds["dequant"] + (1.0 / speeds[layout] if layout != "packed" else 0.0))
        out.append(
            Candidate(
                method="blockwise",
                label=f"blockwise rtn b{bits} g{block} [{layout}]",
                options={"scheme": "rtn-block", "bits": bits, "block_size": block, "layout": layout},
                predicted_bytes=total,
                bits_per_value=8 * total / full_numel,
                rel_error=err,
                decode_gbps=gbps,
                speed_source=speeds.sources["dequant"],
                lossless=False,
                note="local numpy RTN-blockwise (fp16 scales, same arithmetic as quant.blockwise)",
            )
        )
    return out


def _tender_candidates(m: np.ndarray, full_numel: int, speeds: DecodeSpeeds) -> list[Candidate]:
    out = []
    x64 = m.astype(np.float64)
    for bits, groups in TENDER_GRID:
        qmax = (1 << (bits - 1)) - 1
        codes, group, tmax = tender_group(m, bits, groups)
        err = rel_mse(x64, tender_dequantize(codes, group, tmax, bits, groups))
        u = (codes + qmax).astype(np.uint8).reshape(-1)
        sizes = _code_layouts(u, bits)
        scale = full_numel / max(u.size, 1)
        layout_sizes = {k: int(v * scale) for k, v in sizes.items()}
        layout = min(layout_sizes, key=layout_sizes.__getitem__)
        total = layout_sizes[layout] + m.shape[1]
        gbps = 1.0 / (1.0 / speeds["dequant"] + (1.0 / speeds[layout] if layout != "packed" else 0.0))
        out.append(
            Candidate(
                method="blockwise",
                label=f"tender-group b{bits} G{groups} [{layout}]",
                options={"scheme": "tender-group", "bits": bits, "block_size": groups, "layout": layout},
                predicted_bytes=total,
                bits_per_value=8 * total / full_numel,
                rel_error=err,
                decode_gbps=gbps,
                speed_source=speeds.sources["dequant"],
                lossless=False,
                note="Tender-style channel grouping (pow2 scale ratios), local numpy",
            )
        )
    return out


def _video_module() -> tuple[Any, str]:
    try:
        import tensorpress.video as video

        encode, decode = video.encode, video.decode
    except (ImportError, AttributeError) as exc:
        return None, f"tensorpress.video unavailable ({type(exc).__name__}: {exc})"
    _ = (encode, decode)
    return video, ""


def _video_candidates(m: np.ndarray, full_numel: int, targets: tuple[float, ...]) -> list[Candidate]:
    video, why = _video_module()
    if video is None:
        return [_unavailable("video", why)]
    out: list[Candidate] = []
    x64 = m.astype(np.float64)
    for bpv in targets:
        try:
            obj = video.encode(np.ascontiguousarray(m), bits_per_value=bpv)
            err = rel_mse(x64, _decoded_numpy(obj))
            nbytes = int(getattr(obj, "nbytes", len(obj.payload())))
        except Exception as exc:  # a backend that cannot run here: report, do not fail the plan
            return [*out, _unavailable(f"video {bpv:g} bits/value", f"{type(exc).__name__}: {exc}")]
        total = int(nbytes * full_numel / max(m.size, 1))
        out.append(
            Candidate(
                method="video",
                label=f"video hevc ~{bpv:g} bits/value",
                options={"bits_per_value": bpv},
                predicted_bytes=total,
                bits_per_value=8 * total / full_numel,
                rel_error=err,
                decode_gbps=DECODE_GBPS["video"],
                speed_source=SPEED_SOURCE["video"],
                lossless=False,
            )
        )
    return out


def _unavailable(label: str, why: str) -> Candidate:
    return Candidate(
        method="unavailable",
        label=label,
        options={},
        predicted_bytes=-1,
        bits_per_value=math.inf,
        rel_error=math.inf,
        decode_gbps=0.0,
        speed_source="",
        lossless=False,
        feasible=False,
        verdict=f"unavailable: {why}",
    )


def _decoded_numpy(obj: Any) -> np.ndarray:
    if isinstance(obj, BlockwiseTensor):
        return obj.dequantize_numpy()
    if isinstance(obj, tensors.CompressedTensor):
        return np.asarray(tensors.decompress(obj, as_kind="numpy"))
    try:
        import tensorpress.video as video

        out = video.decode(obj)
    except (ImportError, AttributeError):
        out = tensors.decompress(obj)
    arr, _, _ = tensors.to_numpy(out)
    return arr


def _apply_candidate(cand: Candidate, arr: np.ndarray, kind: str, device: str | None) -> Any:
    if cand.method == "lossless":
        stored = lossless.compress(arr, list(cand.options["codecs"]))  # checks one codec per plane
        stored.kind, stored.device = kind, device
        return stored
    if cand.method == "blockwise":
        o = cand.options
        obj = quantize_blockwise(arr, o["bits"], o["block_size"], scheme=o["scheme"], layout=o["layout"])
        obj.kind, obj.device = kind, device
        return obj
    if cand.method == "video":
        import tensorpress.video as video

        source = tensors.from_numpy(arr, kind, device)
        return video.encode(source, bits_per_value=cand.options["bits_per_value"])
    raise InvalidArgumentError(f"candidate {cand.label!r} cannot be applied")


# --- the entry point -------------------------------------------------------------------------


def measure_decode_speeds(sample: np.ndarray | None = None, repeats: int = 3) -> dict[str, float]:
    """Time ``entropy.decode`` (one thread) of every codec on ``sample`` bytes (default: 1 MiB of
    a skewed synthetic byte plane); returns GB/s per codec (lossy entries from the table)."""
    rng = np.random.default_rng(0)
    data = sample if sample is not None else rng.geometric(0.3, 1 << 20).clip(0, 255).astype(np.uint8)
    data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    out = dict(DECODE_GBPS)
    for c in ("raw", *PLANE_CODECS):
        blob = entropy.encode(data, c, threads=1)
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            entropy.decode(blob, threads=1)
            best = min(best, time.perf_counter() - t0)
        out[c] = data.size / max(best, 1e-9) / 1e9
    return out


def plan(
    tensor: Any,
    *,
    lossless: bool | None = None,
    max_rel_error: float | None = None,
    bits_per_value: float | None = None,
    prefer: str = "size",
    sample: int = DEFAULT_SAMPLE,
    video: bool = True,
    measure_speed: bool = False,
    strict: bool = False,
) -> Plan:
    """Plan how to compress ``tensor`` (numpy or torch); see the module docstring.

    Exactly one constraint: ``lossless=True`` (the default when none is given), ``max_rel_error``
    (relative MSE bound) or ``bits_per_value`` (size budget). ``prefer`` is ``"size"`` or
    ``"speed"``. ``sample`` bounds the values the candidates are tried on. ``video=False`` skips
    the (slow) video candidates. ``measure_speed`` times the entropy decoders instead of using
    :data:`DECODE_GBPS`. A ``bits_per_value`` budget no candidate reaches warns and takes the
    smallest candidate (:attr:`Plan.budget_met` is False, the summary says so); ``strict=True``
    raises :class:`InvalidArgumentError` instead.
    """
    given = [
        lossless is not None and lossless is not False,
        max_rel_error is not None,
        bits_per_value is not None,
    ]
    if sum(given) > 1:
        raise InvalidArgumentError(
            "give one constraint: lossless=True, max_rel_error=... or bits_per_value=..."
        )
    if lossless is False and not any(given[1:]):
        raise InvalidArgumentError("lossless=False needs max_rel_error=... or bits_per_value=...")
    if prefer not in ("size", "speed"):
        raise InvalidArgumentError(f"prefer must be 'size' or 'speed', got {prefer!r}")
    if max_rel_error is not None and not (max_rel_error >= 0 and math.isfinite(max_rel_error)):
        raise InvalidArgumentError(f"max_rel_error must be a finite number >= 0, got {max_rel_error}")
    if bits_per_value is not None and not bits_per_value > 0:
        raise InvalidArgumentError(f"bits_per_value must be positive, got {bits_per_value}")
    if sample < 1024:
        raise InvalidArgumentError(f"sample must be at least 1024 values, got {sample}")
    arr, _, _ = tensors.to_numpy(tensor)
    name = tensors.dtype_name(arr.dtype)
    if measure_speed:
        measured = measure_decode_speeds()
        now = "measured now (entropy.decode, 1 thread)"
        speeds = DecodeSpeeds(measured, {**SPEED_SOURCE, **{c: now for c in ("raw", *PLANE_CODECS)}})
    else:
        speeds = DecodeSpeeds(DECODE_GBPS, SPEED_SOURCE)
    sub = sample_rows(arr, sample)
    if max_rel_error is not None:
        constraint = f"max_rel_error={max_rel_error:g}"
    elif bits_per_value is not None:
        constraint = f"bits_per_value={bits_per_value:g}"
    else:
        constraint = "lossless"
    cands = _lossless_candidates(arr, sub, prefer, speeds)
    if constraint != "lossless":
        if name in _FLOAT_DTYPES and arr.size:
            m = sub.astype(np.float32)
            if not np.all(np.isfinite(m)):
                cands.append(_unavailable("lossy methods", "tensor holds inf/nan values"))
            else:
                full_rows = as_matrix(arr).shape[0]
                cands += _blockwise_candidates(m, arr.size, full_rows, speeds)
                if m.shape[0] >= 2:
                    cands += _tender_candidates(m, arr.size, speeds)
                if video:
                    cands += _video_candidates(m, arr.size, VIDEO_TARGETS)
        else:
            cands.append(_unavailable("lossy methods", f"{name} is not a float tensor (or it is empty)"))
    chosen = _choose(cands, constraint, max_rel_error, bits_per_value, prefer)
    out = Plan(name, tuple(arr.shape), constraint, prefer, int(sub.size), cands, chosen, max_rel_error)
    if bits_per_value is not None and chosen.bits_per_value > bits_per_value:
        out.budget_met = False
        msg = (
            f"bits_per_value={bits_per_value:g} cannot be met for this {name} tensor: the smallest "
            f"candidate ({chosen.label}) needs {chosen.bits_per_value:.2f} bits/value"
        )
        if strict:
            raise InvalidArgumentError(msg)
        warnings.warn(msg, stacklevel=2)
    return out


def _choose(
    cands: list[Candidate],
    constraint: str,
    max_rel_error: float | None,
    bits_per_value: float | None,
    prefer: str,
) -> Candidate:
    whole = [c for c in cands if c.method not in ("lossless-plane", "unavailable")]
    for c in whole:
        if constraint == "lossless" and not c.lossless:
            c.feasible, c.verdict = False, "rejected: lossy"
        elif max_rel_error is not None and c.rel_error > ERROR_MARGIN * max_rel_error and not c.lossless:
            c.feasible = False
            c.verdict = f"rejected: sample error {c.rel_error:.2e} > {ERROR_MARGIN:g} x {max_rel_error:g}"
        elif bits_per_value is not None and c.bits_per_value > bits_per_value:
            c.feasible = False
            c.verdict = f"rejected: {c.bits_per_value:.2f} bits/value > {bits_per_value:g}"
    feasible = [c for c in whole if c.feasible]
    if not feasible:
        # Only possible with a bits budget below what anything reaches: take the smallest.
        best = min(whole, key=_size_key)
        best.verdict = "no candidate meets the budget; smallest taken"
        best.feasible = True
        return best
    if bits_per_value is not None:
        min_err = min(c.rel_error for c in feasible)
        if prefer == "speed":
            ok = [c for c in feasible if c.rel_error <= 2 * min_err + 1e-300]
            best = max(ok, key=lambda c: (c.decode_gbps, -c.rel_error))
            why = "fastest decode within 2x the smallest error in the budget"
        else:
            best = min(feasible, key=lambda c: (c.rel_error, c.predicted_bytes))
            why = "smallest error within the bits budget"
    else:
        smallest = min(feasible, key=_size_key)
        if prefer == "speed":
            limit = smallest.predicted_bytes * (1 + SPEED_SLACK)
            best = max((c for c in feasible if c.predicted_bytes <= limit), key=lambda c: c.decode_gbps)
            why = f"fastest decode within {100 * SPEED_SLACK:.0f} % of the smallest feasible size"
        else:
            best = smallest
            why = "smallest feasible predicted size"
    for c in feasible:
        if c is best:
            c.verdict = f"chosen: {why}"
        elif prefer == "size" and bits_per_value is None:
            c.verdict = (
                f"rejected: {100 * (c.predicted_bytes / max(best.predicted_bytes, 1) - 1):.1f} % larger"
            )
        elif bits_per_value is not None:
            c.verdict = f"rejected: error {c.rel_error:.2e} vs {best.rel_error:.2e}"
        else:
            c.verdict = f"rejected: slower ({c.decode_gbps:.2f} GB/s) or too large"
    return best


def plan_from_json(text: str) -> dict[str, Any]:
    """Parse a stored plan record (as written by :func:`tensorpress.save_model`)."""
    out = parse_json(text, "plan record")
    if not isinstance(out, dict):
        raise FormatError("a plan record must be a JSON object")
    return out


__all__ = [
    "BLOCKWISE_METHOD",
    "DECODE_GBPS",
    "BlockwiseTensor",
    "Candidate",
    "Plan",
    "as_matrix",
    "measure_decode_speeds",
    "pack_bits",
    "plan",
    "quantize_blockwise",
    "rel_mse",
    "rtn_blockwise",
    "rtn_dequantize",
    "sample_rows",
    "tender_group",
    "unpack_bits",
]
