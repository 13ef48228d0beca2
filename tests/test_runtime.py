"""The runtime survives its surroundings: files changing underneath, interrupted writes, odd
arguments, safetensors interop. Each case reproduces a failure seen in a reliability sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import tensorpress as tp
from tensorpress.atomic import atomic_write
from tensorpress.errors import (
    FileChangedError,
    FormatError,
    InvalidArgumentError,
    InvalidTypeError,
    TensorpressError,
    WriteError,
)

ROOT = Path(__file__).resolve().parents[1]


def _run_child(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), *sys.path])}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _weights(n: int = 20_000) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(n).astype(np.float32)


# --- files changing underneath an open TpzFile ----------------------------------------------

TRUNCATE_THEN_READ = """
import os, sys, tensorpress as tp
from tensorpress.errors import FileChangedError
path, use_mmap = sys.argv[1], sys.argv[2] == "1"
f = tp.open(path, mmap=use_mmap)
os.truncate(path, 200)
try:
    f["b"]
except FileChangedError as exc:
    print("typed:", exc)
    sys.exit(0)
print("no error")
sys.exit(3)
"""


@pytest.mark.parametrize("use_mmap", [True, False])
def test_truncated_mapped_file_is_a_typed_error_not_sigbus(tmp_path: Path, use_mmap: bool) -> None:
    path = tmp_path / "m.tpz"
    tp.save({"a": _weights(), "b": _weights(50_000)}, path)
    result = _run_child(TRUNCATE_THEN_READ, str(path), "1" if use_mmap else "0")
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "changed while open" in result.stdout


def test_file_rewritten_in_place_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "m.tpz"
    tp.save({"a": _weights(), "b": _weights(50_000)}, path)
    other = tmp_path / "other.tpz"
    tp.save({"a": _weights(30_000)}, other)
    with tp.open(path) as f:
        np.testing.assert_array_equal(f["a"], _weights())
        time.sleep(0.01)  # a distinct mtime even on coarse-grained filesystems
        # What `cp other m.tpz` does: truncate the same inode and write new bytes into it.
        with open(path, "r+b") as dst:
            dst.truncate(0)
            dst.write(other.read_bytes())
        with pytest.raises(FileChangedError):
            f["b"]


def test_pread_mode_reads_the_same_tensors(tmp_path: Path) -> None:
    path = tmp_path / "m.tpz"
    tensors = {"a": _weights(), "e": _weights(999).astype(ml_dtypes.float8_e4m3fn)}
    tp.save(tensors, path)
    loaded = tp.load(path, mmap=False)
    for name, value in tensors.items():
        assert loaded[name].tobytes() == value.tobytes()


def test_closed_file_raises_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "m.tpz"
    tp.save({"a": _weights(100)}, path)
    f = tp.open(path)
    f.close()
    assert f.closed
    for access in (lambda: f["a"], lambda: f.entry("a"), lambda: f.compressed("a")):
        with pytest.raises(InvalidArgumentError, match="closed"):
            access()
    f.close()  # closing twice is harmless


# --- interrupted and failing writes ---------------------------------------------------------

SLOW_WRITE = """
import signal, sys, time
from tensorpress.atomic import atomic_write
# A parent (test runner, shell) may have left SIGTERM ignored; a real job starts with the default.
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGINT, signal.default_int_handler)
def write(f):
    f.write(b"x" * 4096)
    f.flush()
    print("writing", flush=True)
    time.sleep(300)
atomic_write(sys.argv[1], write)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_write_keeps_destination_and_removes_temp_file(tmp_path: Path, sig: int) -> None:
    dest = tmp_path / "model.tpz"
    dest.write_bytes(b"old contents")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), *sys.path])}
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITE, str(dest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "writing"
    assert len(list(tmp_path.glob(".model.tpz.*.tmp"))) == 1
    child.send_signal(sig)
    child.wait(timeout=120)
    assert child.returncode != 0
    if sig == signal.SIGTERM:
        assert child.returncode == -signal.SIGTERM  # still dies by the signal
    assert dest.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tpz"]


def test_temp_file_of_a_killed_writer_is_removed_by_the_next_save(tmp_path: Path) -> None:
    dest = tmp_path / "m.tpz"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), *sys.path])}
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITE, str(dest)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "writing"
    child.kill()
    child.wait(timeout=30)
    assert len(list(tmp_path.glob(".m.tpz.*.tmp"))) == 1  # SIGKILL cannot be intercepted
    tp.save({"a": _weights(100)}, dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tpz"]


def test_missing_parent_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="parent directory"):
        tp.save({"a": _weights(10)}, tmp_path / "no" / "such" / "m.tpz")
    assert not (tmp_path / "no").exists()


def test_write_errors_name_the_destination(tmp_path: Path) -> None:
    dest = tmp_path / "m.tpz"

    def fail(f: object) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(WriteError) as info:
        atomic_write(dest, fail)
    assert str(dest) in str(info.value) and ".tmp" not in str(info.value)
    assert isinstance(info.value, OSError) and info.value.errno == 28
    assert list(tmp_path.iterdir()) == []


def test_symlink_destination_is_written_through(tmp_path: Path) -> None:
    target = tmp_path / "real.tpz"
    tp.save({"a": _weights(10)}, target)
    link = tmp_path / "link.tpz"
    link.symlink_to(target)
    tp.save({"b": _weights(20)}, link)
    assert link.is_symlink()
    assert list(tp.load(target)) == ["b"]


def test_existing_file_keeps_its_permissions(tmp_path: Path) -> None:
    dest = tmp_path / "m.tpz"
    tp.save({"a": _weights(10)}, dest)
    dest.chmod(0o640)
    tp.save({"a": _weights(20)}, dest)
    assert dest.stat().st_mode & 0o777 == 0o640


# --- odd arguments --------------------------------------------------------------------------


def test_unsupported_tensor_kinds_are_refused() -> None:
    torch = pytest.importorskip("torch")
    bad = [
        torch.zeros(3, 3).to_sparse(),
        torch.empty(3, device="meta"),
        torch.tensor([0x23], dtype=torch.uint8).view(torch.uint4),
        np.array([object()]),
        np.zeros(3, np.complex64),
    ]
    for value in bad:
        with pytest.raises(InvalidArgumentError):
            tp.compress(value)


@pytest.mark.parametrize("value", [b"abc", "abc", 3, None, np.zeros(3)])
def test_decompress_refuses_what_is_not_stored(value: object) -> None:
    with pytest.raises(InvalidTypeError):
        tp.decompress(value)


def test_lone_surrogate_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="surrogate"):
        tp.save({"w\ud800": _weights(10)}, tmp_path / "m.tpz")
    with pytest.raises(InvalidArgumentError, match="surrogate"):
        tp.save({"w": _weights(10)}, tmp_path / "m.tpz", metadata={"k": "\udfff"})


# --- safetensors interop --------------------------------------------------------------------

SAFETENSORS_DTYPES = [
    np.float32,
    np.float16,
    ml_dtypes.bfloat16,
    ml_dtypes.float8_e4m3fn,
    ml_dtypes.float8_e5m2,
]


@pytest.mark.parametrize("dtype", SAFETENSORS_DTYPES, ids=lambda d: np.dtype(d).name)
def test_safetensors_round_trip_every_float_dtype(tmp_path: Path, dtype: type) -> None:
    arr = (_weights(600).reshape(20, 30) / 4).astype(dtype)
    path = tmp_path / "w.safetensors"
    tp.save({"w": arr, "b": np.arange(5, dtype=np.int64)}, path, metadata={"k": "v"})
    back = tp.load(path)
    assert back["w"].dtype == arr.dtype and back["w"].shape == arr.shape
    assert back["w"].tobytes() == arr.tobytes()
    assert back["b"].tolist() == list(range(5))


def test_safetensors_fp8_written_by_the_cli_reads_back(tmp_path: Path) -> None:
    arr = (_weights(4096).reshape(64, 64) / 8).astype(ml_dtypes.float8_e4m3fn)
    tp.save({"w": arr}, tmp_path / "w.tpz")
    out = tmp_path / "w.safetensors"
    result = subprocess.run(
        [sys.executable, "-m", "tensorpress.cli", "decompress", str(tmp_path / "w.tpz"), str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), *sys.path])},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert tp.load(out)["w"].tobytes() == arr.tobytes()


def test_safetensors_int4_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="no int4"):
        tp.save({"q": np.arange(8).astype(ml_dtypes.int4)}, tmp_path / "q.safetensors")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:5],
        lambda b: (10**12).to_bytes(8, "little") + b[8:],
        lambda b: b[:8] + b"[" + b[9:],
        lambda b: b[:-3],
        lambda b: b[:8] + b[8:].replace(b'"F32"', b'"F33"'),
        lambda b: b[:8] + b[8:].replace(b"[8,6]", b"[8,9]"),
    ],
    ids=["short", "huge-header", "bad-json", "truncated-data", "unknown-dtype", "wrong-shape"],
)
def test_corrupt_safetensors_is_a_format_error(tmp_path: Path, mutate: object) -> None:
    path = tmp_path / "w.safetensors"
    tp.save({"w": _weights(48).reshape(8, 6)}, path)
    path.write_bytes(mutate(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(FormatError):
        tp.load(path)


def test_safetensors_max_size_is_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    tp.save({"w": _weights(1000)}, path)
    with pytest.raises(TensorpressError, match="max_size"):
        tp.load(path, max_size=100)
    assert tp.load(path, max_size=4000)["w"].size == 1000


# --- the CLI on empty and hostile inputs ------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tensorpress.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), *sys.path])},
        timeout=120,
    )


def _with_header_text(data: bytes, edit: Callable[[bytes], bytes]) -> bytes:
    """A .tpz whose JSON header text is ``edit(text)``, stored as before (zlib or plain, leading
    or trailing), every checksum recomputed; the payloads are unchanged."""
    import zlib

    from golden import make_golden

    flags = int.from_bytes(data[12:16], "little")
    _, region = make_golden.split(data)
    text = edit(make_golden.header_json(data))
    header = zlib.compress(text, 9) if flags & 1 else text
    zlib_flag, trailing = bool(flags & 1), bool(flags & 2)
    return make_golden.build(None, region, header_text=header, zlib_flag=zlib_flag, trailing=trailing)


def test_cli_handles_empty_inputs(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({}, str(tmp_path / "empty.safetensors"))
    tp.save({}, tmp_path / "empty.tpz")
    for args in (["bench", "empty.safetensors"], ["bench", "empty.tpz"], ["inspect", "empty.tpz"]):
        result = _cli(*(str(tmp_path / a) if a.startswith("empty") else a for a in args))
        assert result.returncode == 0 and "Traceback" not in result.stderr, (args, result.stderr)


def test_cli_decoded_size_budget(tmp_path: Path) -> None:
    tp.save({"a": _weights(1000)}, tmp_path / "a.tpz")
    refused = _cli("decompress", str(tmp_path / "a.tpz"), str(tmp_path / "a.safetensors"), "--max-size", "1K")
    assert refused.returncode == 1 and "max_size" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "a.safetensors").exists()
    # The default budget (physical memory) lets ordinary files through; "none" lifts it.
    for extra in ([], ["--max-size", "none"]):
        ok = _cli(*extra, "decompress", str(tmp_path / "a.tpz"), str(tmp_path / "a.safetensors"))
        assert ok.returncode == 0, ok.stderr
        assert tp.load(tmp_path / "a.safetensors")["a"].tobytes() == _weights(1000).tobytes()


def test_lone_surrogate_name_in_a_file_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "s.tpz"
    tp.save({"abcdef": _weights(10)}, path)
    path.write_bytes(_with_header_text(path.read_bytes(), lambda t: t.replace(b'"abcdef"', b'"\\ud800"')))
    with pytest.raises(FormatError, match="surrogate"):
        tp.open(path)
    result = _cli("inspect", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
