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
    assert run("inspect", str(tmp_path / "missing.tpz")) == cli.EXIT_USAGE
    missing = tmp_path / "missing.tpz"
    assert capsys.readouterr().err.strip() == f"tensorpress: {missing}: no such file or folder"
    shutil.copy(GOLDEN / "v1-header-flip.tpz", tmp_path / "bad.tpz")
    assert run("inspect", str(tmp_path / "bad.tpz")) == cli.EXIT_DATA_ERROR
    err = capsys.readouterr().err
    assert "ChecksumError" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        run("compress")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "input, output" in err


@pytest.fixture
def small_file(tmp_path: Path) -> Path:
    src = tmp_path / "in.safetensors"
    tp.save({"w": np.linspace(-1, 1, 4096, dtype=np.float32).reshape(64, 64)}, src)
    return src


@pytest.mark.parametrize("alias", ["bf16", "BF16", "fp16", "half", "fp8", "e5m2", "torch.bfloat16"])
def test_cast_accepts_float_aliases(small_file: Path, alias: str) -> None:
    out = small_file.parent / "c.tpz"
    assert run("compress", str(small_file), str(out), "--cast", alias, "-q") == 0
    assert tp.load(out)["w"].dtype == cli.cast_dtype(alias)


@pytest.mark.parametrize("target", ["int8", "uint4", "bool", "int4", "nonsense"])
def test_cast_refuses_non_float_targets(
    small_file: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = small_file.parent / "c.tpz"
    assert run("compress", str(small_file), str(out), "--cast", target) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bf16" in err and "float8_e4m3fn" in err
    assert not out.exists()


def test_output_extension_must_fit_the_command(small_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tpz = small_file.parent / "c.tpz"
    assert run("compress", str(small_file), str(small_file.parent / "c.safetensors")) == cli.EXIT_USAGE
    assert run("compress", str(small_file), str(tpz), "-q") == 0
    assert run("decompress", str(tpz), str(small_file.parent / "raw.tpz")) == cli.EXIT_USAGE
    assert "still be compressed" in capsys.readouterr().err


def test_global_options_before_or_after(small_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = small_file.parent / "c.tpz"
    assert run("-q", "--threads", "1", "compress", str(small_file), str(out)) == 0
    assert run("compress", str(small_file), str(out), "-q") == 0
    assert capsys.readouterr().out == ""
    assert run("compress", str(small_file), str(out)) == 0
    assert "% of the source" in capsys.readouterr().out


def test_lossy_file_options(small_file: Path) -> None:
    out = small_file.parent / "c.tpz"
    assert run("compress", str(small_file), str(out), "--max-rel-error", "1e-3", "-q") == 0
    w = tp.load(small_file)["w"]
    back = tp.load(out)["w"]
    assert np.mean((back - w) ** 2) / np.mean(w**2) <= 1e-3 and not np.array_equal(back, w)
    assert run("compress", str(small_file), str(out), "--method", "blockwise") == cli.EXIT_USAGE


def test_closed_pipe_is_silent(tmp_path: Path) -> None:
    state = {f"t{i}": np.zeros(4, dtype=np.float32) for i in range(3000)}
    tp.save(state, tmp_path / "many.tpz")
    code = "import sys; from tensorpress import cli; sys.exit(cli.main(['inspect', sys.argv[1]]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "many.tpz")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    assert proc.wait() == cli.EXIT_PIPE
    assert err == ""


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


def test_folder_compress_at_four_bits_and_back(tmp_path: Path) -> None:
    """The CLI on a real HF folder: 4 bits/value model average, loaded in one call, cosine >= 0.95;
    decompress gives a plain folder transformers reads."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    evaluation = pytest.importorskip("tensorpress.evaluation")
    from tensorpress import samples

    out = tmp_path / "minilm-4bit"
    assert run("compress", str(samples.minilm_dir()), str(out), "--bits-per-value", "4", "-q") == 0
    values = sum(v.size for v in samples.minilm_weights().values())
    assert 8 * (out / "model.tpz").stat().st_size / values <= 4.3
    model = tp.from_pretrained(out)
    ref, tok = evaluation.load_minilm()
    assert evaluation.embedding_cosine(ref, model, tok, evaluation.eval_texts(32)) >= 0.95
    assert run("decompress", str(out), str(tmp_path / "plain"), "-q") == 0
    # Options a folder would not honour are refused, not silently ignored.
    for extra in (["--threads", "1"], ["--codec", "qlc"]):
        assert run("compress", str(samples.minilm_dir()), str(tmp_path / "x"), *extra, "-q") == 2
    plain = transformers.AutoModel.from_pretrained(str(tmp_path / "plain"))
    texts = [t[:200] for t in evaluation.eval_texts(3)]
    a = evaluation.sentence_embeddings(plain, tok, texts)
    assert torch.equal(a, evaluation.sentence_embeddings(model, tok, texts))
