"""GPU decode (tensorpress.gpu): the Triton kernels against the Rust decoder, bit for bit.

Without a GPU the kernels run on CPU tensors under Triton's interpreter (TRITON_INTERPRET=1, set
here before Triton is imported); with one, the same tests run on CUDA. The
interpreter costs ~3 ms per row of lanes, so streams stay at a few KiB with many lanes.
"""

from __future__ import annotations

import importlib
import os
import struct
import sys
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tensorpress.entropy as te
from tensorpress import _core, planner, tensors
from tensorpress.errors import (
    BackendUnavailableError,
    CorruptDataError,
    FormatError,
    InvalidArgumentError,
    TensorpressError,
)

torch = pytest.importorskip("torch")
CUDA = torch.cuda.is_available()
if not CUDA:
    # Triton reads the variable when a function is decorated: its own library functions on
    # import, ours when the kernels module is imported. So it must be set before either, and
    # stay set (it changes nothing for code that does not use Triton).
    if "triton" in sys.modules and not os.environ.get("TRITON_INTERPRET"):
        pytest.skip("Triton was imported before TRITON_INTERPRET=1 could be set", allow_module_level=True)
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")
KERNELS = importlib.import_module("tensorpress.gpu.kernels")
if not CUDA and not KERNELS.INTERPRETED:
    pytest.skip("the Triton kernels were compiled for a GPU this machine lacks", allow_module_level=True)
DEVICE = "cuda" if CUDA else "cpu"
GOLDEN = Path(__file__).parent / "golden"

import tensorpress.gpu as tg  # noqa: E402 (after the kernels are imported in the right mode)
from tensorpress.gpu import stream as gstream  # noqa: E402

CODED = [c for c in te.CODECS if c != "raw"]
#: The must-fail golden streams (docs/format.md §7), each tested against both decoders below.
MUST_FAIL_STREAMS = {
    "stream-v2-future-version.tpe": FormatError,
    "stream-v2-lane-length-overlong.tpe": CorruptDataError,
    "stream-v2-huffman-table-trailing.tpe": FormatError,
}


def gpu_decode(blob: bytes, **kw: Any) -> np.ndarray:
    out = tg.decode(blob, device=DEVICE, **kw)
    assert out.dtype == torch.uint8 and out.device.type == DEVICE
    return out.cpu().numpy()


def skewed(n: int, seed: int, scale: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.abs(rng.laplace(0, scale, n)), 0, 255).astype(np.uint8)


def chunk_modes(blob: bytes) -> set[int]:
    return {blob[at] for at, _ in te.info(blob)["chunks"]}


def reseal(blob: bytearray) -> bytes:
    """Recompute every chunk CRC and the header CRC, so a corruption reaches the decoders."""
    table_len, n, c = struct.unpack_from("<I", blob, 20)[0], *struct.unpack_from("<QI", blob, 8)
    m, index_at = -(-n // c), 24 + table_len
    at = index_at + 8 * m + 4
    for i in range(m):
        length = struct.unpack_from("<I", blob, index_at + 8 * i)[0]
        struct.pack_into("<I", blob, index_at + 8 * i + 4, _core.crc32c(bytes(blob[at : at + length])))
        at += length
    struct.pack_into("<I", blob, index_at + 8 * m, _core.crc32c(bytes(blob[: index_at + 8 * m])))
    return bytes(blob)


def rust_outcome(blob: bytes) -> np.ndarray | type[Exception]:
    try:
        return te.decode(blob)
    except TensorpressError as exc:
        return type(exc)


def gpu_outcome(blob: bytes) -> np.ndarray | type[Exception]:
    try:
        return gpu_decode(blob)
    except TensorpressError as exc:
        return type(exc)


def assert_same_outcome(blob: bytes) -> None:
    want, got = rust_outcome(blob), gpu_outcome(blob)
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), f"Rust decodes, GPU raised {got}"
        np.testing.assert_array_equal(got, want)
    else:
        assert got is want, f"Rust raised {want.__name__}, GPU gave {got}"


# --- differential: golden streams, every codec and chunk mode -----------------------------------


@pytest.mark.parametrize(
    "path",
    sorted(p for v in (1, 2) for p in GOLDEN.glob(f"stream-v{v}-*.tpe") if p.name not in MUST_FAIL_STREAMS),
    ids=lambda p: p.stem,
)
def test_golden_streams_decode_like_rust(path: Path) -> None:
    blob = path.read_bytes()
    np.testing.assert_array_equal(gpu_decode(blob), te.decode(blob))


@pytest.mark.parametrize("name", sorted(MUST_FAIL_STREAMS))
def test_must_fail_golden_streams_fail_alike(name: str) -> None:
    blob = (GOLDEN / name).read_bytes()
    for decode in (gpu_decode, te.decode):
        with pytest.raises(MUST_FAIL_STREAMS[name]):
            decode(blob)


def test_golden_own_tables_stream_has_own_table_chunks() -> None:
    for version in (1, 2):
        blob = (GOLDEN / f"stream-v{version}-huffman-own-tables.tpe").read_bytes()
        assert gstream.MODE_OWN_TABLE in chunk_modes(blob)


def _mixed() -> np.ndarray:
    """2 KiB chunks: coded, constant, raw (noise), one of other statistics that the encoder
    gives its own table, and a short last chunk."""
    rng = np.random.default_rng(7)
    parts = [
        skewed(4096, 1, 8.0),
        np.full(2048, 9, np.uint8),
        rng.integers(0, 256, 2048, dtype=np.uint8),
        (100 + rng.integers(0, 16, 2048)).astype(np.uint8),
        skewed(333, 3),
    ]
    return np.concatenate(parts)


@pytest.mark.parametrize("codec", te.CODECS)
def test_every_codec_and_chunk_mode_matches_rust(codec: str) -> None:
    modes: set[int] = set()
    for data in (_mixed(), skewed(3000, 5)):
        blob = te.encode(data, codec, lanes=32, chunk_size=2048)
        modes |= chunk_modes(blob)
        np.testing.assert_array_equal(gpu_decode(blob), data)
    expected = {gstream.MODE_RAW, gstream.MODE_CONSTANT}
    if codec != "raw":
        expected |= {gstream.MODE_CODED, gstream.MODE_OWN_TABLE}
    assert expected <= modes, f"{codec}: chunk modes {modes}"


def test_equal_own_tables_share_one_decode_table() -> None:
    special = (100 + np.random.default_rng(7).integers(0, 16, 2048)).astype(np.uint8)
    other = skewed(2048, 1, 8.0)
    data = np.concatenate([special, other, special, other])
    blob = te.encode(data, "qlc", lanes=32, chunk_size=2048)
    _, plan = gstream.parse_stream(blob)
    assert [blob[at] for at, _ in te.info(blob)["chunks"]] == [3, 1, 3, 1]
    assert len(plan.tables) == 2 and list(plan.coded_table) == [1, 0, 1, 0]
    np.testing.assert_array_equal(gpu_decode(blob), data)


@pytest.mark.parametrize(("lanes", "n"), [(1, 150), (5, 1100), (32, 1100)])
def test_lane_counts_and_short_chunks(lanes: int, n: int) -> None:
    data = skewed(n, lanes)  # short last chunks; at 32 lanes some lanes of the last hold nothing
    for codec in ("huffman", "expgolomb"):
        blob = te.encode(data, codec, lanes=lanes, chunk_size=1024)
        np.testing.assert_array_equal(gpu_decode(blob), data)


def test_lane_groups_split_one_chunk_across_programs() -> None:
    data = skewed(1500, 11)
    blob = te.encode(data, "qlc", lanes=24, chunk_size=1024)
    held = tg.upload(blob, device=DEVICE, lane_group=8)
    assert held.lane_block == 8 and held.nbytes >= len(blob)
    out = torch.full((data.size,), 1, dtype=torch.uint8, device=DEVICE)
    assert held.decode(out=out) is out
    np.testing.assert_array_equal(out.cpu().numpy(), data)
    np.testing.assert_array_equal(held.decode().cpu().numpy(), data)  # decodes again
    with pytest.raises(InvalidArgumentError):
        held.decode(out=torch.empty(data.size - 1, dtype=torch.uint8, device=DEVICE))


def test_empty_and_constant_streams() -> None:
    assert gpu_decode(te.encode(b"", "huffman")).size == 0
    data = np.full(3000, 77, np.uint8)
    np.testing.assert_array_equal(gpu_decode(te.encode(data, "qlc", chunk_size=1024)), data)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 2000),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([0.4, 2.0, 12.0, 200.0]),
    codec=st.sampled_from(te.CODECS),
    lanes=st.sampled_from([7, 16, 32]),
)
def test_random_data_matches_rust(n: int, seed: int, scale: float, codec: str, lanes: int) -> None:
    data = skewed(n, seed, scale)
    blob = te.encode(data, codec, lanes=lanes, chunk_size=1024)
    np.testing.assert_array_equal(gpu_decode(blob), te.decode(blob))


# --- hostile streams -> the Rust decoder's typed errors ---------------------------------------------


def _lane_bytes(blob: bytes) -> list[int]:
    """Offsets of lane-data bytes (after each coded chunk's lane-length table)."""
    _, plan = gstream.parse_stream(blob)
    spots: list[int] = []
    for start, length in zip(plan.lane_start.reshape(-1), plan.lane_len.reshape(-1), strict=True):
        spots.extend(range(int(start), int(start + length)))
    return spots


@pytest.mark.parametrize("codec", CODED)
def test_flipped_lane_bits_resealed_agree_with_rust(codec: str) -> None:
    data = skewed(1024, 5, 2.0)
    blob = te.encode(data, codec, lanes=32, chunk_size=1024)
    spots = _lane_bytes(blob)
    rng = np.random.default_rng(99)
    caught_by_kernel = 0
    for _ in range(4):
        bad = bytearray(blob)
        for at in rng.choice(spots, size=3, replace=False):
            bad[int(at)] ^= 1 << int(rng.integers(0, 8))
        sealed = reseal(bad)
        assert_same_outcome(sealed)
        try:
            gpu_decode(sealed)
        except CorruptDataError as exc:
            caught_by_kernel += "lane" in str(exc)
    assert caught_by_kernel, "no corruption reached the kernel's own checks"


def test_kernel_flags_invalid_codes_and_unconsumed_lanes() -> None:
    data = skewed(1024, 4, 2.0)
    blob = te.encode(data, "expgolomb", lanes=32, chunk_size=1024)
    _, plan = gstream.parse_stream(blob)
    first = int(plan.lane_start[0, 0])
    bad = bytearray(blob)
    bad[first : first + 3] = b"\0\0\0"  # 24 zero bits: a zero run no Exp-Golomb byte code has
    with pytest.raises(CorruptDataError, match="code no encoder writes"):
        gpu_decode(reseal(bad))
    with pytest.raises(CorruptDataError):
        te.decode(reseal(bad))
    # A lane shortened by one byte and the next lengthened by one: the lanes still tile the
    # chunk, so only the decode can tell.
    lens = plan.lane_len[0].tolist()
    lens[0], lens[1] = lens[0] - 1, lens[1] + 1
    bad = with_lane_lengths(blob, lens)
    with pytest.raises(CorruptDataError, match="lane"):
        gpu_decode(bad)
    with pytest.raises(CorruptDataError):
        te.decode(bad)


def varints(lengths: list[int]) -> bytes:
    """Version 2's lane-length table (docs/format.md §1.1), written independently of the encoder."""
    out, prev = bytearray(), 0
    for length in lengths:
        d = length - prev
        z = 2 * d if d >= 0 else -2 * d - 1
        while z >= 0x80:
            out.append(z & 0x7F | 0x80)
            z >>= 7
        out.append(z)
        prev = length
    return bytes(out)


def with_lane_lengths(blob: bytes, lengths: list[int]) -> bytes:
    """``blob`` with chunk 0 (mode 1) given the lane lengths ``lengths``, its lanes' bytes as they
    were; index length and every CRC recomputed."""
    _, plan = gstream.parse_stream(blob)
    at, length = te.info(blob)["chunks"][0]
    assert blob[at] == gstream.MODE_CODED
    lanes_at = int(plan.lane_start[0, 0])
    chunk = bytes([gstream.MODE_CODED]) + varints(lengths) + blob[lanes_at : at + length]
    table_len = struct.unpack_from("<I", blob, 20)[0]
    out = bytearray(blob[:at] + chunk + blob[at + length :])
    struct.pack_into("<I", out, 24 + table_len, len(chunk))
    return reseal(out)


def test_lane_length_tables_are_checked_like_rusts() -> None:
    blob = te.encode(skewed(1024, 4, 2.0), "expgolomb", lanes=32, chunk_size=1024)
    _, plan = gstream.parse_stream(blob)
    lens = plan.lane_len[0].tolist()
    assert with_lane_lengths(blob, lens) == blob, "the test's varints are the encoder's"
    at = te.info(blob)["chunks"][0][0]
    for table, match in [
        (b"\x80\x00" + varints(lens)[1:], "shortest"),  # lane 0 in two bytes
        (b"\xff\xff\xff\xff\xff\x01", "longer than 5"),
        (b"\x01", "outside"),  # −1
    ]:
        bad = bytearray(blob)
        bad[at + 1 : at + 1 + len(table)] = table
        bad = bytearray(reseal(bad))
        for decode in (gpu_decode, te.decode):
            with pytest.raises(CorruptDataError, match=match):
                decode(bytes(bad))


def _huffman_blob() -> bytes:
    return te.encode(skewed(2100, 8), "huffman", lanes=32, chunk_size=1024)


def _mutations() -> list[tuple[str, bytes]]:
    blob = _huffman_blob()
    info = te.info(blob)
    first_chunk = info["chunks"][0][0]
    cases: list[tuple[str, bytes]] = []

    def put(at: int, raw: bytes, *, seal: bool = True) -> bytes:
        b = bytearray(blob)
        b[at : at + len(raw)] = raw
        return reseal(b) if seal else bytes(b)

    cases.append(("magic", put(0, b"\x89TPX", seal=False)))
    cases.append(("version", put(4, b"\x03", seal=False)))
    cases.append(("version 0", put(4, b"\x00", seal=False)))
    cases.append(("codec id", put(5, b"\x09", seal=False)))
    cases.append(("lanes 0", put(6, b"\x00", seal=False)))
    cases.append(("lanes 33", put(6, b"\x21", seal=False)))
    cases.append(("flags", put(7, b"\x01", seal=False)))
    cases.append(("huge length", put(8, struct.pack("<Q", 1 << 41), seal=False)))
    cases.append(("chunk size", put(16, struct.pack("<I", 512), seal=False)))
    cases.append(("table length", put(20, struct.pack("<I", 266), seal=False)))
    cases.append(("kraft", put(24, b"\x07")))  # lengths 1, 1, 1, …
    cases.append(("long code", put(24, b"\x3f")))  # a first length of 15
    cases.append(("below zero", put(24, b"\x05")))  # a first length of −1
    cases.append(("truncated", blob[:-1]))
    cases.append(("padded", blob + b"\0"))
    cases.append(("short header", blob[:20]))
    cases.append(("mode", put(first_chunk, b"\x07")))
    cases.append(("raw length", put(first_chunk, b"\x00")))
    cases.append(("constant length", put(first_chunk, b"\x02")))
    cases.append(("lane length", put(first_chunk + 1, struct.pack("<I", 1 << 30))))
    cases.append(("lane slack", put(first_chunk + 1, struct.pack("<I", 0))))
    cases.append(("header crc", put(30, b"\x55", seal=False)))
    cases.append(("chunk crc", put(first_chunk + 200, bytes([blob[first_chunk + 200] ^ 4]), seal=False)))
    return cases


@pytest.mark.parametrize(("name", "blob"), _mutations(), ids=[n for n, _ in _mutations()])
def test_malformed_streams_raise_the_rust_decoders_error(name: str, blob: bytes) -> None:
    want = rust_outcome(blob)
    assert isinstance(want, type) and issubclass(want, TensorpressError), name
    with pytest.raises(want):
        gpu_decode(blob)


def test_bad_own_table_is_corrupt_data() -> None:
    blob = (GOLDEN / "stream-v1-huffman-own-tables.tpe").read_bytes()
    own = next(at for at, _ in te.info(blob)["chunks"] if blob[at] == gstream.MODE_OWN_TABLE)
    for raw, what in ((b"\x11" * 128, "Kraft"), (struct.pack("<H", 300), "too long")):
        bad = bytearray(blob)
        at = own + 3 if what == "Kraft" else own + 1
        bad[at : at + len(raw)] = raw
        sealed = reseal(bad)
        with pytest.raises(CorruptDataError, match=what):
            gpu_decode(sealed)
        with pytest.raises(CorruptDataError):
            te.decode(sealed)


def test_checks_come_before_allocation_and_upload() -> None:
    blob = _huffman_blob()
    with pytest.raises(FormatError, match="max_size"):
        tg.decode(blob, device=DEVICE, max_size=100)
    with pytest.raises(FormatError):
        tg.decode("not bytes", device=DEVICE)
    with pytest.raises(InvalidArgumentError):
        tg.decode(blob, device=DEVICE, backend="nvcomp")
    with pytest.raises(InvalidArgumentError):
        tg.decode(blob, device="meta")


@pytest.mark.skipif(CUDA, reason="checks the no-GPU error")
def test_cuda_without_gpu_is_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailableError):
        tg.decode(_huffman_blob(), device="cuda")


# --- plane merge and blockwise dequantization ----------------------------------------------------


def _planes_case(dtype: Any, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype) in (np.dtype(ml_dtypes.int4), np.dtype(ml_dtypes.uint4)):
        lo = -8 if np.dtype(dtype) == np.dtype(ml_dtypes.int4) else 0
        return rng.integers(lo, lo + 16, count).astype(dtype)
    raw = rng.integers(0, 256, count * np.dtype(dtype).itemsize, dtype=np.uint8)
    return raw.view(dtype)


@pytest.mark.parametrize(
    "dtype",
    [ml_dtypes.bfloat16, np.float32, ml_dtypes.int4, ml_dtypes.uint4, np.float16,
     ml_dtypes.float8_e4m3fn, np.int64, np.uint8, np.bool_],
    ids=str,
)  # fmt: skip
@pytest.mark.parametrize("count", [0, 1, 257])
def test_merge_planes_is_bit_identical_to_numpy(dtype: Any, count: int) -> None:
    name = tensors.dtype_name(np.dtype(dtype))
    transform = tensors.transform_name(name)
    flat = _planes_case(dtype, count, count) if dtype is not np.bool_ else np.arange(count) % 3 == 0
    planes = tensors.split_planes(flat, transform)
    want = tensors.merge_planes(planes, transform, np.dtype(dtype), count)
    got = tg.merge_planes([torch.from_numpy(p.copy()).to(DEVICE) for p in planes], transform, name, count)
    assert got.device.type == DEVICE and got.numel() == count
    got_bytes = got.cpu().contiguous().view(torch.uint8).numpy()
    np.testing.assert_array_equal(got_bytes, want.view(np.uint8).reshape(-1))


def test_merge_planes_rejects_inconsistent_planes() -> None:
    p = torch.zeros(10, dtype=torch.uint8)
    with pytest.raises(CorruptDataError):
        tg.merge_planes([p, torch.zeros(9, dtype=torch.uint8)], "bf16-exponent", "bfloat16", 10)
    with pytest.raises(FormatError):
        tg.merge_planes([p], "bf16-exponent", "bfloat16", 10)
    with pytest.raises(FormatError):
        tg.merge_planes([p], "zigzag", "uint8", 10)
    with pytest.raises(FormatError):
        tg.merge_planes([p, p], "bf16-exponent", "float16", 10)


@pytest.mark.parametrize(
    ("scheme", "bits", "block", "layout"),
    [("rtn-block", 4, 32, "packed"), ("rtn-block", 3, 48, "qlc"), ("tender-group", 5, 6, "packed"),
     ("tender-group", 8, 4, "huffman")],
)  # fmt: skip
def test_blockwise_dequantize_is_bit_identical(scheme: str, bits: int, block: int, layout: str) -> None:
    rng = np.random.default_rng(bits)
    w = (rng.standard_normal((24, 100)) * np.linspace(0.1, 3, 100)).astype(ml_dtypes.bfloat16)
    q = planner.quantize_blockwise(w, bits, block, scheme=scheme, layout=layout)
    got = tg.decode_blockwise(
        q.codes,
        q.side,
        layout=q.layout,
        scheme=scheme,
        bits=bits,
        block_size=block,
        shape=q.shape,
        dtype_name=q.dtype,
        tmax=q.tmax,
        device=DEVICE,
    )
    want = q.dequantize_numpy()
    assert tuple(got.shape) == want.shape and got.dtype == torch.bfloat16
    np.testing.assert_array_equal(got.cpu().view(torch.uint16).numpy(), want.view(np.uint16))


def test_blockwise_refuses_a_code_stream_of_the_wrong_length() -> None:
    side = np.ones(4, np.float16).tobytes()
    blob = te.encode(np.full(300, 7, np.uint8), "huffman")
    with pytest.raises(FormatError):
        tg.decode_blockwise(blob, side, layout="huffman", scheme="rtn-block", bits=4, block_size=64,
                            shape=(2, 128), dtype_name="float32", device=DEVICE)  # fmt: skip


@pytest.mark.parametrize(
    "tensor",
    [
        (np.sin(np.arange(3000) * 0.1) * 0.02).astype(ml_dtypes.bfloat16).reshape(30, 100),
        (np.random.default_rng(1).standard_normal((17, 33)) * 3).astype(np.float32),
        np.arange(-8, 8, dtype=np.int8).astype(ml_dtypes.int4).repeat(9)[:131],
        np.random.default_rng(2).integers(-500, 500, (7, 11)).astype(np.int16),
        np.zeros((0, 4), np.float32),
    ],
    ids=["bf16", "fp32", "int4-odd", "int16", "empty"],
)
def test_decode_planes_restores_tensors_bit_exactly(tensor: np.ndarray) -> None:
    ct = tensors.compress(tensor, "huffman")  # plane streams (auto may store tiny tensors verbatim)
    got = tg.decode_planes([p.blob for p in ct.planes], ct.transform, ct.dtype, ct.shape, device=DEVICE)
    want = tensors.decompress(ct)
    assert tuple(got.shape) == want.shape and got.device.type == DEVICE
    np.testing.assert_array_equal(got.cpu().contiguous().view(torch.uint8).numpy().reshape(-1),
                                  want.view(np.uint8).reshape(-1))  # fmt: skip


def test_decode_planes_refuses_streams_longer_than_their_plane() -> None:
    ct = tensors.compress(np.ones(1000, np.float32))
    with pytest.raises(FormatError, match="max_size"):
        tg.decode_planes([p.blob for p in ct.planes], ct.transform, ct.dtype, (10,), device=DEVICE)


_COMPILE = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from tensorpress.gpu import kernels as k
assert not k.INTERPRETED
target = GPUTarget("cuda", 90, 32)
coded = {"blob": "*u8", "out": "*u8", "errors": "*i32", "dst": "*i64", "length": "*i64",
         "table_of": "*i32", "lane_start": "*i64", "lane_len": "*i64", "lut": "*i16",
         "order_of": "*i32", "n_lanes": "i32", "LUT_BITS": "constexpr", "EXP_GOLOMB": "constexpr",
         "LANE_BLOCK": "constexpr"}
for eg, bits in ((False, 12), (True, 8)):
    consts = {"LUT_BITS": bits, "EXP_GOLOMB": eg, "LANE_BLOCK": 32}
    c = triton.compile(ASTSource(k.decode_coded_chunks, coded, consts), target=target,
                       options={"num_warps": 1})
    assert c.asm["cubin"]
stored = {"blob": "*u8", "out": "*u8", "src": "*i64", "dst": "*i64", "length": "*i64",
          "constant": "*i32", "BLOCK": "constexpr"}
c = triton.compile(ASTSource(k.fill_stored_chunks, stored, {"BLOCK": 4096}), target=target)
assert c.asm["cubin"]
print("compiled")
"""


@pytest.mark.skipif(CUDA, reason="on a GPU the tests above compile and run the kernels")
def test_kernels_compile_for_hopper_without_a_gpu(tmp_path: Path) -> None:
    """The interpreter accepts code the compiler refuses (non-constexpr globals, say): compile
    both kernels to an sm_90 cubin (Triton ships ptxas; no GPU needed) in a fresh process."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(tg.__file__).parents[2]), env.get("PYTHONPATH", "")])
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    res = subprocess.run(
        [sys.executable, "-c", _COMPILE], env=env, capture_output=True, text=True, timeout=300
    )
    if "ptxas" in res.stderr and "not found" in res.stderr.lower():
        pytest.skip("this Triton build ships no ptxas")
    assert res.returncode == 0 and "compiled" in res.stdout, res.stderr[-3000:]


# --- on a GPU only ----------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("codec", te.CODECS)
def test_cuda_decode_of_real_e4m3_bytes(codec: str, minilm_e4m3_bytes: np.ndarray) -> None:
    data = minilm_e4m3_bytes[: 8 << 20]
    blob = te.encode(data, codec)
    out = tg.decode(blob, device="cuda")
    assert out.is_cuda
    np.testing.assert_array_equal(out.cpu().numpy(), data)


# --- the public entry points route to the GPU decoders ---------------------------------------


def test_entropy_decode_with_device_uses_the_gpu_kernels() -> None:
    data = skewed(9000, 41)
    blob = te.encode(data, codec="huffman", lanes=8)
    out = te.decode(blob, device=DEVICE, backend="triton")
    assert out.device.type == DEVICE and out.cpu().numpy().tobytes() == data.tobytes()
    with pytest.raises(InvalidArgumentError):
        te.decode(blob, backend="cuda-magic")


def test_stored_tensors_decode_on_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lossless and blockwise tensors bound for a CUDA device are decoded by tensorpress.gpu
    (here forced onto the interpreter's device) and equal the CPU decode."""
    from tensorpress.methods import base, blockwise

    calls: list[str] = []
    real_decode_planes, real_decode_blockwise = tg.decode_planes, tg.decode_blockwise

    def spy_planes(*args: Any, **kw: Any) -> Any:
        calls.append("planes")
        return real_decode_planes(*args, **{**kw, "device": DEVICE})

    def spy_blockwise(*args: Any, **kw: Any) -> Any:
        calls.append("blockwise")
        return real_decode_blockwise(*args, **{**kw, "device": DEVICE})

    monkeypatch.setattr(tg, "decode_planes", spy_planes)
    monkeypatch.setattr(tg, "decode_blockwise", spy_blockwise)
    monkeypatch.setattr(base, "gpu_decode_target", lambda *a: "cuda:0")
    w = np.random.default_rng(3).standard_normal((48, 80)).astype(ml_dtypes.bfloat16)
    lossless = tensors.compress(w)
    got = lossless.decode(as_kind="torch", device="cuda:0")
    assert got.view(torch.uint16).cpu().numpy().tobytes() == w.view(np.uint16).tobytes()
    lossy = blockwise.quantize_blockwise(w.astype(np.float32), bits=4, block_size=32)
    got = lossy.decode(as_kind="torch", device="cuda:0")
    np.testing.assert_array_equal(got.cpu().numpy(), lossy.dequantize_numpy())
    assert calls == ["planes", "blockwise"]


def test_tp_load_to_cuda_decodes_lossless_tensors_on_the_device(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """``tp.load(path, device="cuda")`` routes every lossless tensor through the GPU decoder
    (forced onto the interpreter's device here) instead of decoding on the CPU and uploading."""
    import tensorpress as tp
    from tensorpress.methods import base

    calls: list[tuple[int, ...]] = []
    real_decode_planes = tg.decode_planes

    def spy_planes(*args: Any, **kw: Any) -> Any:
        calls.append(tuple(args[3]))
        return real_decode_planes(*args, **{**kw, "device": DEVICE})

    monkeypatch.setattr(tg, "decode_planes", spy_planes)
    monkeypatch.setattr(base, "gpu_decode_target", lambda *a: "cuda:0")
    rng = np.random.default_rng(4)
    w = {
        "a": rng.standard_normal((48, 80)).astype(ml_dtypes.bfloat16),
        "b": rng.standard_normal((64, 64)).astype(np.float32),
    }
    tp.save(w, tmp_path / "m.tpz")
    got = tp.load(tmp_path / "m.tpz", as_kind="torch", device="cuda:0")
    assert sorted(calls) == [(48, 80), (64, 64)]
    for k, v in w.items():
        assert got[k].cpu().view(torch.uint8).numpy().tobytes() == v.tobytes(), k


def test_layerwise_decodes_each_layer_just_before_it_runs() -> None:
    """Weights held compressed on the device: a layer's parameters exist only while it runs, and
    the outputs (and the weights given back) are bit-identical to the dense model's."""
    from tensorpress.gpu import layerwise

    torch.manual_seed(0)
    first, last = torch.nn.Linear(24, 40), torch.nn.Linear(40, 8)
    model = torch.nn.Sequential(first, torch.nn.GELU(), last).to(torch.bfloat16).to(DEVICE)
    dense = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randn(5, 24, dtype=torch.bfloat16, device=DEVICE)
    with torch.no_grad():
        want = model(x)
    # A forced codec holds every parameter compressed (with "auto" these tiny ones stay dense).
    held = layerwise.compress_modules([first, last], device=DEVICE, codec="huffman")
    assert all(p.numel() == 0 for p in model.parameters())
    assert held.dense_bytes == sum(t.numel() * 2 for t in dense.values()) and held.device_bytes > 0
    sizes: list[list[int]] = []  # hooks run in order: this one after the decode of `last`
    spy = last.register_forward_pre_hook(lambda m, a: sizes.append([p.numel() for p in model.parameters()]))
    with torch.no_grad():
        got = model(x)
    spy.remove()
    assert torch.equal(got, want)
    assert sizes == [[0, 0, 40 * 8, 8]]  # `first` already freed, `last` decoded
    assert all(p.numel() == 0 for p in model.parameters())
    held.remove()
    for name, p in model.named_parameters():
        assert torch.equal(p.view(torch.int16), dense[name].view(torch.int16))
    with torch.no_grad():
        assert torch.equal(model(x), want)
    auto = layerwise.compress_modules([first, last], device=DEVICE)
    assert [p.numel() for p in model.parameters()] == [0, 40, 0, 8]  # the verbatim biases stay dense
    with torch.no_grad():
        assert torch.equal(model(x), want)
    auto.remove()
    with pytest.raises(InvalidArgumentError):
        layerwise.compress_modules([object()], device=DEVICE)
