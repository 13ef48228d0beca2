"""Every method is a stored tensor: one registry, one .tpz, every path round-trips."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensorpress as tp
from tensorpress import cli, methods
from tensorpress.distributed import pack_object, unpack_object
from tensorpress.errors import FormatError, InvalidArgumentError
from tensorpress.methods import base, lowrank
from tensorpress.methods.blockwise import BlockwiseTensor, quantize_blockwise

torch = pytest.importorskip("torch")


def _matrix(seed: int, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def stored_set() -> dict[str, Any]:
    """One stored tensor of each method (small: the video one is a 64x64 AV1 picture)."""
    pytest.importorskip("av")  # the video member is coded on the CPU through PyAV
    video = pytest.importorskip("tensorpress.video")
    u = _matrix(3, (64, 8))
    v = _matrix(4, (8, 48))
    return {
        "lossless": tp.compress(_matrix(0)),
        "blockwise": quantize_blockwise(_matrix(1), bits=4, block_size=32),
        "video": video.encode(_matrix(2), bits_per_value=3.0, codec="av1"),
        "lowrank": lowrank.from_factors(u, v, np.linspace(-1, 1, 64, dtype=np.float32)),
        "torch-lossless": tp.compress(torch.arange(12, dtype=torch.bfloat16).reshape(3, 4)),
    }


@pytest.fixture(scope="module")
def stored() -> dict[str, Any]:
    return stored_set()


def expected(obj: Any) -> np.ndarray:
    out = obj.decode(as_kind="numpy")
    assert isinstance(out, np.ndarray)
    return out


def same(a: Any, b: np.ndarray) -> None:
    arr = tp.tensors.to_numpy(a)[0] if isinstance(a, torch.Tensor) else a
    assert arr.dtype == b.dtype and arr.shape == b.shape
    assert arr.tobytes() == b.tobytes()


def test_registry_names_every_method(stored: dict[str, Any]) -> None:
    assert set(methods.METHODS) == {"lossless", "blockwise", "video", "lowrank"}
    for obj in stored.values():
        assert methods.is_stored(obj)
        assert methods.stored_class(obj.method) is type(obj)
        assert isinstance(obj, base.StoredTensor)
        text = repr(obj)
        assert obj.method in text and str(obj.dtype) in text and len(text) < 200
    with pytest.raises(FormatError, match="unknown tensor method"):
        methods.stored_class("lossless-v9")
    assert not methods.is_stored(np.zeros(3))


def test_one_file_holds_every_method(stored: dict[str, Any], tmp_path: Path) -> None:
    path = tp.save(stored, tmp_path / "all.tpz")
    want = {k: expected(v) for k, v in stored.items()}
    loaded = tp.load(path)
    for k in stored:
        same(loaded[k], want[k])
    assert isinstance(loaded["torch-lossless"], torch.Tensor) and isinstance(loaded["video"], np.ndarray)
    with tp.open(path) as f:
        assert [e["method"] for e in f.entries()] == [v.method for v in stored.values()]
        for k in stored:
            same(f[k], want[k])
            again = f.compressed(k)
            assert type(again) is type(stored[k]) and again.payload() == stored[k].payload()
            same(tp.decompress(again), want[k])
    for k, v in stored.items():
        back = unpack_object(pack_object(v))
        assert back.header() == v.header() and back.payload() == v.payload()
        same(tp.decompress(back, as_kind="numpy"), want[k])


@pytest.mark.parametrize("as_kind", ["numpy", "torch"])
def test_as_kind_is_honoured_by_every_method(stored: dict[str, Any], tmp_path: Path, as_kind: str) -> None:
    path = tp.save(stored, tmp_path / "all.tpz")
    kind = np.ndarray if as_kind == "numpy" else torch.Tensor
    for k, v in stored.items():
        assert isinstance(tp.decompress(v, as_kind=as_kind), kind), k
    for k, out in tp.load(path, as_kind=as_kind).items():
        assert isinstance(out, kind), k
        same(out, expected(stored[k]))
    with tp.open(path, as_kind=as_kind) as f:
        assert all(isinstance(f[k], kind) for k in f)
    with pytest.raises(InvalidArgumentError):
        tp.load(path, as_kind="jax")


def test_cli_decompress_and_inspect_every_method(
    stored: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tp.save(stored, tmp_path / "all.tpz")
    assert cli.main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    for method in ("lossless", "blockwise", "video", "lowrank"):
        assert method in out
    assert cli.main(["decompress", str(path), str(tmp_path / "all.safetensors"), "-q"]) == 0
    back = tp.load(tmp_path / "all.safetensors")
    for k, v in stored.items():
        same(back[k], expected(v))


def test_lowrank_decodes_to_the_product_and_keeps_its_factors() -> None:
    w = _matrix(5, (48, 32))
    bias = np.arange(48, dtype=np.float32)
    lr = lowrank.factorize(w, 32, bias)  # full rank: the product is w up to float32 rounding
    np.testing.assert_allclose(lr.decode(), w, rtol=0, atol=2e-5)
    parts = lr.factors()
    assert set(parts) == {"u", "v", "bias"} and parts["bias"].tobytes() == bias.tobytes()
    exact = np.asarray(parts["u"], np.float32) @ np.asarray(parts["v"], np.float32)
    assert lr.decode().tobytes() == exact.astype(np.float32).tobytes()
    low = lowrank.factorize(w, 4)
    assert low.nbytes < lr.nbytes and low.bits_per_value < 32
    t = lowrank.factorize(torch.from_numpy(w).to(torch.bfloat16), 8)
    assert isinstance(t.decode(), torch.Tensor) and t.decode().dtype == torch.bfloat16
    with pytest.raises(InvalidArgumentError):
        lowrank.factorize(w, 0)
    with pytest.raises(InvalidArgumentError):
        lowrank.from_factors(w, w)


def test_lowrank_stores_an_svd_factorized_layer(tmp_path: Path) -> None:
    from tensorpress.lowrank import rom

    layer = torch.nn.Linear(32, 24)
    factorized = rom.svd_factorize(layer, 6)
    lr = lowrank.from_module(factorized)
    assert lr.shape == (24, 32) and lr.rank == 6
    x = torch.randn(5, 32)
    back = tp.load(tp.save({"layer": lr}, tmp_path / "lr.tpz"))["layer"]
    parts = lr.factors()
    with torch.no_grad():
        assert torch.allclose(x @ back.T + parts["bias"], factorized(x), atol=1e-5)
    with pytest.raises(InvalidArgumentError):
        lowrank.from_module(layer)


def test_lowrank_factors_may_be_quantized() -> None:
    u, v = _matrix(6, (32, 4)), _matrix(7, (4, 16))
    lr = lowrank.from_factors(u, v)
    q = lowrank.LowRankTensor(
        "float32", (32, 16), 4, quantize_blockwise(u, 8, 4), quantize_blockwise(v, 8, 16)
    )
    back = methods.from_parts("lowrank", q.header(), q.payload())
    assert isinstance(back.u, BlockwiseTensor)
    err = np.abs(back.decode() - lr.decode()).max()
    assert 0 < err < 0.1


def test_recorded_cuda_device_loads_on_cpu_with_a_warning(tmp_path: Path) -> None:
    obj = tp.compress(torch.ones(4, 4))
    obj.device = "cuda:7" if torch.cuda.is_available() else "cuda:0"
    if base.device_available(obj.device):
        pytest.skip("this machine has the recorded device")
    path = tp.save({"w": obj, "b": quantize_blockwise(torch.ones(2, 8), 4, 8)}, tmp_path / "g.tpz")
    with pytest.warns(UserWarning, match="returning it on the CPU"):
        out = tp.load(path)["w"]
    assert out.device.type == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(tp.load(path, as_kind="numpy")["w"], np.ndarray)
        assert tp.load(path, device="cpu")["w"].device.type == "cpu"


@pytest.mark.parametrize("device", ["cuda:x", "gpu", "cuda:0; rm -rf /", 7, "cuda:99999", ""])
def test_malformed_device_strings_are_format_errors(device: Any) -> None:
    obj = tp.compress(torch.ones(3))
    with pytest.raises(FormatError, match="device"):
        methods.from_parts("lossless", {**obj.header(), "device": device}, obj.payload())


def test_max_size_is_checked_before_decoding(stored: dict[str, Any], tmp_path: Path) -> None:
    path = tp.save(stored, tmp_path / "all.tpz")
    total = sum(v.decoded_nbytes for v in stored.values())
    assert len(tp.load(path, max_size=total)) == len(stored)
    with pytest.raises(FormatError, match="max_size"):
        tp.load(path, max_size=total - 1)
    for k, v in stored.items():
        with tp.open(path, max_size=v.decoded_nbytes - 1) as f, pytest.raises(FormatError, match="max_size"):
            f[k]
        with pytest.raises(FormatError, match="max_size"):
            unpack_object(pack_object(v), max_size=v.decoded_nbytes - 1)
        with pytest.raises(FormatError, match="max_size"):
            tp.decompress(v, max_size=v.decoded_nbytes - 1)
        assert tp.decompress(v, max_size=v.decoded_nbytes) is not None
    with pytest.raises(InvalidArgumentError):
        tp.load(path, max_size=-1)


def test_decompress_refuses_what_is_not_stored() -> None:
    with pytest.raises(TypeError, match="not a tensorpress stored tensor"):
        tp.decompress(np.zeros(3))


def test_quantize_flat_agrees_with_the_numpy_reference() -> None:
    from tensorpress.distributed import dequantize_flat, quantize_flat
    from tensorpress.methods.blockwise import rtn_blockwise, rtn_dequantize

    rng = np.random.default_rng(11)
    x = (rng.standard_normal(4096) * np.exp(rng.uniform(-12, 12, 4096))).astype(np.float32)
    x[:128] = 0.0  # an all-zero block: scale 1
    x[200] = 1e6  # a block whose scale clamps at the float16 maximum
    for bits, block in ((8, 128), (4, 64), (8, 32)):
        payload, deq = quantize_flat(torch.from_numpy(x), bits, block)
        codes, scales = rtn_blockwise(x.reshape(1, -1), bits, block)
        ref = rtn_dequantize(codes, scales, block).reshape(-1)
        assert deq.numpy().tobytes() == ref.tobytes(), (bits, block)
        n_codes = x.size if bits == 8 else x.size // 2
        assert payload[n_codes:].numpy().tobytes() == scales.astype("<f2").tobytes()
        assert dequantize_flat(payload, x.size, bits, block).numpy().tobytes() == ref.tobytes()


def test_save_model_with_video_candidates(tmp_path: Path) -> None:
    """The planner may pick video under a bits budget; the result saves and loads back."""
    from tensorpress import samples

    weights = samples.minilm_weights()
    names = ["encoder.layer.0.attention.self.query.weight", "encoder.layer.0.attention.self.query.bias"]
    state = {k: torch.from_numpy(weights[k]) for k in names}
    # At 2.5 bits/value the video candidates are the best fits to the budget (at 3.0, 3-bit RTN
    # with Huffman-coded codes now fits in 2.9 bits and wins on error).
    packed = tp.save_model(state, tmp_path / "m.tpz", bits_per_value=2.5, video=True, sample=4096)
    chosen = {k: p.chosen.method for k, p in packed.plans.items()}
    assert "video" in chosen.values(), chosen
    back = tp.models.load_model(tmp_path / "m.tpz")
    for k in names:
        assert back[k].shape == state[k].shape and back[k].dtype == state[k].dtype
        assert torch.equal(back[k], tp.decompress(packed[k], as_kind="torch"))


def _pack(head: bytes, payload: bytes, *, version: int = 2, flags: int = 0, reserved: int = 0,
          n_head: int | None = None, n_payload: int | None = None) -> bytes:  # fmt: skip
    """A packed message with chosen preamble fields and every checksum recomputed."""
    import struct

    from tensorpress import _core

    n_head = len(head) if n_head is None else n_head
    n_payload = len(payload) if n_payload is None else n_payload
    fields = (
        b"\x89TPO",
        version,
        flags,
        reserved,
        n_head,
        n_payload,
        _core.crc32c(head),
        _core.crc32c(payload),
    )
    pre = struct.pack("<4sBBHIQII", *fields)
    return pre + struct.pack("<I", _core.crc32c(pre)) + head + payload


def test_packed_message_structural_checks_behind_the_checksums() -> None:
    import json

    from tensorpress.errors import ChecksumError

    obj = tp.compress(np.arange(40, dtype=np.float32))
    head = json.dumps({"method": obj.method, "params": obj.header()}).encode()
    payload = obj.payload()
    assert unpack_object(_pack(head, payload)).payload() == payload
    cases = {
        "version": _pack(head, payload, version=1),
        "reserved fields": _pack(head, payload, flags=1),
        "reserved": _pack(head, payload, reserved=1),
        "preamble says": _pack(head, payload, n_head=len(head) + 1),
        "its preamble": _pack(head, payload, n_payload=len(payload) - 1),
        "must be": _pack(
            json.dumps({"method": "lossless", "params": obj.header(), "x": 1}).encode(), payload
        ),
        "unknown tensor method": _pack(json.dumps({"method": "lossless2", "params": {}}).encode(), payload),
        "JSON": _pack(b'{"method": "lossless", "params": {"shape": [1e999]}', payload),
    }
    for fragment, blob in cases.items():
        with pytest.raises(FormatError) as info:
            unpack_object(blob)
        assert fragment.replace("its preamble", "preamble says") in str(info.value), (
            fragment,
            str(info.value),
        )
    good = bytearray(_pack(head, payload))
    good[-1] ^= 1
    with pytest.raises(ChecksumError, match="payload"):
        unpack_object(bytes(good))
    good = bytearray(_pack(head, payload))
    good[33] ^= 1
    with pytest.raises(ChecksumError, match="header"):
        unpack_object(bytes(good))
    with pytest.raises(FormatError):
        unpack_object(_pack(head, payload) + b"\0")
    with pytest.raises(InvalidArgumentError):
        pack_object(np.zeros(3))


_VERBATIM_DTYPES = ["float32", "float16", "bfloat16", "float8_e4m3fn", "int8", "uint8", "int32", "bool"]


@pytest.mark.parametrize("dtype", _VERBATIM_DTYPES)
@pytest.mark.parametrize("n", [0, 1, 7, 384, 5000])
def test_auto_lossless_is_never_larger_than_raw(dtype: str, n: int, tmp_path: Path) -> None:
    """With codec="auto" no tensor's payload exceeds its raw bytes: small or incompressible
    tensors are stored verbatim, and come back bit-exact through every path."""
    from tensorpress.methods import lossless
    from tensorpress.methods.arrays import dtype_from_name

    rng = np.random.default_rng(n)
    raw = rng.integers(0, 256, n * dtype_from_name(dtype).itemsize, dtype=np.uint8)
    x = raw.view(dtype_from_name(dtype)) if dtype != "bool" else (raw % 2).astype(bool)
    c = lossless.compress(x)
    assert c.nbytes <= x.nbytes
    if n <= 7:  # far too small for any stream header to pay
        assert c.transform == lossless.VERBATIM and c.codec == "stored"
    assert c.decode().tobytes() == x.tobytes()
    out = np.empty_like(x)
    assert c.decode(out=out) is out and out.tobytes() == x.tobytes()
    tp.save({"x": c}, tmp_path / "v.tpz")
    assert tp.load(tmp_path / "v.tpz")["x"].tobytes() == x.tobytes()
    assert unpack_object(pack_object(c)).decode().tobytes() == x.tobytes()


def test_verbatim_is_refused_for_int4_and_forced_codecs_keep_their_streams() -> None:
    import ml_dtypes

    from tensorpress.methods import lossless

    x = np.arange(5, dtype=np.float32)
    assert lossless.compress(x, codec="huffman").transform == "fp32-exponent"
    header = lossless.compress(x).header()
    header.update(dtype="int4", shape=[40])
    with pytest.raises(FormatError, match="does not belong"):
        lossless.CompressedTensor.from_parts(header, x.tobytes())
    assert lossless.compress(np.zeros(3, ml_dtypes.int4)).transform == "nibbles"


def test_per_plane_codecs_are_a_plan_and_may_fall_back_to_verbatim() -> None:
    import ml_dtypes

    from tensorpress.methods import lossless

    x = np.random.default_rng(0).normal(size=(64, 512)).astype(ml_dtypes.bfloat16)
    c = lossless.compress(x, ["huffman", "raw"])
    assert c.codec == "huffman+raw" and c.decode().tobytes() == x.tobytes()
    assert lossless.compress(x[:1, :8], ["huffman", "raw"]).transform == lossless.VERBATIM
    with pytest.raises(InvalidArgumentError, match="plane codecs"):
        lossless.compress(x, ["huffman"])
    with pytest.raises(InvalidArgumentError, match="unknown codec 'auto'"):
        lossless.compress(x, ["auto", "raw"])


@pytest.mark.parametrize(
    ("plane_bytes", "lanes"),
    [
        (0, 1),
        (4095, 1),
        (7 * 4096, 7),
        (8 * 4096, 8),
        (15 * 4096, 8),
        (16 * 4096, 16),
        (31 * 4096, 16),
        (1 << 30, 32),
    ],
)
def test_auto_lanes_round_down_to_a_simd_lane_count(plane_bytes: int, lanes: int) -> None:
    from tensorpress.methods import lossless

    assert lossless.auto_lanes(plane_bytes) == lanes
    if 0 < plane_bytes < 1 << 20:  # and compress uses it (one uint8 plane of plane_bytes)
        stored = lossless.compress(np.full(plane_bytes, 7, np.uint8), "huffman")
        assert tp.entropy.info(stored.planes[0].blob)["lanes"] == lanes
