"""CPU-made video bitstreams for a GPU machine without PyAV: encoded here with PyAV (x265, x264,
SVT-AV1), decoded here with FFmpeg as the reference, stored in one ``.npz`` that travels to the
device, where NVDEC must reproduce the references bit for bit.

Layout of the file (plain numpy arrays, readable without this module)::

    cases            JSON (UTF-8 bytes): a list of {name, codec, bit_depth, chroma, height,
                     width, frames, qp, purpose, ref}
    <name>.p<k>      the k-th packet (one intra frame) of case <name>, uint8
    <name>.ref       "frames": FFmpeg's decode, uint16 (frames, height, width);
                     "sha256": the SHA-256 of those uint16 frames (32 bytes, large cases)

``purpose`` is "check" (small frames, every profile NVDEC may or may not read, full references)
or "speed" (1024x1024 frames of real weights, for throughput). Make it where PyAV is installed::

    PYTHONPATH=python python benches/nvdec_streams.py .carry/nvdec_streams.npz
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

#: (codec, bit_depth, chroma, height, width): 4:2:0 first (what NVDEC must read), then the
#: profiles it is expected to refuse (4:0:0, AV1 on Hopper) and a frame below its minimum height.
CHECK_CASES = [
    ("hevc", 8, "420", 256, 320),
    ("hevc", 10, "420", 256, 320),
    ("h264", 8, "420", 256, 320),
    ("av1", 8, "420", 256, 320),
    ("hevc", 8, "420", 128, 256),
    ("hevc", 8, "400", 256, 320),
    ("hevc", 10, "400", 256, 320),
    ("h264", 8, "400", 256, 320),
]
SPEED_CASES = [("hevc", 8), ("hevc", 10), ("h264", 8), ("av1", 8)]
QP = 25


@dataclass
class Case:
    name: str
    codec: str
    bit_depth: int
    chroma: str
    height: int
    width: int
    qp: int
    purpose: str
    packets: list[bytes]
    #: FFmpeg's frames (uint16, frames x height x width) or their SHA-256
    ref: np.ndarray | bytes

    def matches(self, frames: list[np.ndarray]) -> tuple[bool, str]:
        """Whether ``frames`` are the reference, and a one-line account of any difference."""
        if len(frames) != len(self.packets):
            return False, f"{len(frames)} frames decoded, {len(self.packets)} expected"
        got = np.stack([np.asarray(f, dtype=np.uint16) for f in frames])
        if isinstance(self.ref, bytes):
            same = hashlib.sha256(got.tobytes()).digest() == self.ref
            return same, "" if same else "SHA-256 differs from FFmpeg's decode"
        if got.shape != self.ref.shape:
            return False, f"shape {got.shape}, expected {self.ref.shape}"
        diff = got.astype(np.int32) - self.ref.astype(np.int32)
        bad = int(np.count_nonzero(diff))
        return bad == 0, "" if bad == 0 else f"{bad} samples differ, max |diff| {int(np.abs(diff).max())}"


def gaussian_frames(bit_depth: int, height: int, width: int, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    mid, sd, top = 2 ** (bit_depth - 1), 2 ** (bit_depth - 3), 2**bit_depth - 1
    return [np.clip(rng.normal(mid, sd, (height, width)), 0, top).astype(np.uint16) for _ in range(n)]


def weight_frames(bit_depth: int, side: int, n: int) -> list[np.ndarray]:
    """``n`` side x side frames of real MiniLM weights, quantized per row as tensorpress.video does."""
    from tensorpress import samples
    from tensorpress.video import pipeline

    mats = [w for w in samples.minilm_weights().values() if w.ndim == 2 and w.shape[1] >= 384]
    codes = np.concatenate([pipeline.quantize_rows(w, bit_depth).q.reshape(-1) for w in mats])
    need = n * side * side
    codes = np.resize(codes, need)  # repeats only if the model is smaller than asked
    return list(codes.reshape(n, side, side))


def make(
    path: str,
    check_cases: list[tuple[str, int, str, int, int]] = CHECK_CASES,
    speed_cases: list[tuple[str, int]] = SPEED_CASES,
    speed_side: int = 1024,
    speed_frames: int = 2,
) -> list[dict[str, Any]]:
    from tensorpress.video import backends

    pyav = backends.PyAVBackend()
    arrays: dict[str, np.ndarray] = {}
    cases: list[dict[str, Any]] = []

    def add(name: str, codec: str, bd: int, chroma: str, frames: list[np.ndarray], purpose: str) -> None:
        h, w = frames[0].shape
        packets = pyav.encode(frames, backends.EncodeOptions(codec, bd, QP, chroma=chroma))
        ref = np.stack(pyav.decode(packets, codec, bd, h, w)).astype(np.uint16)
        for k, p in enumerate(packets):
            arrays[f"{name}.p{k}"] = np.frombuffer(p, np.uint8)
        kind = "frames" if purpose == "check" else "sha256"
        arrays[f"{name}.ref"] = (
            ref if kind == "frames" else np.frombuffer(hashlib.sha256(ref).digest(), np.uint8)
        )
        meta = {"name": name, "codec": codec, "bit_depth": bd, "chroma": chroma, "height": h, "width": w}
        meta |= {"frames": len(packets), "qp": QP, "purpose": purpose, "ref": kind}
        meta["bitstream_bytes"] = sum(map(len, packets))
        cases.append(meta)
        print(json.dumps(meta), flush=True)

    for i, (codec, bd, chroma, h, w) in enumerate(check_cases):
        add(f"{codec}_{bd}b_{chroma}_{h}x{w}", codec, bd, chroma, gaussian_frames(bd, h, w, 3, i), "check")
    for codec, bd in speed_cases:
        frames = weight_frames(bd, speed_side, speed_frames)
        add(f"speed_{codec}_{bd}b", codec, bd, "420", frames, "speed")
    arrays["cases"] = np.frombuffer(json.dumps(cases).encode(), np.uint8)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
    return cases


def load(path: str, purpose: str | None = None) -> list[Case]:
    """The cases of a file :func:`make` wrote (only those of ``purpose`` when given)."""
    out = []
    with np.load(path) as z:
        for c in json.loads(bytes(z["cases"]).decode()):
            if purpose is not None and c["purpose"] != purpose:
                continue
            name = c["name"]
            packets = [bytes(z[f"{name}.p{k}"]) for k in range(c["frames"])]
            raw = z[f"{name}.ref"]
            ref: np.ndarray | bytes = bytes(raw) if c["ref"] == "sha256" else np.asarray(raw, np.uint16)
            fields = ("codec", "bit_depth", "chroma", "height", "width", "qp", "purpose")
            out.append(Case(name, *(c[f] for f in fields), packets=packets, ref=ref))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} OUT.npz")
    made = make(sys.argv[1])
    print(f"wrote {len(made)} cases to {sys.argv[1]}")
