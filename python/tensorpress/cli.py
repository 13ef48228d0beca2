"""The ``tensorpress`` command line: compress, decompress, inspect, bench, demo.

Exit codes: 0 success, 1 bad data (format, checksum, corruption), 2 usage error,
3 missing optional backend, 4 file not found or unreadable.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tensorpress import container, entropy, tensors
from tensorpress.errors import BackendUnavailableError, InvalidArgumentError, TensorpressError

EXIT_DATA_ERROR = 1
EXIT_USAGE = 2
EXIT_BACKEND = 3
EXIT_IO = 4


def _say(args: argparse.Namespace, *lines: str) -> None:
    if not args.quiet:
        for line in lines:
            print(line)


def _mb(n: float) -> str:
    return f"{n / 1e6:,.2f} MB"


def _load_any(path: Path, progress: bool) -> dict[str, Any]:
    return container.load(path, progress=progress)


def cmd_compress(args: argparse.Namespace) -> int:
    src, dst = Path(args.input), Path(args.output)
    arrays = _load_any(src, progress=False)
    if args.cast:
        dtype = tensors.dtype_from_name(args.cast)
        arrays = {k: v.astype(dtype) if np.issubdtype(v.dtype, np.floating) else v for k, v in arrays.items()}
    start = time.perf_counter()
    container.save(arrays, dst, args.codec, threads=args.threads, progress=not args.quiet)
    elapsed = time.perf_counter() - start
    raw = sum(a.nbytes for a in arrays.values())
    size = dst.stat().st_size
    _say(
        args,
        f"{src} -> {dst}: {_mb(raw)} -> {_mb(size)} ({100 * size / max(raw, 1):.2f} %) in {elapsed:.2f} s",
    )
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    arrays = container.load(args.input, as_kind="numpy", progress=not args.quiet)
    container.save(arrays, args.output, progress=False)
    _say(args, f"{args.input} -> {args.output}: {len(arrays)} tensors")
    return 0


def _inspect_rows(path: Path) -> tuple[list[list[str]], int, int]:
    rows = []
    total_raw = total = 0
    with container.open(path) as f:
        plans = _plans(f.metadata)
        for e in f.entries():
            raw = e.get("raw_nbytes") or 0
            total_raw += raw
            total += e["length"]
            ratio = f"{100 * e['length'] / raw:.2f} %" if raw else "-"
            shape = "x".join(str(d) for d in e.get("shape") or []) or "scalar"
            plan = plans.get(e["name"], {}).get("summary", "-")
            rows.append([e["name"], str(e.get("dtype")), shape, e["method"], str(e["codec"]), ratio, plan])
    return rows, total_raw, total


def _plans(metadata: dict[str, str]) -> dict[str, Any]:
    """Per-tensor plan records written by ``tensorpress.save_model`` (empty otherwise)."""
    from tensorpress.models import plans_from_metadata

    return plans_from_metadata(metadata)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows]
    )


def cmd_inspect(args: argparse.Namespace) -> int:
    path = Path(args.file)
    rows, total_raw, total = _inspect_rows(path)
    print(_table(["tensor", "dtype", "shape", "method", "codec", "ratio", "plan"], rows))
    if total_raw:
        print(
            f"\n{len(rows)} tensors, {_mb(total_raw)} raw -> {_mb(total)} payload "
            f"({100 * total / total_raw:.2f} %)"
        )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Decode throughput of every tensor of a .tpz, and of each codec on a .safetensors."""
    path = Path(args.file)
    if path.suffix == ".safetensors":
        arrays = container.load(path)
        rows = []
        for codec in ("auto", *entropy.CODECS):
            if codec == "raw":
                continue
            start = time.perf_counter()
            packed = {k: tensors.compress(v, codec, threads=args.threads) for k, v in arrays.items()}
            enc = time.perf_counter() - start
            start = time.perf_counter()
            for c in packed.values():
                tensors.decompress(c, threads=args.threads)
            dec = time.perf_counter() - start
            raw = sum(c.raw_nbytes for c in packed.values())
            size = sum(c.nbytes for c in packed.values())
            rows.append(
                [codec, f"{100 * size / raw:.2f} %", f"{raw / enc / 1e9:.3f}", f"{raw / dec / 1e9:.3f}"]
            )
        print(_table(["codec", "ratio", "encode GB/s", "decode GB/s"], rows))
        return 0
    with container.open(path) as f:
        raw = 0
        start = time.perf_counter()
        for name in f:
            raw += np.asarray(tensors.to_numpy(f[name])[0]).nbytes
        elapsed = time.perf_counter() - start
    print(f"decoded {_mb(raw)} in {elapsed:.3f} s: {raw / elapsed / 1e9:.3f} GB/s (checksums included)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Compress the real MiniLM weights as fp32, bf16 and e4m3; verify; print the table."""
    import ml_dtypes

    from tensorpress import samples

    weights = samples.minilm_weights()
    n_params = sum(w.size for w in weights.values())
    _say(
        args,
        f"MiniLM-L6-v2: {len(weights)} tensors, {n_params / 1e6:.1f} M parameters "
        f"({samples.minilm_safetensors()})",
    )
    variants = {
        "fp32": weights,
        "bf16": {k: v.astype(ml_dtypes.bfloat16) for k, v in weights.items()},
        "e4m3": {k: samples.to_e4m3(v) for k, v in weights.items()},
    }
    zstandard: Any
    try:
        import zstandard
    except ImportError:
        zstandard = None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, arrays in variants.items():
            path = Path(tmp) / f"minilm-{label}.tpz"
            start = time.perf_counter()
            container.save(arrays, path, args.codec, threads=args.threads, progress=not args.quiet)
            enc = time.perf_counter() - start
            start = time.perf_counter()
            restored = container.load(path)
            dec = time.perf_counter() - start
            for k, v in arrays.items():
                if restored[k].dtype != v.dtype or restored[k].tobytes() != v.tobytes():
                    print(f"round trip FAILED for {label}/{k}", file=sys.stderr)
                    return EXIT_DATA_ERROR
            raw = sum(v.nbytes for v in arrays.values())
            size = path.stat().st_size
            zstd = "-"
            if zstandard is not None:
                cctx = zstandard.ZstdCompressor(level=3)
                zsize = sum(len(cctx.compress(np.ascontiguousarray(v).tobytes())) for v in arrays.values())
                zstd = f"{100 * zsize / raw:.2f} %"
            rows.append(
                [
                    label,
                    _mb(raw),
                    _mb(size),
                    f"{100 * size / raw:.2f} %",
                    zstd,
                    f"{enc:.2f} s",
                    f"{dec:.2f} s",
                    "bit-exact",
                ]
            )
    print(_table(["weights", "raw", ".tpz", "ratio", "zstd-3", "compress", "decompress", "round trip"], rows))
    e4m3 = np.concatenate([v.view(np.uint8).reshape(-1) for v in variants["e4m3"].values() if v.ndim == 2])
    _say(args, "", "Entropy codes on the e4m3 bytes of every MiniLM matrix:", str(entropy.stats(e4m3)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tensorpress", description="Shrink the tensors of LLMs.")
    parser.add_argument("--version", action="version", version=f"tensorpress {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
        p.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
        return p

    codec_choices = ["auto", *entropy.CODECS]
    p = common(sub.add_parser("compress", help="compress a .safetensors or .tpz file into a .tpz file"))
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--codec", default="auto", choices=codec_choices)
    p.add_argument("--cast", default=None, help="cast floating tensors first (e.g. bfloat16, float8_e4m3fn)")
    p.set_defaults(func=cmd_compress)

    p = common(sub.add_parser("decompress", help="decompress a .tpz file (to .safetensors or .tpz)"))
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=cmd_decompress)

    p = common(sub.add_parser("inspect", help="per-tensor table: dtype, shape, method, codec, ratio"))
    p.add_argument("file")
    p.set_defaults(func=cmd_inspect)

    p = common(sub.add_parser("bench", help="decode speed of a .tpz, or every codec on a .safetensors"))
    p.add_argument("file")
    p.set_defaults(func=cmd_bench)

    p = common(sub.add_parser("demo", help="compress the real MiniLM weights (fp32, bf16, e4m3) and verify"))
    p.add_argument("--codec", default="auto", choices=codec_choices)
    p.set_defaults(func=cmd_demo)
    return parser


def _version() -> str:
    from tensorpress import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args))
    except BackendUnavailableError as exc:
        print(f"tensorpress: {exc}", file=sys.stderr)
        code = EXIT_BACKEND
    except InvalidArgumentError as exc:
        print(f"tensorpress: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except TensorpressError as exc:
        print(f"tensorpress: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = EXIT_DATA_ERROR
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"tensorpress: {exc.strerror}: {exc.filename}", file=sys.stderr)
        code = EXIT_IO
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
