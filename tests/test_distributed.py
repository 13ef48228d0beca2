"""Compressed DDP hooks and collectives with 2 gloo processes on loopback."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from tensorpress import distributed as tpd  # noqa: E402
from tensorpress import tensors  # noqa: E402

WORLD = 2
STEPS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _model() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(48, 96),
        torch.nn.GELU(),
        torch.nn.Linear(96, 96),
        torch.nn.GELU(),
        torch.nn.Linear(96, 8),
    )


def _train(rank: int, hook: tuple[Any, Any] | None, dtype: Any = None) -> tuple[list[Any], list[float]]:
    from torch.nn.parallel import DistributedDataParallel

    model = _model()
    if dtype is not None:
        model = model.to(dtype)
    ddp = DistributedDataParallel(model, bucket_cap_mb=0.02)  # several buckets
    if hook is not None:
        ddp.register_comm_hook(*hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(100 + rank)
    losses = []
    for _ in range(STEPS):
        x = torch.randn(16, 48, generator=gen)
        y = torch.randn(16, 8, generator=gen)
        if dtype is not None:
            x, y = x.to(dtype), y.to(dtype)
        loss = torch.nn.functional.mse_loss(ddp(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return [p.detach().clone() for p in model.parameters()], losses


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        results: dict[str, Any] = {}
        results["plain"] = _train(rank, None)
        lossless = tpd.comm_hook("lossless")
        results["lossless"] = _train(rank, lossless)
        results["lossless_stats"] = lossless[0].stats.as_dict()
        results["plain_bf16"] = _train(rank, None, torch.bfloat16)
        results["lossless_bf16"] = _train(rank, tpd.comm_hook("lossless"), torch.bfloat16)
        for bits in (8, 4):
            lossy = tpd.comm_hook("lossy", bits=bits)
            results[f"lossy{bits}"] = _train(rank, lossy)
            results[f"lossy{bits}_stats"] = lossy[0].stats.as_dict()
        ref = tpd.comm_hook("allreduce")
        results["allreduce"] = _train(rank, ref)
        results["allreduce_stats"] = ref[0].stats.as_dict()

        # Collectives: different shapes per rank for all_gather; broadcast from rank 1.
        mine = torch.arange(10 + rank * 7, dtype=torch.float32).reshape(-1) * (rank + 1)
        stats = tpd.CommStats()
        results["gathered"] = tpd.compressed_all_gather(mine, stats=stats)
        b = (
            torch.full((5, 6), float(rank), dtype=torch.bfloat16)
            if rank == 0
            else torch.randn(5, 6).to(torch.bfloat16)
        )
        src_value = b.clone()
        results["broadcast"] = tpd.compressed_broadcast(b, src=1).clone()
        results["broadcast_src"] = src_value
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _same(a: list[Any], b: list[Any]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_lossless_hook_is_bit_exact_with_plain_ddp(runs: list[dict[str, Any]]) -> None:
    for r in runs:
        assert _same(r["lossless"][0], r["plain"][0])
        assert r["lossless"][1] == r["plain"][1]
        assert _same(r["lossless_bf16"][0], r["plain_bf16"][0])
        assert _same(r["allreduce"][0], r["plain"][0])
    # Replicas agree.
    assert _same(runs[0]["lossless"][0], runs[1]["lossless"][0])


def test_lossless_hook_counts_bytes(runs: list[dict[str, Any]]) -> None:
    s = runs[0]["lossless_stats"]
    ref = runs[0]["allreduce_stats"]
    assert s["steps"] == STEPS and s["buckets"] > STEPS  # buckets are rebuilt after step 1
    assert s["raw_bytes"] == ref["raw_bytes"] == ref["bytes_sent"]
    assert 0 < s["bytes_sent"] < s["raw_bytes"]  # the exponent planes compress


def test_lossy_hook_close_and_smaller(runs: list[dict[str, Any]]) -> None:
    plain = runs[0]["plain"][0]
    for bits, tol in ((8, 1e-3), (4, 3e-2)):
        got = runs[0][f"lossy{bits}"][0]
        assert _same(got, runs[1][f"lossy{bits}"][0])  # replicas stay identical
        for p, q in zip(got, plain, strict=True):
            assert float((p - q).norm() / q.norm()) < tol
        s = runs[0][f"lossy{bits}_stats"]
        assert s["bytes_sent"] <= s["raw_bytes"] * (bits + 0.125 + 0.5) / 32


def test_compressed_all_gather_and_broadcast(runs: list[dict[str, Any]]) -> None:
    for r in runs:
        got = r["gathered"]
        assert len(got) == WORLD
        for rank, t in enumerate(got):
            assert torch.equal(t, torch.arange(10 + rank * 7, dtype=torch.float32) * (rank + 1))
        assert torch.equal(r["broadcast"], runs[1]["broadcast_src"])
        assert r["broadcast"].dtype == torch.bfloat16


def test_pack_unpack_and_quantize_flat() -> None:
    x = torch.randn(1000)
    obj = tensors.compress(x)
    back = tpd.unpack_object(tpd.pack_object(obj))
    assert torch.equal(tensors.decompress(back), x)
    for bits in (8, 4):
        payload, deq = tpd.quantize_flat(x, bits, 128)
        again = tpd.dequantize_flat(payload, x.numel(), bits, 128)
        assert torch.equal(again, deq)
        assert payload.numel() == (1024 * bits // 8) + 8 * 2
        err = float(((deq - x) ** 2).sum() / (x**2).sum())
        assert err < (1e-4 if bits == 8 else 2e-2)
    from tensorpress.errors import FormatError

    with pytest.raises(FormatError):
        tpd.unpack_object(b"\x01")


def test_comm_hook_rejects_unknown() -> None:
    from tensorpress.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        tpd.comm_hook("zip")
    with pytest.raises(InvalidArgumentError):
        tpd.comm_hook("lossy", bits=3)
    assert np.isclose(tpd.CommStats().ratio, 1.0)
