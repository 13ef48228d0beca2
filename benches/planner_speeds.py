"""Measure the decode speeds the planner's table (``tensorpress.planner.DECODE_GBPS``) holds.

    .venv/bin/python benches/planner_speeds.py [--repeats 5]

Each entropy codec decodes a 4 MB fp32 exponent plane of the MiniLM-L6-v2 weights through the
public Python call (``tensorpress.entropy.decode(blob, threads=1)``: CRC check, chunk index and the
``auto`` kernel included); ``raw`` is a numpy copy of the same bytes. GB/s = plane bytes / best of
``--repeats`` wall times. Prints the values and a ready-to-paste dict.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from tensorpress import entropy, samples, tensors

CODECS = ("qlc", "dlc", "huffman", "expgolomb-rank", "expgolomb")
PLANE_BYTES = 4 << 20


def exponent_plane() -> np.ndarray:
    mats = [w for w in samples.minilm_weights().values() if w.ndim == 2]
    plane = np.concatenate([tensors.split_planes(w.reshape(-1), "fp32-exponent")[0] for w in mats])
    return np.ascontiguousarray(plane[:PLANE_BYTES])


def best_seconds(fn: object, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    plane = exponent_plane()
    print(f"# {plane.size / 1e6:.1f} MB fp32 exponent plane; load average {os.getloadavg()[0]:.2f}")
    speeds = {"raw": plane.size / best_seconds(plane.copy, args.repeats) / 1e9}
    for codec in CODECS:
        blob = entropy.encode(plane, codec)
        out = entropy.decode(blob, threads=1)
        if not np.array_equal(out, plane):
            raise SystemExit(f"{codec} did not round-trip")
        speeds[codec] = (
            plane.size / best_seconds(lambda b=blob: entropy.decode(b, threads=1), args.repeats) / 1e9
        )
        print(f"{codec:>15}: ratio {len(blob) / plane.size:.4f}  decode {speeds[codec]:.2f} GB/s")
    print(f"{'raw':>15}: copy {speeds['raw']:.2f} GB/s")
    print("DECODE_GBPS = {" + ", ".join(f'"{k}": {v:.2f}' for k, v in speeds.items()) + "}")


if __name__ == "__main__":
    main()
