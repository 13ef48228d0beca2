"""The ``tensorpress`` command line: compress, decompress, inspect, bench, demo.

Inputs are Hugging Face model folders (``config.json`` + safetensors, or a folder written by
``tensorpress compress``) or single ``.safetensors`` / ``.tpz`` files. Global options (``-q``,
``--threads``) go before or after the subcommand.

Exit codes: 0 success, 1 bad data (format, checksum, corruption), 2 usage error (bad option,
missing input, contradictory output name), 3 missing optional backend, 4 other I/O error.
Errors print one line (``tensorpress: ...``) naming the path, never a traceback; output into a
closed pipe (``tensorpress inspect f.tpz | head``) ends silently.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from tensorpress import container, entropy, tensors
from tensorpress.errors import BackendUnavailableError, InvalidArgumentError, TensorpressError

EXIT_DATA_ERROR = 1
EXIT_USAGE = 2
EXIT_BACKEND = 3
EXIT_IO = 4
EXIT_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer killed by a closed pipe

#: ``--cast`` targets: float dtypes and their common aliases.
CAST_ALIASES = {
    "float64": "float64",
    "fp64": "float64",
    "double": "float64",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float8_e4m3fn": "float8_e4m3fn",
    "fp8": "float8_e4m3fn",
    "e4m3": "float8_e4m3fn",
    "fp8_e4m3": "float8_e4m3fn",
    "float8_e5m2": "float8_e5m2",
    "e5m2": "float8_e5m2",
    "fp8_e5m2": "float8_e5m2",
}
METHODS = ("lossless", "blockwise", "tender-group", "video")


class UsageError(InvalidArgumentError):
    """A command line that cannot work (exit 2)."""


def cast_dtype(name: str) -> np.dtype:
    """The numpy dtype of a ``--cast`` target; integer/bool targets and unknown names refused."""
    key = name.strip().lower().removeprefix("torch.")
    if key not in CAST_ALIASES:
        valid = ", ".join(sorted({*CAST_ALIASES.values(), "bf16", "fp16", "fp8"}))
        kind = (
            "not a float type (casting weights to it would destroy them)" if _is_int_name(key) else "unknown"
        )
        raise UsageError(f"--cast {name}: {kind}; valid targets: {valid}")
    return tensors.dtype_from_name(CAST_ALIASES[key])


def _is_int_name(key: str) -> bool:
    return key.startswith(("int", "uint", "bool"))


def _say(args: argparse.Namespace, *lines: str) -> None:
    if not args.quiet:
        for line in lines:
            print(line)


def _mb(n: float) -> str:
    return f"{n / 1e6:,.2f} MB"


def _existing(path_text: str) -> Path:
    path = Path(path_text)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    return path


def _file_kind(path: Path) -> str:
    if path.suffix not in (".tpz", ".safetensors"):
        raise UsageError(f"{path}: expected a model folder, a .safetensors or a .tpz file")
    return path.suffix


def _byte_size(text: str) -> int:
    """``2G``, ``256M``, ``512K`` or plain bytes (binary multiples), at least 1."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = units.get(t[-1:], 1)
    try:
        n = int(float(t[:-1] if scale > 1 else t) * scale)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 256M or 2G") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a shard holds at least one byte")
    return n


def _max_size(text: str) -> int | str:
    return "none" if text.strip().lower() in ("none", "unlimited") else _byte_size(text)


def decode_budget(args: argparse.Namespace) -> int | None:
    """Decoded-bytes limit for reading files (``--max-size``). The default is the machine's
    physical memory: a file declaring more could not be decoded anyway, and a small hostile file
    may declare terabytes (tensorpress decompresses up to ~1.6 M:1 by design)."""
    chosen = getattr(args, "max_size", None)
    if chosen == "none":
        return None
    if isinstance(chosen, int):
        return chosen
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _constraint(args: argparse.Namespace) -> dict[str, Any]:
    given = [args.lossless, args.bits_per_value is not None, args.max_rel_error is not None]
    if sum(given) > 1:
        raise UsageError("give one of --lossless, --bits-per-value, --max-rel-error")
    if args.method not in (None, "lossless") and not any(given[1:]):
        raise UsageError(f"--method {args.method} is lossy: add --bits-per-value or --max-rel-error")
    if args.keep and not any(given[1:]):
        raise UsageError("--keep only matters with --bits-per-value or --max-rel-error")
    return {
        "lossless": True if args.lossless else None,
        "bits_per_value": args.bits_per_value,
        "max_rel_error": args.max_rel_error,
        "method": args.method,
        "keep": args.keep or (),
        "strict": args.strict,
    }


def _progress(args: argparse.Namespace) -> Any:
    if args.quiet:
        return None
    return lambda msg: print(f"  {msg}", file=sys.stderr)


def cmd_compress(args: argparse.Namespace) -> int:
    src, dst = _existing(args.input), Path(args.output)
    options = _constraint(args)
    if src.is_dir():
        if dst.suffix in (".tpz", ".safetensors"):
            raise UsageError(f"{dst}: a folder compresses into a folder, not a {dst.suffix} file")
        if args.cast:
            raise UsageError("--cast applies to files; cast the model before saving a folder")
        if args.threads is not None or args.codec != "auto":
            # A folder's tensors are planned one by one (codec per plane) and coded side by side
            # on every core (--workers for streamed folders): neither option would be honoured.
            raise UsageError(
                "--threads and --codec apply to files; a folder uses every core and picks codecs per plane"
            )
        from tensorpress.hf import save_pretrained

        start = time.perf_counter()
        ranks = int(os.environ.get("WORLD_SIZE", "1"))
        stream = {"streaming": args.resume or args.workers > 1 or ranks > 1, "workers": args.workers}
        if args.max_shard_size is not None:
            stream["max_shard_size"] = args.max_shard_size
        saved = save_pretrained(src, dst, progress=_progress(args), **options, **stream)
        elapsed = time.perf_counter() - start
        _say(
            args,
            f"{src} -> {dst}: {_mb(saved.raw_nbytes)} -> {_mb(saved.nbytes)} "
            f"({100 * saved.nbytes / max(saved.raw_nbytes, 1):.2f} %, {saved.bits_per_value:.3f} bits/value, "
            f"{saved.constraint}) in {elapsed:.2f} s",
        )
        return 0
    _file_kind(src)
    if dst.suffix != ".tpz":
        raise UsageError(f"{dst}: compress writes a .tpz file (use decompress for .safetensors)")
    arrays = container.load(src, as_kind="numpy", max_size=decode_budget(args))
    source_bytes = sum(a.nbytes for a in arrays.values())
    if args.cast:
        dtype = cast_dtype(args.cast)
        arrays = {k: v.astype(dtype) if _is_float(v) else v for k, v in arrays.items()}
    start = time.perf_counter()
    if options["lossless"] or (options["bits_per_value"] is None and options["max_rel_error"] is None):
        if options["method"] not in (None, "lossless"):
            raise UsageError("--method needs a lossy constraint")
        container.save(arrays, dst, args.codec, threads=args.threads, progress=not args.quiet)
    else:
        from tensorpress.hf import compress_state

        packed, _, _ = compress_state(arrays, progress=_progress(args), **options)
        container.save(packed, dst)
    elapsed = time.perf_counter() - start
    size = dst.stat().st_size
    cast = f" (cast to {args.cast})" if args.cast else ""
    _say(
        args,
        f"{src} -> {dst}{cast}: {_mb(source_bytes)} -> {_mb(size)} "
        f"({100 * size / max(source_bytes, 1):.2f} % of the source) in {elapsed:.2f} s",
    )
    return 0


def _is_float(arr: np.ndarray) -> bool:
    return tensors.dtype_name(arr.dtype) in (
        "float64",
        "float32",
        "float16",
        "bfloat16",
        "float8_e4m3fn",
        "float8_e5m2",
    )


def cmd_decompress(args: argparse.Namespace) -> int:
    src, dst = _existing(args.input), Path(args.output)
    if src.is_dir():
        if dst.suffix in (".tpz", ".safetensors"):
            raise UsageError(f"{dst}: a folder decompresses into a folder, not a {dst.suffix} file")
        from tensorpress.hf import decompress_folder

        decompress_folder(src, dst)
        _say(args, f"{src} -> {dst}: plain Hugging Face folder (model.safetensors)")
        return 0
    _file_kind(src)
    if dst.suffix != ".safetensors":
        raise UsageError(f"{dst}: decompress writes a .safetensors file (a .tpz would still be compressed)")
    arrays = container.load(src, as_kind="numpy", progress=not args.quiet, max_size=decode_budget(args))
    container.save(arrays, dst, progress=False)
    _say(args, f"{src} -> {dst}: {len(arrays)} tensors")
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


def _tpz_files(path: Path) -> list[Path]:
    """The ``.tpz`` files of a compressed folder, or the file itself."""
    if path.is_dir():
        from tensorpress.hf_folder import tpz_shards

        return tpz_shards(path)[0]
    return [path]


def cmd_inspect(args: argparse.Namespace) -> int:
    rows: list[list[str]] = []
    total_raw = total = 0
    for path in _tpz_files(_existing(args.file)):
        more, raw, size = _inspect_rows(path)
        rows += more
        total_raw += raw
        total += size
    print(_table(["tensor", "dtype", "shape", "method", "codec", "ratio", "plan"], rows))
    if total_raw:
        print(
            f"\n{len(rows)} tensors, {_mb(total_raw)} raw -> {_mb(total)} payload "
            f"({100 * total / total_raw:.2f} %)"
        )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Decode throughput of every tensor of a .tpz, and of each codec on a .safetensors."""
    path = _existing(args.file)
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
            if not raw:
                break
            rows.append(
                [codec, f"{100 * size / raw:.2f} %", f"{raw / enc / 1e9:.3f}", f"{raw / dec / 1e9:.3f}"]
            )
        if not rows:
            print(f"{path}: no tensor values to benchmark")
            return 0
        print(_table(["codec", "ratio", "encode GB/s", "decode GB/s"], rows))
        return 0
    raw = 0
    start = time.perf_counter()
    for tpz in _tpz_files(path):
        with container.open(tpz, max_size=decode_budget(args)) as f:
            for name in f:
                raw += np.asarray(tensors.to_numpy(f[name])[0]).nbytes
    elapsed = time.perf_counter() - start
    if not raw:
        print(f"{path}: no tensor values to decode")
        return 0
    print(f"decoded {_mb(raw)} in {elapsed:.3f} s: {raw / elapsed / 1e9:.3f} GB/s (checksums included)")
    return 0


#: Timed runs per row of ``tensorpress demo`` (the table shows the fastest).
DEMO_REPEATS = 3


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
            # Best of DEMO_REPEATS: one cold call (thread pool start, first page faults) is not
            # what a user loading many models sees, and this VM's timings jump from run to run.
            enc = dec = float("inf")
            for repeat in range(DEMO_REPEATS):
                path.unlink(missing_ok=True)
                start = time.perf_counter()
                container.save(
                    arrays, path, args.codec, threads=args.threads, progress=not (args.quiet or repeat)
                )
                enc = min(enc, time.perf_counter() - start)
                start = time.perf_counter()
                restored = container.load(path)
                dec = min(dec, time.perf_counter() - start)
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
                    f"{raw / enc / 1e6:,.0f} MB/s",
                    f"{raw / dec / 1e6:,.0f} MB/s",
                    "bit-exact",
                ]
            )
    print(_table(["weights", "raw", ".tpz", "ratio", "zstd-3", "compress", "decompress", "round trip"], rows))
    e4m3 = np.concatenate([v.view(np.uint8).reshape(-1) for v in variants["e4m3"].values() if v.ndim == 2])
    _say(args, "", "Entropy codes on the e4m3 bytes of every MiniLM matrix:", str(entropy.stats(e4m3)))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _global_options(p: argparse.ArgumentParser, default: Any) -> None:
    # Given to the main parser and to every subcommand; the subcommands' defaults are SUPPRESS
    # so an option given before the subcommand is not reset by the subparser.
    p.add_argument("-q", "--quiet", action="store_true", default=default, help="no progress or summaries")
    p.add_argument(
        "--threads",
        type=int,
        default=None if default is False else default,
        help="worker threads (default: all)",
    )
    p.add_argument(
        "--max-size",
        type=_max_size,
        default=None if default is False else default,
        metavar="SIZE",
        help="refuse files whose tensors declare more decoded bytes (e.g. 4G; 'none' = no limit; "
        "default: this machine's physical memory)",
    )


def _constraint_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to keep (default: lossless)")
    g.add_argument("--lossless", action="store_true", help="bit-exact (the default)")
    g.add_argument(
        "--bits-per-value", type=float, default=None, metavar="B", help="model average bits/value (lossy)"
    )
    g.add_argument(
        "--max-rel-error", type=float, default=None, metavar="E", help="relative MSE bound per tensor (lossy)"
    )
    g.add_argument("--method", choices=METHODS, default=None, help="restrict the lossy method")
    g.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="PATTERN",
        help="keep matching tensors lossless (repeatable)",
    )
    g.add_argument("--strict", action="store_true", help="fail when --bits-per-value cannot be met")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tensorpress", description="Shrink the tensors of LLMs.")
    parser.add_argument("--version", action="version", version=f"tensorpress {_version()}")
    _global_options(parser, False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        _global_options(p, argparse.SUPPRESS)
        return p

    codec_choices = ["auto", *entropy.CODECS]
    p = common(
        sub.add_parser(
            "compress",
            help="compress a model folder into a folder, or a .safetensors/.tpz file into a .tpz",
        )
    )
    p.add_argument("input", help="HF model folder, .safetensors or .tpz")
    p.add_argument("output", help="output folder (for a folder input) or .tpz file")
    p.add_argument("--codec", default="auto", choices=codec_choices, help="entropy code (lossless files)")
    p.add_argument(
        "--cast", default=None, help="cast float tensors of a file first: bf16, fp16, fp8 (e4m3), e5m2, fp32"
    )
    _constraint_options(p)
    g = p.add_argument_group("large models (folders; streamed tensor by tensor, see README)")
    g.add_argument("--workers", type=int, default=1, help="tensors compressed at once (threads)")
    g.add_argument(
        "--resume", action="store_true", help="stream, and continue a killed run: finished shards are kept"
    )
    g.add_argument(
        "--max-shard-size", type=_byte_size, default=None, help="bytes per output shard (e.g. 256M, 2G)"
    )
    p.set_defaults(func=cmd_compress)

    p = common(
        sub.add_parser(
            "decompress", help="a compressed folder back to a plain HF folder, or a .tpz to .safetensors"
        )
    )
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(func=cmd_decompress)

    p = common(sub.add_parser("inspect", help="per-tensor table of a .tpz or compressed folder"))
    p.add_argument("file")
    p.set_defaults(func=cmd_inspect)

    p = common(
        sub.add_parser("bench", help="decode speed of a .tpz/folder, or every codec on a .safetensors")
    )
    p.add_argument("file")
    p.set_defaults(func=cmd_bench)

    p = common(sub.add_parser("demo", help="compress the real MiniLM weights (fp32, bf16, e4m3) and verify"))
    p.add_argument("--codec", default="auto", choices=codec_choices)
    p.set_defaults(func=cmd_demo)
    return parser


def _version() -> str:
    from tensorpress import __version__

    return __version__


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except BackendUnavailableError as exc:
        return _fail(str(exc), EXIT_BACKEND)
    except InvalidArgumentError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except TensorpressError as exc:
        return _fail(f"{type(exc).__name__}: {exc}", EXIT_DATA_ERROR)
    except (FileNotFoundError, NotADirectoryError) as exc:
        return _fail(f"{exc.filename}: {exc.strerror or 'not found'}", EXIT_USAGE)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", EXIT_IO)
    except KeyboardInterrupt:
        return 130
    except (ValueError, TypeError, KeyError, MemoryError) as exc:  # unreadable input
        return _fail(f"{type(exc).__name__}: {exc}", EXIT_DATA_ERROR)


def _fail(message: str, code: int) -> int:
    print(f"tensorpress: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = _run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): say nothing, and keep Python's exit-time flush quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
