"""Streaming compression of sharded safetensors folders: byte equality with the in-memory path,
threads, resume after a kill, hostile safetensors headers, shard-by-shard reading."""

from __future__ import annotations

import json
import math
import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import tensorpress as tp
from tensorpress import _core, hf, hf_folder, safetensors_stream, streaming, streaming_dist
from tensorpress.errors import FormatError, InvalidArgumentError
from tensorpress.models import ALIASES_KEY, CONSTRAINT_KEY, PLANS_KEY


def make_checkpoint(folder: Path, n_layers: int = 6, rows: int = 96, cols: int = 128, files: int = 2) -> dict:
    """A small llama-like sharded bf16 checkpoint (index + ``files`` shards + config)."""
    g = torch.Generator().manual_seed(7)
    state = {}
    for i in range(n_layers):
        state[f"model.layers.{i}.mlp.weight"] = (torch.randn(rows, cols, generator=g) * 0.02).to(
            torch.bfloat16
        )
        state[f"model.layers.{i}.norm.weight"] = (1 + 0.01 * torch.randn(cols, generator=g)).to(
            torch.bfloat16
        )
    state["model.embed.weight"] = torch.randn(64, cols, generator=g).to(torch.float32)
    names = sorted(state)
    folder.mkdir(parents=True)
    per = -(-len(names) // files)
    weight_map = {}
    for f in range(files):
        part = names[f * per : (f + 1) * per]
        shard = f"model-{f + 1:05d}-of-{files:05d}.safetensors"
        save_file({k: state[k] for k in part}, str(folder / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    (folder / hf_folder.SAFETENSORS_INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": cols}))
    (folder / "tokenizer.json").write_text("{}")
    return state


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, dict]:
    src = tmp_path / "src"
    return src, make_checkpoint(src)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_single_shard_equals_save_pretrained_byte_for_byte(source, tmp_path):
    src, _ = source
    hf.save_pretrained(src, tmp_path / "mem")
    result = streaming.compress_folder(src, tmp_path / "stream", workers=2, max_shard_size=1 << 40)
    assert result.files == ("model.tpz",) and result.written == ["model.tpz"]
    assert folder_bytes(tmp_path / "stream") == folder_bytes(tmp_path / "mem")


def test_max_rel_error_equals_save_pretrained_byte_for_byte(source, tmp_path):
    src, _ = source
    hf.save_pretrained(src, tmp_path / "mem", max_rel_error=1e-3)
    streaming.compress_folder(src, tmp_path / "stream", max_rel_error=1e-3, max_shard_size=1 << 40)
    assert folder_bytes(tmp_path / "stream") == folder_bytes(tmp_path / "mem")
    with tp.open(tmp_path / "stream" / "model.tpz") as f:
        assert json.loads(f.metadata[PLANS_KEY])  # lossy plans recorded for from_pretrained / inspect


def test_each_shard_equals_tp_save_of_the_same_tensors(source, tmp_path):
    src, state = source
    result = streaming.compress_folder(src, tmp_path / "out", max_shard_size=40_000)
    assert len(result.files) > 3 and result.files[-1] == hf_folder.TPZ_INDEX
    index = json.loads((tmp_path / "out" / hf_folder.TPZ_INDEX).read_text())["weight_map"]
    assert sorted(index) == sorted(state)
    for shard in result.files[:-1]:
        names = [n for n in sorted(state) if index[n] == shard]
        with tp.open(tmp_path / "out" / shard) as f:
            plans = json.loads(f.metadata[PLANS_KEY])
        assert set(plans) <= set(names) and all(p["chosen"]["method"] == "lossless" for p in plans.values())
        meta = {
            ALIASES_KEY: "{}",
            CONSTRAINT_KEY: "lossless",
            hf.RECIPE_KEY: "{}",
            PLANS_KEY: json.dumps(plans, separators=(",", ":")),
        }
        tp.save({n: state[n] for n in names}, tmp_path / "ref.tpz", metadata=meta)
        assert (tmp_path / "out" / shard).read_bytes() == (tmp_path / "ref.tpz").read_bytes(), shard
    loaded = hf.load_state(tmp_path / "out")
    assert all(
        torch.equal(loaded[k].view(-1).view(torch.uint8), v.view(-1).view(torch.uint8))
        for k, v in state.items()
    )


def test_threads_do_not_change_the_bytes(source, tmp_path):
    src, _ = source
    streaming.compress_folder(src, tmp_path / "w1", workers=1, max_shard_size=50_000)
    streaming.compress_folder(src, tmp_path / "w3", workers=3, max_shard_size=50_000)
    assert folder_bytes(tmp_path / "w1") == folder_bytes(tmp_path / "w3")


def test_iter_folder_and_streaming_decompress_restore_the_source(source, tmp_path):
    src, state = source
    streaming.compress_folder(src, tmp_path / "c", max_shard_size=60_000)
    seen = {}
    for name, value in streaming.iter_folder(tmp_path / "c"):
        seen[name] = value
    assert sorted(seen) == sorted(state)
    assert all(torch.equal(seen[k], v) for k, v in state.items())
    files = streaming.decompress_folder(tmp_path / "c", tmp_path / "plain")
    assert files[-1] == hf_folder.SAFETENSORS_INDEX
    back = hf_folder.read_source_state(tmp_path / "plain")
    assert sorted(back) == sorted(state) and all(torch.equal(back[k], v) for k, v in state.items())


def test_assign_shards_is_a_deterministic_partition():
    items = [
        safetensors_stream.SourceTensor(f"t{i}", Path("x"), "uint8", (n,), 0, n)
        for i, n in enumerate([5, 9, 1, 7, 7, 3, 8])
    ]
    shards = streaming.plan_shards(items, 10)
    for world in (1, 2, 3, 8):
        owned = streaming.assign_shards(shards, world)
        assert owned == streaming.assign_shards(shards, world)
        flat = sorted(i for o in owned for i in o)
        assert flat == list(range(len(shards)))
    assert [len(s.tensors) for s in shards] == [1, 2, 1, 2, 1]  # greedy, never over 10 bytes unless alone


# --- resume after a kill ---------------------------------------------------------------------

_KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from tensorpress import streaming
    finished = []
    def progress(line):
        if line.startswith("finished "):
            finished.append(line)
            if len(finished) == int(sys.argv[3]):
                os.kill(os.getpid(), signal.SIGKILL)  # a crash: no cleanup of any kind runs
    streaming.compress_folder(sys.argv[1], sys.argv[2], workers=2, max_shard_size=40_000, progress=progress)
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(tp.__file__).parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_killed_run_resumes_without_redoing_finished_shards(source, tmp_path):
    src, _ = source
    out = tmp_path / "out"
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, str(src), str(out), "2"], env=_env(), capture_output=True
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    records = sorted(p.name for p in (out / streaming.JOURNAL_DIR).iterdir())
    assert records == ["model-00001-of-00007.tpz.done", "model-00002-of-00007.tpz.done"]
    assert not (out / hf_folder.TPZ_INDEX).exists()  # the job did not complete
    done = {n.removesuffix(".done"): (out / n.removesuffix(".done")).stat().st_mtime_ns for n in records}

    result = streaming.compress_folder(src, out, workers=2, max_shard_size=40_000)
    assert result.skipped == sorted(done) and set(result.written).isdisjoint(done)
    assert len(result.written) == 5
    assert {n: (out / n).stat().st_mtime_ns for n in done} == done  # not rewritten
    assert not (out / streaming.JOURNAL_DIR).exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # spool/temp files cleaned
    streaming.compress_folder(src, tmp_path / "clean", workers=1, max_shard_size=40_000)
    assert folder_bytes(out) == folder_bytes(tmp_path / "clean")


def test_a_record_of_another_job_is_not_trusted(source, tmp_path):
    src, _ = source
    out = tmp_path / "out"
    opts = {"max_shard_size": 40_000}
    streaming.compress_folder(src, tmp_path / "clean", **opts)
    # leave a journal behind as a crashed run would, then damage one shard
    items = safetensors_stream.folder_tensors(src)
    shards = streaming.plan_shards(items, 40_000)
    first = streaming.compress_folder(src, out, **opts)
    assert first.skipped == []
    journal = streaming.Journal(out, "some other job")
    journal.record(shards[0].file, 1, "0" * 64, 1)
    assert streaming.compress_folder(src, out, **opts).skipped == []  # foreign record ignored
    assert folder_bytes(out) == folder_bytes(tmp_path / "clean")


def test_resume_false_redoes_everything(source, tmp_path):
    src, _ = source
    out = tmp_path / "out"
    items = safetensors_stream.folder_tensors(src)
    shards = streaming.plan_shards(items, 40_000)
    options = {"constraint": "lossless", "keep": [], "method": None, "lossy_vectors": False}
    options["max_shard_size"] = 40_000
    options["job"] = {}
    out.mkdir()
    streaming.compress_folder(src, tmp_path / "clean", max_shard_size=40_000)
    (out / shards[0].file).write_bytes((tmp_path / "clean" / shards[0].file).read_bytes())
    journal = streaming.Journal(out, streaming.fingerprint(items, shards, options))
    data = (out / shards[0].file).read_bytes()
    import hashlib

    journal.record(shards[0].file, len(data), hashlib.sha256(data).hexdigest(), 1)
    assert journal.finished(out, shards[0].file)
    assert streaming.compress_folder(src, out, max_shard_size=40_000).skipped == [shards[0].file]
    journal.record(shards[0].file, len(data), hashlib.sha256(data).hexdigest(), 1)
    again = streaming.compress_folder(src, out, max_shard_size=40_000, resume=False)
    assert again.skipped == [] and shards[0].file in again.written
    (out / shards[1].file).write_bytes(b"damaged")
    journal.record(shards[1].file, 7, "0" * 64, 1)  # size matches, digest does not
    assert not journal.finished(out, shards[1].file)


# --- reading safetensors ---------------------------------------------------------------------


def test_read_tensor_matches_safe_open_for_every_dtype(tmp_path):
    values = {
        "bf16": torch.randn(3, 5).to(torch.bfloat16),
        "f32": torch.randn(4),
        "f16": torch.randn(2, 2).half(),
        "i64": torch.arange(6).reshape(2, 3),
        "u8": torch.arange(10, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "e4m3": torch.randn(8).to(torch.float8_e4m3fn),
        "empty": torch.zeros(0, 4),
        "scalar": torch.tensor(3.5),
    }
    path = tmp_path / "m.safetensors"
    save_file(values, str(path))
    items = {t.name: t for t in safetensors_stream.read_header(path)}
    assert list(items) == sorted(values)
    with safe_open(str(path), "pt") as f:
        for name in values:
            got = safetensors_stream.read_tensor(items[name])
            ref = f.get_tensor(name)
            assert got.dtype == ref.dtype and got.shape == ref.shape and torch.equal(got, ref), name
            arr = safetensors_stream.read_tensor(items[name], as_torch=False)
            assert arr.shape == tuple(ref.shape)


def _raw_safetensors(header: object, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


@pytest.mark.parametrize(
    "blob",
    [
        b"\x01\x02",
        struct.pack("<Q", 1 << 40) + b"{}",
        struct.pack("<Q", 4) + b"[1]\x00",
        _raw_safetensors({"w": {"dtype": "Q8", "shape": [1], "data_offsets": [0, 1]}}, b"\0"),
        _raw_safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
        _raw_safetensors({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4),
        _raw_safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 0]}}, b"\0" * 8),
        _raw_safetensors(
            {"w": {"dtype": "F32", "shape": [1 << 62, 1 << 62], "data_offsets": [0, 4]}}, b"\0" * 4
        ),
        _raw_safetensors({"w": {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}}, b"\0" * 16),
        _raw_safetensors({"w": {"shape": [1]}}),
    ],
)
def test_hostile_safetensors_headers_raise_format_error(tmp_path, blob):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(blob)
    with pytest.raises(FormatError):
        safetensors_stream.read_header(path)


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_random_bytes_never_escape_as_untyped_errors(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("fuzz") / "x.safetensors"
    path.write_bytes(blob)
    try:
        items = safetensors_stream.read_header(path)
    except FormatError:
        return
    for t in items:
        safetensors_stream.read_tensor(t, as_torch=False)


def test_bad_arguments_are_typed_errors(source, tmp_path):
    src, _ = source
    with pytest.raises(InvalidArgumentError):
        streaming.compress_folder(src, tmp_path / "o", workers=0)
    with pytest.raises(InvalidArgumentError):
        streaming.compress_folder(src, src)
    with pytest.raises(InvalidArgumentError):
        streaming.compress_folder(tmp_path / "nowhere", tmp_path / "o")
    with pytest.raises(InvalidArgumentError):
        streaming.compress_folder(src, tmp_path / "o", max_shard_size=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgumentError):
        streaming.compress_folder(tmp_path / "empty", tmp_path / "o")


def test_numpy_source_without_torch_kind_round_trips(tmp_path):
    path = tmp_path / "m.safetensors"
    arr = np.arange(24, dtype=np.float32).reshape(4, 6)
    from safetensors.numpy import save_file as save_np

    save_np({"w": arr}, str(path))
    (t,) = safetensors_stream.read_header(path)
    assert np.array_equal(safetensors_stream.read_tensor(t, as_torch=False), arr)
    assert torch.equal(load_file(str(path))["w"], safetensors_stream.read_tensor(t))


# --- two ranks (torch.distributed, gloo on localhost) ----------------------------------------

_RANK = textwrap.dedent(
    """
    import sys
    from tensorpress import streaming, streaming_dist
    comm = streaming_dist.comm_from_env()
    src, video_src, out_lossless, out_video = sys.argv[1:5]
    r = streaming.compress_folder(src, out_lossless, comm=comm, max_shard_size=40_000, workers=2)
    print("wrote", r.written)
    v = streaming_dist.compress_folder_at_budget(video_src, out_video, 4.0, comm=comm, max_shard_size=30_000)
    print("wrote", v.written)
    """
)


def make_video_checkpoint(folder: Path) -> None:
    g = torch.Generator().manual_seed(3)
    state = {
        f"w{i}.weight": (torch.randn(96, 128, generator=g) * (i + 1)).to(torch.bfloat16) for i in range(4)
    }
    state.update({f"w{i}.bias": torch.randn(128, generator=g).to(torch.bfloat16) for i in range(2)})
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))


def _entries(folder: Path) -> dict[str, tuple]:
    shards, _ = hf_folder.tpz_shards(folder)
    out = {}
    for shard in shards:
        with tp.open(shard) as f:
            for e in f.entries():
                out[e["name"]] = (
                    e["method"],
                    e["crc32c"],
                    e["length"],
                    json.dumps(e["params"], sort_keys=True),
                )
    return out


def test_two_ranks_write_the_bytes_of_one_and_share_the_video_allocation(source, tmp_path):
    import socket

    src, _ = source
    video_src = tmp_path / "vsrc"
    make_video_checkpoint(video_src)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outs = [tmp_path / "lossless2", tmp_path / "video2"]
    procs = []
    for rank in range(2):
        env = _env() | {"RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}
        env["MASTER_PORT"] = str(port)
        args = [sys.executable, "-c", _RANK, str(src), str(video_src), *map(str, outs)]
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    logs = [p.communicate(timeout=240) for p in procs]
    for p, (_, e) in zip(procs, logs, strict=True):
        assert p.returncode == 0, e.decode()[-3000:]
    assert all(b"wrote ['model-" in o for o, _ in logs)  # both ranks wrote shards of their own

    streaming.compress_folder(src, tmp_path / "lossless1", max_shard_size=40_000)
    assert folder_bytes(outs[0]) == folder_bytes(tmp_path / "lossless1")

    # the allocation over two ranks equals the in-memory path's (save_pretrained's compress_state)
    state = load_file(str(video_src / "model.safetensors"))
    packed, _, _ = hf.compress_state(state, bits_per_value=4.0, method="video", header_bytes=768)
    got = _entries(outs[1])
    assert sorted(got) == sorted(packed)
    for name, obj in packed.items():
        _, crc, length, params = got[name]
        assert (crc, length) == (_core.crc32c(obj.payload()), len(obj.payload())), name
        assert params == json.dumps(obj.header(), sort_keys=True), name
    assert [m for m, *_ in got.values()].count("video") == 4
    with tp.open(outs[1] / "model-00001-of-00004.tpz") as f:
        assert f.metadata[CONSTRAINT_KEY] == "bits_per_value=4"


def test_cli_and_save_pretrained_take_the_streaming_path(source, tmp_path):
    from tensorpress import cli

    src, _ = source
    assert cli.main(["compress", str(src), str(tmp_path / "cli"), "--workers", "2", "-q"]) == 0
    saved = hf.save_pretrained(src, tmp_path / "api", streaming=True)
    assert isinstance(saved, hf.SavedFolder) and saved.files == ("model.tpz",)
    assert folder_bytes(tmp_path / "cli") == folder_bytes(tmp_path / "api")
    assert (
        cli.main(["compress", str(src), str(tmp_path / "r"), "--resume", "-q", "--max-shard-size", "40K"])
        == 0
    )
    streaming.compress_folder(src, tmp_path / "r1", max_shard_size=40 << 10)
    assert folder_bytes(tmp_path / "r") == folder_bytes(tmp_path / "r1")
    assert len(folder_bytes(tmp_path / "r1")) > 4
    assert cli.main(["compress", str(src), str(tmp_path / "bad"), "--workers", "0", "-q"]) == 2
    with pytest.raises(InvalidArgumentError):  # a model budget streams with video only
        hf.save_pretrained(src, tmp_path / "b", bits_per_value=4.0, streaming=True)


def test_budget_path_arguments_are_checked(source, tmp_path, monkeypatch):
    src, _ = source
    for bad in (
        {"bits_per_value": 0.0},
        {"bits_per_value": float("nan")},
        {"bits_per_value": 4.0, "method": "blockwise"},
    ):
        with pytest.raises(InvalidArgumentError):
            streaming_dist.compress_folder_at_budget(src, tmp_path / "o", **bad)
    with pytest.raises(InvalidArgumentError):
        streaming_dist.compress_folder_at_budget(src, tmp_path / "o", 4.0, workers=0)
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    assert isinstance(streaming_dist.comm_from_env(), streaming.SingleProcess)
    with pytest.raises(InvalidArgumentError, match="MASTER_ADDR"):
        streaming_dist.TorchComm()


_DTYPES = [torch.bfloat16, torch.float16, torch.float32, torch.int8, torch.uint8, torch.int64, torch.bool]


@settings(max_examples=8, deadline=None)
@given(
    shapes=st.lists(st.lists(st.integers(0, 9), min_size=0, max_size=3), min_size=1, max_size=6),
    dtypes=st.lists(st.sampled_from(_DTYPES), min_size=6, max_size=6),
    shard=st.integers(1, 400),
    workers=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_round_trip_any_tensors_any_layout(tmp_path_factory, shapes, dtypes, shard, workers, seed):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i, shape in enumerate(shapes):
        raw = torch.randint(0, 256, (math.prod(shape) * dtypes[i].itemsize,), generator=g, dtype=torch.uint8)
        value = raw.view(dtypes[i]) if dtypes[i] != torch.bool else raw % 2 == 1
        state[f"t{i}"] = value.reshape(shape)
    root = tmp_path_factory.mktemp("rt")
    (root / "src").mkdir()
    save_file(state, str(root / "src" / "model.safetensors"))
    result = streaming.compress_folder(root / "src", root / "out", max_shard_size=shard, workers=workers)
    assert result.tensors == len(state)
    back = dict(streaming.iter_folder(root / "out"))
    assert sorted(back) == sorted(state)
    for k, v in state.items():  # bit equality (NaN payloads included)
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        assert back[k].reshape(-1).view(torch.uint8).equal(v.reshape(-1).view(torch.uint8))


_FAILING_RANK = textwrap.dedent(
    """
    import sys
    from tensorpress import streaming, streaming_dist, tensors
    comm = streaming_dist.comm_from_env()

    def encoder(name, value):
        if comm.rank == 1:
            raise OSError("disk full on rank 1")
        return streaming.as_torch_source(tensors.compress(value)), None

    try:
        streaming.compress_folder(sys.argv[1], sys.argv[2], comm=comm, max_shard_size=40_000, encoder=encoder)
    except Exception as exc:
        print("raised", type(exc).__name__, exc)
    """
)


def test_a_failed_rank_fails_the_others_at_once(source, tmp_path):
    """Rank 1's encoder fails: rank 0 must raise RankFailedError naming it at the next meeting
    point, not block in a barrier until the process group's 30-minute timeout."""
    import socket
    import time

    src, _ = source
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = _env() | {
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        args = [sys.executable, "-c", _FAILING_RANK, str(src), str(tmp_path / "out")]
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    start = time.monotonic()
    logs = [p.communicate(timeout=180)[0].decode() for p in procs]
    assert time.monotonic() - start < 120
    assert "raised OSError disk full on rank 1" in logs[1]
    assert "raised RankFailedError" in logs[0] and "rank 1: OSError: disk full" in logs[0]


def test_gather_or_fail_reports_every_failed_rank():
    class TwoRanks:
        rank, world_size = 0, 2

        def __init__(self, other):
            self.other = other

        def all_gather(self, obj):
            return [obj, self.other]

        def barrier(self):
            raise AssertionError("not used")

    assert streaming.gather_or_fail(TwoRanks((None, 7)), lambda: 5, "x") == [5, 7]
    with pytest.raises(
        tp.errors.RankFailedError, match=r"x failed on another rank \(rank 1: ValueError: no\)"
    ):
        streaming.gather_or_fail(TwoRanks(("ValueError: no", None)), lambda: 5, "x")
    with pytest.raises(KeyError):  # this rank's own error comes back as it was
        streaming.gather_or_fail(TwoRanks((None, 7)), lambda: {}["k"], "x")
