"""Side-by-side entropy-coder comparison: one run, same data, same machine.

Prints a markdown table of compression ratio (stored / raw, lower is better), encode GB/s and
decode GB/s (raw bytes per second, best of repeats by default — the statistic huff0's own
benchmark program reports; ``--stat median`` for medians) with one thread and with all threads,
for tensorpress's codecs against huff0 and FSE (zstd's Huffman and tANS coders, run by their own
C benchmark program when ``--huff0 SCRIPT`` or ``$TENSORPRESS_HUFF0`` names it), zstd (levels 1
and 3), constriction (ANS with a categorical model), dahuffman (pure-Python Huffman), zipnn, and
numpy memcpy as the ceiling.

Data: FP8 e4m3 bytes and the BF16 high-byte plane of the real all-MiniLM-L6-v2 weights, plus
synthetic Gaussian / Laplace weights rounded to e4m3. Sizes 1 MiB, 16 MiB and (tensorpress,
zstd, memcpy only) 256 MiB. Real data is tiled when a size exceeds it (noted in the table).

    python benches/compare.py                     # full run
    python benches/compare.py --sizes 1 16 --quick
    python benches/compare.py --huff0 PATH/TO/huff0/run.sh --sizes 1 32 --datasets minilm-e4m3 \
        --lanes 32 --only "tensorpress huffman" "tensorpress qlc" "tensorpress expgolomb-rank" \
        "zstd -3" "numpy"
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np

import tensorpress.entropy as te
from tensorpress import samples

MiB = 1 << 20
TP_CODECS = ["qlc", "dlc", "huffman", "expgolomb", "expgolomb-rank"]
ALL = os.cpu_count() or 1
FAILED: dict[str, str] = {}
#: How repeats are summarised: "best" (the minimum time, as huff0_bench reports) or "median".
STAT = {"name": "best"}


def _timeit(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up (also fills caches for the in-cache sizes)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) if STAT["name"] == "best" else statistics.median(times)


# ----------------------------------------------------------------------------- data


def datasets(sizes: list[int]) -> dict[str, dict[int, np.ndarray]]:
    w = samples.minilm_weights()
    flat = np.concatenate([v.reshape(-1).astype(np.float32) for v in w.values()])
    e4m3 = samples.to_e4m3(flat).view(np.uint8)
    bf16_hi = (flat.view(np.uint32) >> 24).astype(np.uint8)
    # The exponent plane tensorpress codes for bf16 tensors (the byte of bits 7-14).
    bf16_exp = ((flat.view(np.uint32) >> 23) & 0xFF).astype(np.uint8)
    rng = np.random.default_rng(0)
    n_max = max(sizes) * MiB
    scale = 448 / 128  # weights scaled into e4m3's range, like a per-tensor scale
    gauss = (
        (rng.standard_normal(n_max, dtype=np.float32) * scale).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    )
    lap = (rng.laplace(size=n_max).astype(np.float32) * scale).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)

    def sized(a: np.ndarray, n: int) -> np.ndarray:
        return np.ascontiguousarray(np.resize(a, n)) if n > a.size else np.ascontiguousarray(a[:n])

    out: dict[str, dict[int, np.ndarray]] = {}
    bf16 = (flat.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    for name, arr in [
        ("minilm-e4m3", e4m3),
        ("minilm-bf16-hi", bf16_hi),
        ("minilm-bf16-exp", bf16_exp),
        ("gauss-e4m3", gauss),
        ("laplace-e4m3", lap),
        ("minilm-bf16", bf16),
    ]:
        out[name] = {s: sized(arr, s * MiB) for s in sizes}
        out[name]["_real_bytes"] = arr.size  # type: ignore[index]
    return out


# ----------------------------------------------------------------------------- methods


def tp_method(codec: str, lanes: int) -> Callable[..., dict[str, float]]:
    def run(data: np.ndarray, repeats: int) -> dict[str, float]:
        blob = te.encode(data, codec=codec, lanes=lanes, threads=1)
        out = np.empty_like(data)
        assert np.array_equal(te.decode(blob), data)
        return {
            "ratio": len(blob) / data.size,
            "enc1": _timeit(lambda: te.encode(data, codec=codec, lanes=lanes, threads=1), repeats),
            "encN": _timeit(lambda: te.encode(data, codec=codec, lanes=lanes, threads=ALL), repeats),
            "dec1": _timeit(lambda: te.decode(blob, threads=1, out=out), repeats),
            "decN": _timeit(lambda: te.decode(blob, threads=ALL, out=out), repeats),
        }

    return run


def zstd_method(level: int) -> Callable[..., dict[str, float]]:
    import zstandard

    def run(data: np.ndarray, repeats: int) -> dict[str, float]:
        raw = data.tobytes()
        c1 = zstandard.ZstdCompressor(level=level)
        cn = zstandard.ZstdCompressor(level=level, threads=ALL)
        blob = c1.compress(raw)
        d = zstandard.ZstdDecompressor()
        assert d.decompress(blob) == raw
        dec = _timeit(lambda: d.decompress(blob), repeats)
        return {
            "ratio": len(blob) / data.size,
            "enc1": _timeit(lambda: c1.compress(raw), repeats),
            "encN": _timeit(lambda: cn.compress(raw), repeats),
            "dec1": dec,
            "decN": float("nan"),  # zstd frames decode on one thread
        }

    return run


def constriction_method() -> Callable[..., dict[str, float]]:
    import constriction

    def run(data: np.ndarray, repeats: int) -> dict[str, float]:
        counts = np.bincount(data, minlength=256).astype(np.float64)
        model = constriction.stream.model.Categorical(counts / counts.sum(), perfect=False)
        sym = data.astype(np.int32)

        def enc() -> np.ndarray:
            coder = constriction.stream.stack.AnsCoder()
            coder.encode_reverse(sym, model)
            return coder.get_compressed()

        comp = enc()
        dec_fn = lambda: constriction.stream.stack.AnsCoder(comp).decode(model, data.size)  # noqa: E731
        assert np.array_equal(dec_fn(), sym)
        return {
            "ratio": (comp.nbytes + 256 * 4) / data.size,  # + the model (256 float32 counts)
            "enc1": _timeit(enc, repeats),
            "encN": float("nan"),
            "dec1": _timeit(dec_fn, repeats),
            "decN": float("nan"),
        }

    return run


def dahuffman_method() -> Callable[..., dict[str, float]]:
    from dahuffman import HuffmanCodec

    def run(data: np.ndarray, repeats: int) -> dict[str, float]:
        raw = data.tobytes()
        codec = HuffmanCodec.from_data(raw)
        blob = codec.encode(raw)
        assert bytes(codec.decode(blob)) == raw
        return {
            "ratio": len(blob) / data.size,
            "enc1": _timeit(lambda: codec.encode(raw), 1),
            "encN": float("nan"),
            "dec1": _timeit(lambda: codec.decode(blob), 1),
            "decN": float("nan"),
        }

    return run


def zipnn_method() -> Callable[..., dict[str, float]]:
    import zipnn

    def run(data: np.ndarray, repeats: int) -> dict[str, float]:
        raw = data.tobytes()
        z1 = zipnn.ZipNN(method="huffman", input_format="byte", bytearray_dtype="bfloat16", threads=1)
        zn = zipnn.ZipNN(method="huffman", input_format="byte", bytearray_dtype="bfloat16", threads=ALL)
        blob = z1.compress(raw)
        back = bytes(z1.decompress(blob))
        if back != raw:
            raise AssertionError(f"round trip differs (ratio would be {len(blob) / len(raw):.4f})")
        return {
            "ratio": len(blob) / data.size,
            "enc1": _timeit(lambda: z1.compress(raw), repeats),
            "encN": _timeit(lambda: zn.compress(raw), repeats),
            "dec1": _timeit(lambda: z1.decompress(blob), repeats),
            "decN": _timeit(lambda: zn.decompress(blob), repeats),
        }

    return run


def tp_bf16_method(codec: str, lanes: int) -> Callable[..., dict[str, float]]:
    """Whole BF16 values: the high byte (sign + exponent) coded, the low byte stored raw; the
    numpy plane split and merge are timed too."""

    def run(data: np.ndarray, repeats: int) -> dict[str, float]:
        u16 = data.view(np.uint16)

        def enc(threads: int) -> tuple[bytes, np.ndarray]:
            return te.encode((u16 >> 8).astype(np.uint8), codec=codec, lanes=lanes, threads=threads), (
                u16 & 0xFF
            ).astype(np.uint8)

        blob, lo = enc(1)

        def dec(threads: int) -> np.ndarray:
            hi = te.decode(blob, threads=threads)
            return (hi.astype(np.uint16) << 8) | lo

        assert np.array_equal(dec(1), u16)
        return {
            "ratio": (len(blob) + lo.size) / data.size,
            "enc1": _timeit(lambda: enc(1), repeats),
            "encN": _timeit(lambda: enc(ALL), repeats),
            "dec1": _timeit(lambda: dec(1), repeats),
            "decN": _timeit(lambda: dec(ALL), repeats),
        }

    return run


#: Environment variable naming the huff0/FSE peer benchmark script (``run.sh FILE [reps]``).
HUFF0_ENV = "TENSORPRESS_HUFF0"


def huff0_method(script: str, which: str) -> Callable[..., dict[str, float]]:
    """huff0 or FSE (zstd's Huffman and tANS coders, single thread, 128 KiB blocks) through the
    peer's own benchmark program: ``script FILE REPS`` prints ratio, encode and decode MB/s."""
    import re
    import subprocess
    import tempfile

    def run(data: np.ndarray, repeats: int) -> dict[str, float]:
        with tempfile.NamedTemporaryFile(suffix=".bin") as f:
            f.write(data.tobytes())
            f.flush()
            res = subprocess.run(
                ["bash", script, f.name, str(max(repeats, 3))], capture_output=True, text=True, check=True
            )
        pattern = rf"^{which}: ratio ([0-9.]+) enc ([0-9.]+) MB/s dec ([0-9.]+) MB/s"
        m = re.search(pattern, res.stdout, re.MULTILINE)
        if m is None:
            raise RuntimeError(f"no '{which}' line in the peer's output: {res.stdout[-200:]!r}")
        ratio, enc, dec = (float(g) for g in m.groups())
        n = data.size
        return {
            "ratio": ratio,
            "enc1": n / (enc * 1e6),
            "encN": float("nan"),
            "dec1": n / (dec * 1e6),
            "decN": float("nan"),
        }

    return run


def memcpy_method() -> Callable[..., dict[str, float]]:
    def run(data: np.ndarray, repeats: int) -> dict[str, float]:
        out = np.empty_like(data)
        t = _timeit(lambda: np.copyto(out, data), max(repeats, 5))
        return {"ratio": 1.0, "enc1": t, "encN": float("nan"), "dec1": t, "decN": float("nan")}

    return run


def methods(
    lanes: list[int], huff0: str | None = None
) -> list[tuple[str, Callable[[], Callable[..., dict[str, float]]], str]]:
    """(name, factory, which sizes: 'all'; 'small' = 1 MiB only; 'mid' = ≤ 16 MiB; 'bf16' =
    whole-BF16 data only). ``huff0``: the peer's benchmark script, or None to leave it out."""
    ms: list[tuple[str, Callable[[], Callable[..., dict[str, float]]], str]] = []
    if huff0:
        ms += [
            ("huff0 (peer, 128 KiB blocks)", lambda: huff0_method(huff0, "huff0"), "all"),
            ("FSE (peer, 128 KiB blocks)", lambda: huff0_method(huff0, "fse"), "all"),
        ]
    for lane_count in lanes:
        for c in TP_CODECS:
            ms.append((f"tensorpress {c} L={lane_count}", lambda c=c, n=lane_count: tp_method(c, n), "all"))
    ms += [
        ("zstd -1", lambda: zstd_method(1), "all"),
        ("zstd -3", lambda: zstd_method(3), "all"),
        ("zipnn huffman", zipnn_method, "bf16"),
        ("tensorpress-bf16 qlc L=32", lambda: tp_bf16_method("qlc", 32), "bf16"),
        ("tensorpress-bf16 huffman L=32", lambda: tp_bf16_method("huffman", 32), "bf16"),
        ("constriction ANS", constriction_method, "mid"),
        ("dahuffman", dahuffman_method, "small"),
        ("numpy memcpy", memcpy_method, "all"),
    ]
    return ms


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 256], help="MiB")
    ap.add_argument("--lanes", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--datasets", nargs="+", default=None)
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument(
        "--huff0",
        default=os.environ.get(HUFF0_ENV),
        help=f"huff0/FSE benchmark script ('SCRIPT FILE REPS'), default ${HUFF0_ENV}",
    )
    ap.add_argument("--only", nargs="+", default=None, help="methods whose name starts with one of these")
    ap.add_argument(
        "--stat",
        choices=("best", "median"),
        default="best",
        help="summary of the repeats (best: as the huff0/FSE peer program reports)",
    )
    args = ap.parse_args()
    STAT["name"] = args.stat
    if not args.huff0:
        print(f"note: huff0/FSE rows left out: pass --huff0 SCRIPT or set {HUFF0_ENV}")
    elif not os.path.isfile(args.huff0):
        raise SystemExit(f"--huff0 {args.huff0!r}: no such file")

    print(f"# tensorpress compare — {platform.machine()} {platform.processor() or ''}, {ALL} CPUs")
    print(f"load average at start: {os.getloadavg()}; kernels: {te.kernels()}")
    print(f"statistic: {args.stat} of repeats")
    data = datasets(args.sizes)
    if args.datasets:
        data = {k: v for k, v in data.items() if k in args.datasets}
    print()
    print("| data | MiB | method | ratio | enc GB/s 1t | enc GB/s all | dec GB/s 1t | dec GB/s all |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    gb = lambda n, t: "—" if t != t else f"{n / t / 1e9:.3f}"  # noqa: E731  (t != t: NaN)
    for size in args.sizes:
        for dname, by_size in data.items():
            arr = by_size[size]
            tiled = " (tiled)" if size * MiB > by_size["_real_bytes"] else ""  # type: ignore[index]
            # Fewer repeats for bigger inputs: the total run stays in minutes.
            repeats = 3 if args.quick else {1: 9, 16: 5}.get(size, 2)
            for name, factory, which in methods(args.lanes, args.huff0):
                if (
                    args.only
                    and not name.startswith(tuple(args.only))
                    and not name.startswith(("huff0", "FSE"))
                ):
                    continue
                if (which == "small" and size > 1) or (which == "mid" and size > 16):
                    continue
                # Whole-BF16 rows (2-byte values) compare zipnn; byte planes compare the rest.
                if (which == "bf16") != (dname == "minilm-bf16") and not name.startswith(("zstd", "numpy")):
                    continue
                if dname == "minilm-bf16" and size > 16:
                    continue
                # 256 MiB: linear-cost check only — tensorpress at 32 lanes, zstd, memcpy, on three
                # datasets (keeps the run in minutes on a 2-core machine).
                if size > 16 and (
                    dname not in ("minilm-e4m3", "gauss-e4m3", "minilm-bf16-exp")
                    or not name.startswith(("tensorpress", "zstd", "numpy", "huff0", "FSE"))
                    or (name.startswith("tensorpress") and "L=32" not in name)
                ):
                    continue
                try:
                    r = factory()(arr, repeats)
                except Exception as exc:  # a peer that fails is recorded, not fatal
                    FAILED[name] = f"{type(exc).__name__}: {exc}"[:160]
                    continue
                n = arr.size
                print(
                    f"| {dname}{tiled} | {size} | {name} | {r['ratio']:.4f} "
                    f"| {gb(n, r['enc1'])} | {gb(n, r['encN'])} | {gb(n, r['dec1'])} | {gb(n, r['decN'])} |",
                    flush=True,
                )
    print()
    print(f"load average at end: {os.getloadavg()}")
    for name, why in FAILED.items():
        print(f"FAILED {name}: {why}")


if __name__ == "__main__":
    main()
