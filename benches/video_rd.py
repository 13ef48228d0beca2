"""Rate–distortion of video codecs as tensor codecs on real MiniLM weight matrices, against
round-to-nearest with group-128 scales (RTN-g128), in one run; plus encode/decode throughput.

    python benches/video_rd.py [--layers 0,5] [--qps 26,30,34,38]

All numbers aggregate over the chosen matrices: relative MSE = Σ(ŵ−w)² / Σw², SNR = −10·log10(relMSE),
bits/value = all payload bits (bitstream + per-row fp16 scale/offset + frame table) / values.
RTN-g128 counts its fp16 scale and zero-point per group of 128 (+0.25 bits/value).
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np

import tensorpress.video as tv
from tensorpress.samples import minilm_weights


def rtn_g128(w: np.ndarray, bits: int, group: int = 128) -> np.ndarray:
    """Asymmetric min–max round-to-nearest per group of ``group`` consecutive values of a row."""
    x = w.reshape(-1, group).astype(np.float32)
    lo = x.min(axis=1, keepdims=True)
    hi = x.max(axis=1, keepdims=True)
    scale = ((hi - lo) / (2**bits - 1)).astype(np.float16).astype(np.float32)
    zero = lo.astype(np.float16).astype(np.float32)
    scale[scale == 0] = 1.0
    q = np.clip(np.rint((x - zero) / scale), 0, 2**bits - 1)
    return (q * scale + zero).reshape(w.shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", default="0,5", help="MiniLM encoder layers whose 6 linear weights are used")
    ap.add_argument("--qps", default="26,30,34,38", help="QPs per codec (SVT-AV1 gets the same numbers)")
    ap.add_argument("--targets", default="2.5,3.0", help="bits/value targets (strict: tolerance 0)")
    args = ap.parse_args()
    W = minilm_weights()
    layers = [int(x) for x in args.layers.split(",")]
    mats = {
        k: v
        for k, v in W.items()
        if v.ndim == 2 and k.endswith("weight") and any(k.startswith(f"encoder.layer.{i}.") for i in layers)
    }
    n_vals = sum(v.size for v in mats.values())
    energy = sum(float(np.sum(v.astype(np.float64) ** 2)) for v in mats.values())
    mb = n_vals * 4 / 1e6
    print(
        f"# Video RD on MiniLM-L6-v2, layers {layers}: {len(mats)} matrices, "
        f"{n_vals:,} values ({mb:.1f} MB fp32)"
    )
    print(
        f"# machine: {platform.machine()}, {platform.processor() or '?'}; backends: {tv.backends_available()}"
    )
    print()
    rows: list[tuple[str, str, float, float, str]] = []

    def add(method: str, setting: str, bits: float, err: float, note: str = "") -> None:
        rows.append((method, setting, bits, err, note))

    for b in (3, 4, 8):
        err = sum(float(np.sum((rtn_g128(v, b) - v).astype(np.float64) ** 2)) for v in mats.values())
        add("RTN-g128", f"{b}-bit", b + 0.25, err / energy)

    throughput: list[tuple[str, str, float, float]] = []
    for codec in ("hevc", "h264", "av1"):
        for rotate in (False, True):
            settings: list[tuple[str, dict[str, object]]] = [
                (f"QP {q}", {"qp": int(q)}) for q in args.qps.split(",")
            ]
            settings += [
                (f"target {t}", {"bits_per_value": float(t), "tolerance": 0.0})
                for t in args.targets.split(",")
            ]
            for label, kw in settings:
                bits = 0.0
                err = 0.0
                t_enc = t_dec = 0.0
                qps = []
                for w in mats.values():
                    t0 = time.perf_counter()
                    vt = tv.encode(w, codec=codec, rotate=rotate, backend="pyav", **kw)  # type: ignore[arg-type]
                    t1 = time.perf_counter()
                    out = tv.decode(vt, backend="pyav")
                    t2 = time.perf_counter()
                    t_enc += t1 - t0
                    t_dec += t2 - t1
                    bits += vt.nbytes * 8
                    err += float(np.sum((out - w).astype(np.float64) ** 2))
                    qps.append(vt.qp)
                note = "" if "qp" in kw else f"QP {min(qps)}-{max(qps)}"  # type: ignore[type-var]
                add(f"{codec}{' +rot' if rotate else ''}", label, bits / n_vals, err / energy, note)
                if "qp" in kw and kw["qp"] == 34:
                    throughput.append((codec + (" +rot" if rotate else ""), label, mb / t_enc, mb / t_dec))
                print(f"  done {codec} rot={rotate} {label}: enc {t_enc:.1f}s dec {t_dec:.1f}s", flush=True)

    print()
    print("| method | setting | bits/value | rel. MSE | SNR (dB) | note |")
    print("|---|---|---:|---:|---:|---|")
    for method, setting, bits, err, note in rows:
        print(f"| {method} | {setting} | {bits:.3f} | {err:.5f} | {-10 * math.log10(err):.2f} | {note} |")
    print()
    print("Throughput (pyav backend, MB/s of fp32 input, whole pipeline incl. quantization; QP 34)")
    print()
    print("| codec | setting | encode MB/s | decode MB/s |")
    print("|---|---|---:|---:|")
    for codec, label, enc, dec in throughput:
        print(f"| {codec} | {label} | {enc:.1f} | {dec:.1f} |")
    caps = tv.capabilities()["nvcodec"]
    print(f"\nnvcodec: encode {list(caps.encode)}, decode {list(caps.decode)} ({caps.reason or 'available'})")


if __name__ == "__main__":
    main()
