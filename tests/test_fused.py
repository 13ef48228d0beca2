"""Fused byte-plane paths (split+encode, decode+merge into caller-owned buffers), the shared
thread pool and argument validation of the entropy entry points."""

from __future__ import annotations

import os
import sys

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tensorpress import _core, entropy
from tensorpress.errors import (
    ChecksumError,
    CorruptDataError,
    FormatError,
    InvalidArgumentError,
)

fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# dtype -> transform, as docs/format.md §2.1 assigns them.
DTYPES = {
    "bfloat16": (np.dtype(ml_dtypes.bfloat16), "bf16-exponent"),
    "float32": (np.dtype(np.float32), "fp32-exponent"),
    "float16": (np.dtype(np.float16), "byte-planes"),
    "float64": (np.dtype(np.float64), "byte-planes"),
    "int32": (np.dtype(np.int32), "byte-planes"),
    "float8_e4m3fn": (np.dtype(ml_dtypes.float8_e4m3fn), "byte-planes"),
    "uint8": (np.dtype(np.uint8), "byte-planes"),
    "int4": (np.dtype(ml_dtypes.int4), "nibbles"),
}


def reference_split(flat: np.ndarray, transform: str) -> list[np.ndarray]:
    """docs/format.md §2.1 in numpy, written independently of the Rust transforms."""
    if transform == "bf16-exponent":
        u = flat.view(np.uint16)
        return [((u >> 7) & 0xFF).astype(np.uint8), (((u >> 8) & 0x80) | (u & 0x7F)).astype(np.uint8)]
    if transform == "fp32-exponent":
        u = flat.view(np.uint32)
        return [
            ((u >> 23) & 0xFF).astype(np.uint8),
            (((u >> 24) & 0x80) | ((u >> 16) & 0x7F)).astype(np.uint8),
            ((u >> 8) & 0xFF).astype(np.uint8),
            (u & 0xFF).astype(np.uint8),
        ]
    if transform == "nibbles":
        nib = flat.view(np.uint8) & 0x0F
        if nib.size % 2:
            nib = np.append(nib, np.uint8(0))
        return [(nib[0::2] | (nib[1::2] << 4)).astype(np.uint8)]
    width = flat.dtype.itemsize
    as_bytes = flat.view(np.uint8).reshape(-1, width)
    return [np.ascontiguousarray(as_bytes[:, k]) for k in reversed(range(width))]


def elements(dtype: np.dtype, count: int, seed: int, kind: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == np.dtype(ml_dtypes.int4):
        return rng.integers(-8, 8, count).astype(dtype)
    if kind == 0:  # noise: every bit pattern, NaNs included
        return rng.integers(0, 256, count * dtype.itemsize, dtype=np.uint8).view(dtype)
    values = rng.standard_normal(count) * (10.0 ** rng.integers(-3, 3))
    return values.astype(dtype) if dtype.kind in "fV" else rng.integers(-100, 100, count).astype(dtype)


@fast
@given(
    name=st.sampled_from(sorted(DTYPES)),
    count=st.one_of(st.integers(0, 3), st.integers(0, 20_000)),
    seed=st.integers(0, 2**32 - 1),
    kind=st.integers(0, 1),
    codec=st.sampled_from(("auto", *entropy.CODECS)),
    chunk_size=st.sampled_from((1024, 4096, 1 << 18)),
    threads=st.sampled_from((None, 1, 2, 3)),
)
def test_fused_equals_split_merge_reference(
    name: str, count: int, seed: int, kind: int, codec: str, chunk_size: int, threads: int | None
) -> None:
    dtype, transform = DTYPES[name]
    data = elements(dtype, count, seed, kind)
    planes = entropy.encode_planes(data, transform, codec, threads, chunk_size=chunk_size)
    reference = reference_split(data, transform)
    assert len(planes) == len(reference)
    for (plane_codec, blob), ref in zip(planes, reference, strict=True):
        assert entropy.decode(blob).tobytes() == ref.tobytes()
        assert entropy.info(blob)["codec"] == plane_codec
        if codec != "auto":
            assert blob == entropy.encode(ref, codec, threads, chunk_size=chunk_size, compact=True)
    out = np.full(count, 0x5A, dtype=np.uint8).view(dtype) if dtype.itemsize == 1 else np.empty(count, dtype)
    assert entropy.decode_planes_into([b for _, b in planes], transform, out, threads) is out
    expected = (data.view(np.uint8) & 0x0F) if transform == "nibbles" else data
    assert out.tobytes() == expected.tobytes()


@fast
@given(
    name=st.sampled_from(sorted(DTYPES)),
    count=st.integers(0, 5_000),
    seed=st.integers(0, 2**32 - 1),
    picks=st.lists(st.sampled_from(entropy.CODECS), min_size=8, max_size=8),
)
def test_per_plane_codecs_join_into_one_payload(name: str, count: int, seed: int, picks: list[str]) -> None:
    """A plan's codec list gives each plane the stream its codec gives alone (compact), end to
    end in one bytes object; the per-plane form slices the same bytes."""
    dtype, transform = DTYPES[name]
    data = elements(dtype, count, seed, 1)
    reference = reference_split(data, transform)
    wanted = picks[: len(reference)]
    codecs, lengths, joined = entropy.encode_planes_joined(data, transform, wanted, chunk_size=1024)
    assert isinstance(joined, bytes) and sum(lengths) == len(joined)
    at = 0
    for codec, length, ref, plane_codec in zip(wanted, lengths, reference, codecs, strict=True):
        alone = entropy.encode(ref, codec, chunk_size=1024, compact=True)
        assert joined[at : at + length] == alone
        assert plane_codec == entropy.info(alone)["codec"]
        at += length
    per_plane = entropy.encode_planes(data, transform, wanted, chunk_size=1024)
    assert b"".join(blob for _, blob in per_plane) == joined
    with pytest.raises(InvalidArgumentError, match="codecs for the"):
        entropy.encode_planes_joined(data, transform, [*wanted, "qlc"])
    with pytest.raises(InvalidArgumentError):
        entropy.encode_planes_joined(data, transform, ["zstd"] * len(wanted))


@fast
@given(
    name=st.sampled_from(sorted(DTYPES)),
    count=st.one_of(st.integers(0, 3), st.integers(0, 20_000)),
    seed=st.integers(0, 2**32 - 1),
    threads=st.sampled_from((None, 1, 2)),
)
def test_split_planes_equals_reference(name: str, count: int, seed: int, threads: int | None) -> None:
    from tensorpress.methods import lossless

    dtype, transform = DTYPES[name]
    data = elements(dtype, count, seed, 0)
    reference = reference_split(data, transform)
    assert [p.tobytes() for p in lossless.split_planes(data, transform)] == [r.tobytes() for r in reference]
    planes = [np.full(r.size, 0xA5, np.uint8) for r in reference]
    assert entropy.split_planes_into(data, transform, planes, threads) is planes
    assert [p.tobytes() for p in planes] == [r.tobytes() for r in reference]


def test_split_planes_into_refuses_bad_buffers() -> None:
    data = np.arange(10, dtype=np.float32)
    good = [np.empty(10, np.uint8) for _ in range(4)]
    with pytest.raises(InvalidArgumentError, match="planes"):
        entropy.split_planes_into(data, "fp32-exponent", good[:3])
    with pytest.raises(InvalidArgumentError, match="holds 9 bytes"):
        entropy.split_planes_into(data, "fp32-exponent", [*good[:3], np.empty(9, np.uint8)])
    read_only = np.zeros(10, np.uint8)
    read_only.flags.writeable = False
    with pytest.raises(InvalidArgumentError, match="read-only"):
        entropy.split_planes_into(data, "fp32-exponent", [*good[:3], read_only])
    with pytest.raises(InvalidArgumentError, match="overlap"):
        entropy.split_planes_into(data, "fp32-exponent", [good[0], good[0], good[1], good[2]])


def test_decode_into_torch_cpu_tensor_in_place() -> None:
    torch = pytest.importorskip("torch")
    w = torch.randn(300, 77).to(torch.bfloat16)
    raw = w.view(torch.uint8).numpy()
    planes = entropy.encode_planes(raw.view(ml_dtypes.bfloat16), "bf16-exponent")
    out = torch.empty(300, 77, dtype=torch.bfloat16)
    pointer = out.data_ptr()
    entropy.decode_planes_into([b for _, b in planes], "bf16-exponent", out)
    assert out.data_ptr() == pointer
    assert torch.equal(out, w)


def test_bad_outputs_and_streams_are_refused_before_writing() -> None:
    data = np.random.default_rng(1).standard_normal(5000).astype(np.float32)
    blobs = [b for _, b in entropy.encode_planes(data, "fp32-exponent", "huffman", chunk_size=1024)]
    for wrong in (np.zeros(4999, np.float32), np.zeros(5001, np.float32)):
        with pytest.raises((FormatError, CorruptDataError)):
            entropy.decode_planes_into(blobs, "fp32-exponent", wrong)
        assert not wrong.any()
    readonly = np.zeros(5000, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(InvalidArgumentError):
        entropy.decode_planes_into(blobs, "fp32-exponent", readonly)
    with pytest.raises(InvalidArgumentError):
        entropy.decode_planes_into(blobs, "fp32-exponent", np.zeros((100, 100), np.float32)[:, :50])
    with pytest.raises(InvalidArgumentError):
        entropy.decode_planes_into(blobs, "rot13", np.zeros(5000, np.float32))
    with pytest.raises(FormatError):
        entropy.decode_planes_into(blobs[:3], "fp32-exponent", np.zeros(5000, np.float32))
    bad = bytearray(blobs[2])
    bad[-1] ^= 1
    with pytest.raises(ChecksumError):
        entropy.decode_planes_into(
            [*blobs[:2], bytes(bad), blobs[3]], "fp32-exponent", np.zeros(5000, np.float32)
        )


def test_no_stream_is_larger_than_raw_plus_fixed_header() -> None:
    rng = np.random.default_rng(2)
    for n in (0, 1, 384, 1536, 100_000):
        noise = rng.integers(0, 256, n, dtype=np.uint8)
        for codec in entropy.CODECS:
            blob = entropy.encode(noise, codec, chunk_size=4096, compact=True)
            chunks = -(-n // 4096)
            assert len(blob) <= n + 28 + 9 * chunks, (codec, n)
            assert entropy.decode(blob).tobytes() == noise.tobytes()


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads through /proc")
def test_distinct_thread_counts_share_one_bounded_pool() -> None:
    data = np.random.default_rng(3).integers(0, 16, 300_000, dtype=np.uint8)
    blob = entropy.encode(data, "huffman", 1, chunk_size=4096)
    entropy.decode(blob, 1)
    before = _os_threads()
    for threads in range(1, 33):
        assert entropy.decode(blob, threads).tobytes() == data.tobytes()
        entropy.encode(data, "qlc", threads, chunk_size=4096)
        entropy.stats(data, threads)
    after = _os_threads()
    # One pool, built on first use: no thread per distinct value.
    assert after <= max(before, 1 + entropy.pool_threads()) + 2
    if (os.cpu_count() or 1) < 32:
        assert after < 64


@pytest.mark.parametrize(
    "call",
    [
        lambda: entropy.encode(b"abc", lanes=-1),
        lambda: entropy.encode(b"abc", chunk_size=-1),
        lambda: entropy.encode(b"abc", threads=-1),
        lambda: entropy.encode(b"abc", threads=0),
        lambda: entropy.encode(b"abc", threads=10**9),
        lambda: entropy.encode(b"abc", threads=2.0),  # type: ignore[arg-type]
        lambda: entropy.decode(entropy.encode(b"abc"), threads=-1),
        lambda: entropy.decode(entropy.encode(b"abc"), threads=0),
        lambda: entropy.decode(entropy.encode(b"abc"), threads=10**9),
        lambda: entropy.decode(entropy.encode(b"abc"), max_size=-1),
        lambda: entropy.decode_chunk(entropy.encode(b"abc"), -1),
        lambda: entropy.stats(b"abc", threads=-1),
        lambda: entropy.stats(b"abc", threads=0),
        lambda: entropy.encode_planes(np.zeros(4, np.float32), "fp32-exponent", lanes=-3),
        lambda: entropy.split_planes_into(np.zeros(4, np.float32), "fp32-exponent", [], threads=0),
        lambda: _core.crc32c_many([b"abc"], threads=0),
        lambda: _core.crc32c_many([b"abc"], threads=-1),
    ],
)
def test_bad_arguments_are_invalid_argument_errors(call: object) -> None:
    with pytest.raises(InvalidArgumentError):
        call()  # type: ignore[operator]


def test_read_only_out_is_an_invalid_argument() -> None:
    blob = entropy.encode(b"abcd" * 100)
    out = np.zeros(400, np.uint8)
    out.flags.writeable = False
    with pytest.raises(InvalidArgumentError):
        entropy.decode(blob, out=out)
    # The extension itself refuses it the same way (not a bare ValueError).
    from tensorpress import _core

    with pytest.raises(InvalidArgumentError):
        _core.decode_into(blob, memoryview(bytes(400)))


def test_load_decodes_into_caller_buffers_and_agrees_with_per_tensor_decode(tmp_path: object) -> None:
    import pathlib

    import tensorpress as tp

    path = pathlib.Path(str(tmp_path)) / "m.tpz"
    rng = np.random.default_rng(4)
    weights = {
        "big": rng.standard_normal((700, 600)).astype(ml_dtypes.bfloat16),
        "bias": rng.standard_normal(384).astype(np.float32),
        "odd4": rng.integers(-8, 8, 1001).astype(ml_dtypes.int4),
        "e4m3": rng.standard_normal((33, 65)).astype(ml_dtypes.float8_e4m3fn),
        "empty": np.zeros((0, 3), np.float16),
    }
    tp.save(weights, path)
    loaded = tp.load(path, threads=2)
    for name, w in weights.items():
        expected = (w.view(np.uint8) & 0x0F) if name == "odd4" else w.view(np.uint8)
        assert loaded[name].dtype == w.dtype and loaded[name].shape == w.shape
        assert loaded[name].view(np.uint8).tobytes() == expected.tobytes(), name
    out = {"big": np.empty((700, 600), ml_dtypes.bfloat16), "bias": np.empty(384, np.float32)}
    again = tp.load(path, out=out)
    assert again["big"] is out["big"] and again["bias"] is out["bias"]
    assert out["big"].tobytes() == weights["big"].tobytes()
    with pytest.raises(InvalidArgumentError):
        tp.load(path, out={"big": np.empty((600, 700), ml_dtypes.bfloat16)})
    with pytest.raises(InvalidArgumentError):
        tp.load(path, out={"nope": np.empty(3, np.float32)})
    with tp.open(path) as f:
        target = np.zeros(384, np.float32)
        assert f.read_into("bias", target) is target
        assert target.tobytes() == weights["bias"].tobytes()


def test_small_tensors_are_never_stored_larger_than_raw_plus_stream_headers() -> None:
    import tensorpress as tp

    noise = np.random.default_rng(5).integers(0, 2**32, 384, dtype=np.uint32).view(np.float32)
    for codec in ("auto", "huffman", "qlc"):
        packed = tp.compress(noise, codec=codec)
        # One raw stream per plane at most: 28 header bytes + 9 per chunk over the plane.
        assert packed.nbytes <= noise.nbytes + 4 * (28 + 9), codec
        assert tp.decompress(packed).tobytes() == noise.tobytes()


def test_many_tensors_at_once_refuse_shared_outputs() -> None:
    rng = np.random.default_rng(6)
    a = rng.standard_normal(3000).astype(ml_dtypes.bfloat16)
    b = rng.standard_normal(17).astype(np.float32)
    pa = [blob for _, blob in entropy.encode_planes(a, "bf16-exponent", chunk_size=1024)]
    pb = [blob for _, blob in entropy.encode_planes(b, "fp32-exponent")]
    out_a, out_b = np.empty_like(a), np.empty_like(b)
    entropy.decode_planes_many([(pa, "bf16-exponent", out_a), (pb, "fp32-exponent", out_b)], 2)
    assert out_a.tobytes() == a.tobytes() and out_b.tobytes() == b.tobytes()
    with pytest.raises(InvalidArgumentError):
        entropy.decode_planes_many([(pa, "bf16-exponent", out_a), (pa, "bf16-exponent", out_a)])
    # A stream that lives inside the output buffer would be overwritten while being read.
    arena = np.zeros(8192, np.uint8)
    arena[: len(pb[0])] = np.frombuffer(pb[0], np.uint8)
    with pytest.raises(InvalidArgumentError):
        inside = arena[: len(pb[0])]
        entropy.decode_planes_into([inside, *pb[1:]], "fp32-exponent", arena[:68].view(np.float32))


def test_a_flip_in_any_chunk_of_any_plane_is_a_checksum_error() -> None:
    """Raw chunks are merged before their checksum is checked and coded chunks decoded before
    theirs: whatever was written, a damaged chunk must end in a ChecksumError."""
    data = np.random.default_rng(4).standard_normal(3000).astype(np.float32)
    blobs = [bytes(b) for _, b in entropy.encode_planes(data, "fp32-exponent", "auto", chunk_size=1024)]
    assert any(entropy.info(b)["codec"] == "raw" for b in blobs)
    assert any(entropy.info(b)["codec"] != "raw" for b in blobs)
    for k, blob in enumerate(blobs):
        head = entropy.info(blob)["header_len"]
        for at in range(head, len(blob), 97):
            bad = bytearray(blob)
            bad[at] ^= 0x20
            damaged = [*blobs[:k], bytes(bad), *blobs[k + 1 :]]
            with pytest.raises(ChecksumError):
                entropy.decode_planes_into(damaged, "fp32-exponent", np.zeros(3000, np.float32))
            # A second flip in another plane: still the checksum error, never another kind.
            other = (k + 1) % len(blobs)
            worse = bytearray(damaged[other])
            worse[-1] ^= 0x01
            damaged[other] = bytes(worse)
            with pytest.raises(ChecksumError):
                entropy.decode_planes_into(damaged, "fp32-exponent", np.zeros(3000, np.float32))
    out = np.zeros(3000, np.float32)
    entropy.decode_planes_into(blobs, "fp32-exponent", out)
    assert out.tobytes() == data.tobytes()
