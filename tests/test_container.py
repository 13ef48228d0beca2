"""The .tpz container: round trips, lazy access, atomic writes, golden files, corruption."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tensorpress as tp
from golden import make_golden as golden
from tensorpress import _core, container, entropy
from tensorpress.errors import ChecksumError, CorruptDataError, FormatError, InvalidArgumentError

GOLDEN = Path(__file__).parent / "golden"
DATA_ERRORS = (FormatError, CorruptDataError, ChecksumError)


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), k


def _layout_free(header: bytes) -> list[tuple[Any, ...]]:
    """Each tensor's name, method, dtype and shape: what a header says about the tensors apart
    from how their payloads were coded."""
    entries = json.loads(header)["tensors"]
    return [(e["name"], e["method"], e["dtype"], e["shape"]) for e in entries]


def test_golden_file_decodes_to_known_tensors() -> None:
    assert_same(tp.load(GOLDEN / "v1-ok.tpz"), golden.golden_tensors())
    assert_same(tp.load(GOLDEN / "v1-ok-streams.tpz"), golden.golden_tensors())
    # Version 1.0 (plain JSON header) and 1.1 (zlib header) hold the same document.
    assert_same(tp.load(GOLDEN / "v1-ok-json-header.tpz"), golden.golden_tensors())
    # Version 1.1's leading header and 1.2's trailing one: the same stored header and payloads.
    assert_same(tp.load(GOLDEN / "v1-ok-header-first.tpz"), golden.golden_tensors())
    first, trailing = ((GOLDEN / n).read_bytes() for n in ("v1-ok-header-first.tpz", "v1-ok.tpz"))
    assert golden.split(first) == golden.split(trailing)
    assert (first[12], trailing[12]) == (1, 3)
    plain, packed = ((GOLDEN / n).read_bytes() for n in ("v1-ok-json-header.tpz", "v1-ok.tpz"))
    assert (plain[12], packed[12]) == (0, container.FLAG_ZLIB_HEADER | container.FLAG_TRAILING_HEADER)
    # The same tensors: 1.0 wrote version-1 streams, where a Huffman table cost 128 bytes and the
    # small e4m3 tensor was stored verbatim.
    assert _layout_free(golden.header_json(plain)) == _layout_free(golden.header_json(packed))
    with tp.open(GOLDEN / "v1-ok.tpz") as f:
        assert {f.entry(n)["codec"] for n in ("scalar", "int8", "empty")} == {"stored"}
    with tp.open(GOLDEN / "v1-ok.tpz") as f:
        assert f.metadata == {"purpose": "golden"}
    for version in (1, 2):
        for codec in entropy.CODECS:
            blob = (GOLDEN / f"stream-v{version}-{codec}.tpe").read_bytes()
            assert blob[4] == entropy.info(blob)["version"] == version
            assert entropy.decode(blob).tobytes() == golden.golden_stream_data(), codec
        # Chunk mode 3 (a chunk with its own code table) is pinned too.
        blob = (GOLDEN / f"stream-v{version}-huffman-own-tables.tpe").read_bytes()
        assert entropy.decode(blob).tobytes() == golden.golden_own_table_data()
        assert {blob[at] for at, _ in _core.stream_info(blob)["chunks"]} == {3}


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("bad-magic", FormatError, "magic"),
        ("future-major", FormatError, "version 2"),
        ("reserved-flag", FormatError, "reserved"),
        ("oversized-header", FormatError, "header length"),
        ("header-not-zlib", FormatError, "not a valid zlib stream"),
        ("header-zlib-trailing", FormatError, "after its zlib stream"),
        ("truncated", FormatError, "truncated"),
        ("preamble-crc", ChecksumError, "preamble"),
        ("header-flip", ChecksumError, "header"),
        ("trailing-bytes", FormatError, "bytes"),
        ("trailing-truncated", FormatError, "truncated"),
        ("trailing-location-crc", ChecksumError, "header offset"),
        ("trailing-reserved", FormatError, "reserved preamble bytes"),
        ("trailing-header-flip", ChecksumError, "header"),
        ("trailing-gap", FormatError, "describes"),
    ],
)
def test_golden_must_fail_files(name: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        tp.load(GOLDEN / f"v1-{name}.tpz")


def test_zlib_header_limits_are_format_errors() -> None:
    """A compressed header is inflated under the header limit (a small stream may not expand
    into a large allocation) and must be exactly one complete zlib stream."""
    import zlib

    text = b'{"tensors":[],"metadata":{}}' + b" " * 5000
    assert container.inflate_header(zlib.compress(text), "h") == text
    bomb = zlib.compress(b" " * (container.MAX_HEADER_BYTES + 1), 9)
    assert len(bomb) < 100_000
    with pytest.raises(FormatError, match="limit"):
        container.inflate_header(bomb, "h")
    with pytest.raises(FormatError, match="truncated"):
        container.inflate_header(zlib.compress(text)[:-6], "h")
    with pytest.raises(FormatError, match="not a valid zlib"):
        container.inflate_header(text, "h")
    with pytest.raises(FormatError, match="after its zlib stream"):
        container.inflate_header(zlib.compress(text) + b"x", "h")


def test_header_is_stored_compressed_only_where_smaller(tmp_path: Path) -> None:
    many = {f"model.layers.{i}.mlp.down_proj.weight": np.full(3, i, np.float32) for i in range(40)}
    tp.save(many, tmp_path / "many.tpz")
    tp.save({}, tmp_path / "none.tpz")
    for name, flag in (("many.tpz", container.FLAG_ZLIB_HEADER), ("none.tpz", 0)):
        data = (tmp_path / name).read_bytes()
        assert int.from_bytes(data[12:16], "little") == flag | container.FLAG_TRAILING_HEADER, name
        assert int.from_bytes(data[10:12], "little") == container.MINOR_VERSION
    assert_same(tp.load(tmp_path / "many.tpz"), many)


def test_golden_payload_flip_is_caught_on_access_of_that_tensor() -> None:
    reference = tp.load(GOLDEN / "v1-ok.tpz")
    with tp.open(GOLDEN / "v1-payload-flip.tpz") as f:
        names = [n for n in f if f.entry(n)["length"]]
        with pytest.raises(ChecksumError):
            f[names[-1]]
        # Every other tensor still decodes to exactly what the intact file holds.
        for name in names[:-1]:
            assert np.asarray(f[name]).tobytes() == np.asarray(reference[name]).tobytes(), name


@pytest.mark.parametrize("progress", [False, True])
def test_load_names_a_damaged_tensor_whatever_byte_is_flipped(tmp_path: Path, progress: bool) -> None:
    """`load` leaves the payload checksum of coded lossless tensors to their streams' checksums;
    a flip anywhere in such a payload (stream header, chunk index, table, lanes) or in a verbatim
    or blockwise payload must still be a ChecksumError naming the tensor."""
    rng = np.random.default_rng(3)
    data = {
        "w": rng.standard_normal((96, 64)).astype(ml_dtypes.bfloat16),
        "v": rng.standard_normal(200).astype(np.float32),
        "q": rng.integers(-100, 100, 300).astype(np.int8),
    }
    path = tp.save(data, tmp_path / "m.tpz")
    with tp.open(path) as f:
        spans = {n: (f._data_start + f.entry(n)["offset"], f.entry(n)["length"]) for n in f}
        assert any(f._stream_checked(n) for n in f)
    clean = path.read_bytes()
    for name, (start, length) in spans.items():
        for at in sorted({start, start + 5, start + 30, start + length // 2, start + length - 1}):
            damaged = bytearray(clean)
            damaged[at] ^= 0x10
            path.write_bytes(bytes(damaged))
            with pytest.raises(ChecksumError, match=f"tensor {name!r} fails its checksum"):
                tp.load(path, progress=progress)
    path.write_bytes(clean)
    assert_same(tp.load(path), data)


def test_round_trip_mixed_kinds_and_metadata(tmp_path: Path) -> None:
    data = {
        "w": np.random.default_rng(0).standard_normal((64, 48)).astype(ml_dtypes.bfloat16),
        "b": np.arange(48, dtype=np.float32),
        "q": np.arange(-8, 8, dtype=np.int8),
    }
    path = tp.save(data, tmp_path / "m.tpz", metadata={"model": "test"})
    assert_same(tp.load(path), data)
    with tp.open(path) as f:
        assert set(f) == set(data) and len(f) == 3
        assert f.metadata == {"model": "test"}
        assert f.entry("w")["dtype"] == "bfloat16" and f.entry("w")["shape"] == [64, 48]
        assert f["b"].tobytes() == data["b"].tobytes()
        with pytest.raises(KeyError):
            f["missing"]


def test_payloads_are_aligned_and_tile_the_file(tmp_path: Path) -> None:
    data = {f"t{i}": np.arange(i * 37, dtype=np.float32) for i in range(6)}
    path = tp.save(data, tmp_path / "a.tpz")
    with tp.open(path) as f:
        entries = f.entries()
        start = f._data_start
    assert start == container.TRAILING_DATA_START
    end = 0
    for e in entries:
        assert e["offset"] % container.ALIGNMENT == 0 and e["offset"] == -(-end // 64) * 64
        end = e["offset"] + e["length"]
    data = path.read_bytes()
    header_len = int.from_bytes(data[16:24], "little")
    assert int.from_bytes(data[32:40], "little") == start + end
    assert len(data) == start + end + header_len


def test_precompressed_values_are_stored_as_is(tmp_path: Path) -> None:
    arr = np.linspace(-1, 1, 1000, dtype=np.float32)
    packed = tp.compress(arr, "huffman")
    tp.save({"x": packed}, tmp_path / "p.tpz")
    with tp.open(tmp_path / "p.tpz") as f:
        assert f.entry("x")["codec"] == packed.codec
        assert f["x"].tobytes() == arr.tobytes()


def test_safetensors_read_and_write(tmp_path: Path, minilm: dict[str, np.ndarray]) -> None:
    few = dict(list(minilm.items())[:5])
    tp.save(few, tmp_path / "m.safetensors")
    back = tp.load(tmp_path / "m.safetensors")
    assert_same({k: back[k] for k in few}, few)
    tp.save(back, tmp_path / "m.tpz")
    assert_same({k: v for k, v in tp.load(tmp_path / "m.tpz").items()}, {k: back[k] for k in back})


def test_atomic_write_never_leaves_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "keep.tpz"
    tp.save({"a": np.arange(10, dtype=np.float32)}, path)
    path.chmod(0o644)
    before = path.read_bytes()

    class Boom(tp.CompressedTensor):
        def header(self) -> dict[str, object]:
            raise RuntimeError("crash while writing")

    boom = Boom("float32", (0,), "fp32-exponent", [])
    with pytest.raises(RuntimeError):
        tp.save({"a": np.zeros(3, dtype=np.float32), "b": boom}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.tpz"]
    assert path.stat().st_mode & 0o777 == 0o644  # the file's own mode, not mkstemp's 0600


def test_save_writes_payloads_as_they_are_coded(tmp_path: Path) -> None:
    """The header trails the payloads, so a save holds one payload at a time, not the model's:
    the traced peak stays at a few tensors' worth (all 12 payloads were held before version 1.2)."""
    import tracemalloc

    rng = np.random.default_rng(7)
    data = {f"t{i}": rng.integers(0, 256, 1 << 20, dtype=np.uint8) for i in range(12)}
    tp.save(data, tmp_path / "warm.tpz", threads=1)  # first-call allocations (tables, imports)
    tracemalloc.start()
    try:
        tp.save(data, tmp_path / "big.tpz", threads=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4.5 * (1 << 20), peak  # measured 3.2 MB; the 1.1 writer: 13.6 MB
    assert_same(tp.load(tmp_path / "big.tpz"), data)


def test_save_starts_writeback_of_written_payloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every WRITEBACK_BYTES of payload, the writer asks the kernel to start writing them back,
    over consecutive ranges that cover what was written; the file stays valid."""
    calls: list[tuple[int, int]] = []
    real = container.start_writeback

    def spy(f: object, start: int, end: int) -> None:
        calls.append((start, end))
        real(f, start, end)

    monkeypatch.setattr(container, "WRITEBACK_BYTES", 1 << 20)
    monkeypatch.setattr(container, "start_writeback", spy)
    rng = np.random.default_rng(3)
    data = {f"t{i}": rng.integers(0, 256, 600_000, dtype=np.uint8) for i in range(6)}
    tp.save(data, tmp_path / "wb.tpz")
    assert len(calls) >= 2
    assert calls[0][0] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(calls))
    assert all(end - start >= 1 << 20 for start, end in calls)
    assert calls[-1][1] <= (tmp_path / "wb.tpz").stat().st_size
    assert_same(tp.load(tmp_path / "wb.tpz"), data)


def test_start_writeback_is_a_harmless_hint(tmp_path: Path) -> None:
    import io

    from tensorpress.atomic import start_writeback

    start_writeback(io.BytesIO(b"abc"), 0, 3)  # no descriptor: nothing to do
    with open(tmp_path / "f", "wb") as f:
        f.write(b"x" * 10_000)
        start_writeback(f, 0, 10_000)
        start_writeback(f, 5, 5)  # empty range
    with open(tmp_path / "f", "rb") as f:
        start_writeback(f, 0, 10_000)  # read-only descriptor: the kernel may refuse; ignored
    assert (tmp_path / "f").read_bytes() == b"x" * 10_000


def test_tpz_writer_refuses_duplicates_and_writes_a_valid_file(tmp_path: Path) -> None:
    from tensorpress.atomic import AtomicFile

    target = AtomicFile(tmp_path / "w.tpz")
    writer = container.TpzWriter(target.file)
    writer.add("a", tp.compress(np.arange(100, dtype=np.float32)))
    with pytest.raises(InvalidArgumentError, match="twice"):
        writer.add("a", tp.compress(np.zeros(3, np.float32)))
    size = writer.finish({"k": "v"})
    assert not (tmp_path / "w.tpz").exists()  # nothing visible before the commit
    target.commit()
    assert (tmp_path / "w.tpz").stat().st_size == size
    with pytest.raises(InvalidArgumentError, match="already"):
        target.commit()
    with tp.open(tmp_path / "w.tpz") as f:
        assert f.metadata == {"k": "v"} and list(f) == ["a"]
    aborted = AtomicFile(tmp_path / "w.tpz")
    aborted.file.write(b"partial")
    aborted.abort()
    aborted.abort()  # idempotent
    assert [p.name for p in tmp_path.iterdir()] == ["w.tpz"]
    assert tp.load(tmp_path / "w.tpz")["a"].tobytes() == np.arange(100, dtype=np.float32).tobytes()


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError):
        tp.save({"": np.zeros(1)}, tmp_path / "x.tpz")
    with pytest.raises(InvalidArgumentError):
        tp.save([np.zeros(1)], tmp_path / "x.tpz")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        tp.load(tmp_path / "nope.tpz")


def test_every_truncation_and_flip_raises(tmp_path: Path) -> None:
    path = tp.save(
        {"a": np.linspace(0, 1, 3000, dtype=np.float32), "b": np.arange(70, dtype=np.int8)},
        tmp_path / "c.tpz",
    )
    blob = path.read_bytes()
    bad = tmp_path / "bad.tpz"
    for cut in range(0, len(blob), 97):
        bad.write_bytes(blob[:cut])
        with pytest.raises(DATA_ERRORS):
            tp.load(bad)
    for i in range(0, len(blob), 53):
        flipped = bytearray(blob)
        flipped[i] ^= 0x01
        bad.write_bytes(bytes(flipped))
        try:
            out = tp.load(bad)
        except DATA_ERRORS:
            continue
        # A flip may only land in zero padding that is never read... which must then be refused.
        raise AssertionError(f"flip at {i} decoded silently: {list(out)}")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    arrays=st.lists(
        hnp.arrays(
            dtype=st.sampled_from([np.dtype(np.float32), np.dtype(np.uint16), np.dtype(np.int8)]),
            shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12),
        ),
        max_size=5,
    )
)
def test_hypothesis_round_trip(tmp_path: Path, arrays: list[np.ndarray]) -> None:
    # uint16 bit patterns stand in for bfloat16 (hypothesis cannot draw ml_dtypes directly).
    data = {f"t{i}": a.view(ml_dtypes.bfloat16) if a.dtype == np.uint16 else a for i, a in enumerate(arrays)}
    path = tp.save(data, tmp_path / "h.tpz")
    assert_same(tp.load(path), data)


def test_borrowed_planes_outlive_close_and_load_owns_its_results(tmp_path: Path) -> None:
    """``load`` decodes planes borrowed from the mapping (no copy): closing the file while such
    a tensor is alive must not fail, the tensor still decodes, and the returned arrays own their
    memory (rewriting the file afterwards changes nothing)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 96)).astype(ml_dtypes.bfloat16)
    path = tmp_path / "b.tpz"
    tp.save({"x": x, "y": x[:3] * 2}, path)
    f = tp.open(path)
    borrowed = f._stored("x", borrow=True)
    assert isinstance(borrowed.planes[0].blob, memoryview)
    assert isinstance(f.compressed("x").planes[0].blob, bytes)  # the public form copies
    f.close()  # a live view keeps the mapping; closing must still succeed
    assert borrowed.decode().tobytes() == x.tobytes()
    loaded = tp.load(path)
    tp.save({"x": np.zeros_like(x), "y": x[:3]}, path)
    assert loaded["x"].tobytes() == x.tobytes() and loaded["y"].tobytes() == (x[:3] * 2).tobytes()
    assert tp.load(path, mmap=False)["x"].tobytes() == np.zeros_like(x).tobytes()


def test_read_all_of_an_open_file_is_load(tmp_path: Path) -> None:
    """``TpzFile.read_all`` gives what ``load`` gives (one header parse for callers that read
    the file's names and metadata first), honours ``max_size`` and ``out``, and works only open."""
    rng = np.random.default_rng(4)
    w = {"a": rng.normal(size=(300, 70)).astype(ml_dtypes.bfloat16), "b": np.arange(50, dtype=np.int8)}
    path = tmp_path / "r.tpz"
    tp.save(w, path)
    with tp.open(path) as f:
        assert list(f) == ["a", "b"]
        got = f.read_all()
        out = {"b": np.zeros(50, np.int8)}
        assert f.read_all(out=out)["b"] is out["b"] and out["b"].tobytes() == w["b"].tobytes()
    assert {k: v.tobytes() for k, v in got.items()} == {k: v.tobytes() for k, v in w.items()}
    with tp.open(path, max_size=w["a"].nbytes) as f, pytest.raises(FormatError, match="max_size"):
        f.read_all()
    with pytest.raises(InvalidArgumentError):
        f.read_all()


def test_loaded_tensors_share_one_aligned_allocation_without_overlap(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    w = {
        "a": rng.normal(size=(33, 7)).astype(ml_dtypes.bfloat16),
        "b": np.arange(5, dtype=np.int64),
        "c": np.zeros((0, 3), np.float32),
        "d": (rng.normal(size=(9,)) * 10).astype(ml_dtypes.float8_e4m3fn),
        "e": rng.normal(size=(40, 40)).astype(np.float32),
    }
    tp.save(w, tmp_path / "m.tpz")
    got = tp.load(tmp_path / "m.tpz")
    assert_same(got, w)
    for name, arr in got.items():
        assert arr.flags.writeable and (arr.size == 0 or arr.ctypes.data % container.ALIGNMENT == 0), name
    got["a"][...] = 0  # writing one tensor leaves its neighbours alone
    assert got["b"].tobytes() == w["b"].tobytes() and got["e"].tobytes() == w["e"].tobytes()


@pytest.mark.parametrize("value", ["0", "off", "1", ""])
def test_huge_pages_can_be_switched_off_for_load_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """TENSORPRESS_HUGE_PAGES=0 carves the outputs from an anonymous mapping (4 KiB pages):
    same tensors, aligned and writable, the mapping alive as long as a tensor is; a value it
    does not know is an error naming the variable."""
    import mmap

    rng = np.random.default_rng(6)
    w = {"a": rng.normal(size=(300, 70)).astype(ml_dtypes.bfloat16), "b": np.arange(9, dtype=np.int16)}
    tp.save(w, tmp_path / "h.tpz")
    monkeypatch.setenv(container.HUGE_PAGES_ENV, value)
    got = tp.load(tmp_path / "h.tpz")
    assert_same(got, w)
    base = got["a"]
    while isinstance(base, np.ndarray):
        base = base.base
    owner = base.obj if isinstance(base, memoryview) else base  # np.frombuffer keeps a memoryview
    assert isinstance(owner, mmap.mmap) == (value in ("0", "off"))
    for arr in got.values():
        assert arr.flags.writeable and arr.ctypes.data % container.ALIGNMENT == 0
    del got["b"]
    got["a"][...] = 0  # the mapping outlives the dropped neighbour
    monkeypatch.setenv(container.HUGE_PAGES_ENV, "maybe")
    with pytest.raises(InvalidArgumentError, match=container.HUGE_PAGES_ENV):
        tp.load(tmp_path / "h.tpz")


@pytest.mark.parametrize("threads", [None, 1])
def test_save_errors_name_the_tensor(tmp_path: Path, threads: int | None) -> None:
    """Batched or one by one, a tensor the encoder refuses is named in the error."""
    data = {"ok": np.zeros(10, np.float32), "bad": np.zeros(3, np.complex64), "ok2": np.ones(5, np.float32)}
    with pytest.raises(InvalidArgumentError, match="tensor 'bad': dtype complex64"):
        tp.save(data, tmp_path / "bad.tpz", threads=threads)
    assert not (tmp_path / "bad.tpz").exists()
