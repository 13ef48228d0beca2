"""The tensorpress command line, run in-process and as a console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tensorpress as tp
from tensorpress import cli

GOLDEN = Path(__file__).parent / "golden"


def run(*argv: str) -> int:
    return cli.main(list(argv))


def test_compress_inspect_decompress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.safetensors"
    tp.save({"w": np.linspace(-1, 1, 4096, dtype=np.float32).reshape(64, 64)}, src)
    assert run("compress", str(src), str(tmp_path / "c.tpz"), "--cast", "bfloat16", "-q") == 0
    assert run("inspect", str(tmp_path / "c.tpz")) == 0
    out = capsys.readouterr().out
    assert "bfloat16" in out and "64x64" in out and "%" in out
    assert run("decompress", str(tmp_path / "c.tpz"), str(tmp_path / "out.safetensors"), "-q") == 0
    back = tp.load(tmp_path / "out.safetensors")["w"]
    assert back.dtype.name == "bfloat16" and back.shape == (64, 64)
    assert run("bench", str(tmp_path / "c.tpz")) == 0
    assert "GB/s" in capsys.readouterr().out


def test_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("inspect", str(tmp_path / "missing.tpz")) == cli.EXIT_IO
    shutil.copy(GOLDEN / "v1-header-flip.tpz", tmp_path / "bad.tpz")
    assert run("inspect", str(tmp_path / "bad.tpz")) == cli.EXIT_DATA_ERROR
    err = capsys.readouterr().err
    assert "ChecksumError" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        run("compress")
    assert exc.value.code == 2


def test_demo_on_real_weights(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("demo", "-q") == 0
    out = capsys.readouterr().out
    assert out.count("bit-exact") == 3
    bf16 = next(line for line in out.splitlines() if line.startswith("bf16"))
    ratio = float(bf16.split()[5])  # "bf16  45.43 MB  30.31 MB  66.73 %" -> 66.73
    assert ratio <= 67.0


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "tensorpress"
    assert exe.exists()
    done = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("tensorpress ")
