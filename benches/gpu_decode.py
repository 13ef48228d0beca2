"""GPU decode throughput: the Triton entropy decode per codec against the Rust CPU decode, a
host-to-device copy of the decoded bytes, torch's device-to-device copy (the ceiling) and, where
its wheel is installed, nvCOMP's ANS codec, all on the same e4m3 bytes; a bf16 tensor decoded
and merged on the device against a raw upload; and a bf16 model (SmolLM2 layers) loaded onto the
device by tensorpress against safetensors + ``.to("cuda")``.

Prepared for a session with a GPU (needs torch with CUDA, Triton, numpy, safetensors and the
built ``tensorpress._core``; no PyAV, no Rust toolchain; benches/gpu_check.sh runs it)::

    PYTHONPATH=python python benches/gpu_decode.py --mib 256 --model smollm2_layers.tpz --json out.json

The model file is made beforehand where the SmolLM2 package is installed::

    PYTHONPATH=python python benches/gpu_decode.py --make-model smollm2_layers.tpz --layers 4

``--chroma-cost`` (CPU, PyAV) prints what neutral 4:2:0 chroma (which NVDEC needs) costs over
luma-only 4:0:0 on a real weight matrix. Every GB/s is decoded bytes per second. NVDEC is
measured by benches/nvdec_check.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import tensorpress.entropy as te


def best_seconds(fn: Callable[[], Any], repeat: int, sync: Callable[[], None] = lambda: None) -> float:
    """Fastest of ``repeat`` timed runs after one warm-up run."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def e4m3_bytes(n: int, seed: int = 0) -> np.ndarray:
    """``n`` float8_e4m3fn bytes of normally distributed weights (torch casts, no ml_dtypes)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    values = torch.randn(n, generator=gen) * 48.0  # ~ per-tensor scaled to e4m3's range
    return values.to(torch.float8_e4m3fn).view(torch.uint8).numpy()


def copy_rows(data: np.ndarray, device: str, repeat: int, sync: Callable[[], None]) -> list[dict[str, Any]]:
    """The ceiling (device-to-device copy) and the no-compression baseline (host-to-device)."""
    import torch

    n = data.size
    src = torch.from_numpy(data).to(device)
    dst = torch.empty_like(src)
    t = best_seconds(lambda: dst.copy_(src), repeat, sync)
    rows = [{"kind": "ceiling", "what": "torch device-to-device copy", "bytes": n, "gbps": n / t / 1e9}]
    if device == "cuda":
        host = torch.from_numpy(data).pin_memory()
        t = best_seconds(lambda: host.to(device, non_blocking=True), repeat, sync)
        what = "host-to-device copy of the decoded bytes (pinned)"
        rows.append({"kind": "baseline", "what": what, "bytes": n, "gbps": n / t / 1e9})
    return rows


def entropy_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    import tensorpress.gpu as tg

    n = int(args.mib * (1 << 20))
    data = e4m3_bytes(n)
    dev = args.device
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    rows: list[dict[str, Any]] = []

    def row(**kw: Any) -> None:
        rows.append(kw)
        print(json.dumps(kw), flush=True)

    for r in copy_rows(data, dev, args.repeat, sync):
        row(**r)
    if dev == "cuda":
        for r in nvcomp_rows(data, args.repeat, sync):
            row(**r)
    for codec in args.codecs:
        blob = te.encode(data, codec, lanes=args.lanes, chunk_size=args.chunk_size)
        base = {
            "codec": codec,
            "bytes": n,
            "ratio": n / len(blob),
            "lanes": args.lanes,
            "chunk": args.chunk_size,
        }
        t = best_seconds(lambda blob=blob: te.decode(blob), args.repeat)
        row(kind="cpu", what="Rust decode, all cores", gbps=n / t / 1e9, **base)
        full = tg.decode(blob, device=dev)
        assert np.array_equal(full.cpu().numpy(), data), f"{codec}: GPU decode differs"
        t = best_seconds(lambda blob=blob: tg.decode(blob, device=dev), args.repeat, sync)
        row(kind="gpu", what="tensorpress.gpu.decode from host bytes (validate, CRC, upload, decode)",
            gbps=n / t / 1e9, **base)  # fmt: skip
        for group in args.lane_groups:
            held = tg.upload(blob, device=dev, lane_group=group)
            out = torch.empty(n, dtype=torch.uint8, device=dev)
            t = best_seconds(lambda held=held, out=out: held.decode(out=out), args.repeat, sync)
            row(kind="gpu", what="Triton kernels only (stream already on the device)", lane_group=group,
                gbps=n / t / 1e9, device_bytes=held.nbytes, **base)  # fmt: skip
        if dev == "cuda":
            torch.cuda.empty_cache()
    return rows


def bf16_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """A bf16 tensor onto the device: planes decoded and merged there, against a raw upload and
    against the CPU decode followed by an upload."""
    import torch

    import tensorpress.gpu as tg
    from tensorpress import tensors

    dev = args.device
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    count = int(args.mib * (1 << 20)) // 2
    weights = (torch.randn(count, generator=torch.Generator().manual_seed(1)) * 0.02).to(torch.bfloat16)
    ct = tensors.compress(weights)
    streams = [p.blob for p in ct.planes]
    base = {"kind": "bf16", "bytes": 2 * count, "ratio": 2 * count / ct.nbytes, "codecs": ct.codec}
    got = tg.decode_planes(streams, ct.transform, ct.dtype, ct.shape, device=dev)
    assert torch.equal(got.cpu().view(torch.int16), weights.view(torch.int16)), "bf16 planes differ"
    rows = []
    timed = {
        "tensorpress.gpu.decode_planes (upload compressed, decode + merge on the device)": lambda: (
            tg.decode_planes(streams, ct.transform, ct.dtype, ct.shape, device=dev)
        ),
        "CPU decompress, then .to(device)": lambda: tensors.decompress(ct).to(dev),
        "raw bf16 .to(device) from pageable memory": lambda: weights.to(dev),
    }
    for what, fn in timed.items():
        t = best_seconds(fn, args.repeat, sync)
        rows.append({**base, "what": what, "gbps": 2 * count / t / 1e9})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def nvcomp_rows(data: np.ndarray, repeat: int, sync: Callable[[], None]) -> list[dict[str, Any]]:
    """nvCOMP's ANS codec on the same bytes, where its wheel is installed: the byte mode and the
    e4m3 mode (``data_type="|f1"``, nvCOMP 5.3+), decode timed from a device-resident stream."""
    import torch

    try:
        from nvidia import nvcomp
    except ImportError as exc:
        return [{"kind": "nvcomp", "error": f"nvidia-nvcomp not installed: {exc}"}]
    n = data.size
    src = torch.from_numpy(data).cuda()
    rows = []
    for dtype in ("|u1", "|f1"):
        row: dict[str, Any] = {
            "kind": "nvcomp",
            "what": f"nvCOMP {nvcomp.__version__} ANS, data_type={dtype}",
        }
        row["bytes"] = n
        try:
            codec = nvcomp.Codec(algorithm="ANS", data_type=dtype)
            comp = codec.encode(nvcomp.as_array(src))
            sync()
            row["ratio"] = n / comp.buffer_size

            def decode(codec: Any = codec, comp: Any = comp) -> Any:
                try:  # bytes out, whatever the stream's element type
                    return codec.decode(comp, data_type="|u1")
                except TypeError:
                    return codec.decode(comp)

            t = best_seconds(decode, repeat, sync)
            row["gbps"] = n / t / 1e9
            back = torch.from_dlpack(decode()).reshape(-1).view(torch.uint8)
            row["bit_exact"] = bool(torch.equal(back, src))
        except Exception as exc:  # record, keep measuring
            row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        rows.append(row)
    return rows


def make_model(path: str, layers: int) -> None:
    """The first ``layers`` decoder layers of SmolLM2-135M in bf16 (the Q4_1 GGUF dequantized by
    transformers, as benches/load_speed.py does), stored losslessly with the model's config in
    the file's metadata: the whole model (270 MB of bf16) does not fit the device machine's
    64 MiB of carried files."""
    import torch

    import tensorpress as tp
    from load_speed import smollm2_bf16
    from tensorpress import evaluation

    prefixes = tuple(f"model.layers.{i}." for i in range(layers))
    weights = {k: v for k, v in smollm2_bf16().items() if k.startswith(prefixes)}
    config = evaluation.load_smollm2(torch.bfloat16)[0].config.to_dict()
    config.pop("quantization_config", None)  # the GGUF loader's; the stored weights are dense
    tp.save(weights, path, metadata={"config": json.dumps(config)})
    raw = sum(v.nbytes for v in weights.values())
    print(f"wrote {len(weights)} tensors ({raw / 1e6:.1f} MB of bf16) to {path}")


def gpu_load(path: str, device: str) -> dict[str, Any]:
    """Every lossless tensor of a .tpz onto ``device``: compressed planes uploaded, decoded and
    merged there (tensorpress.gpu.decode_planes)."""
    import tensorpress as tp
    import tensorpress.gpu as tg

    with tp.open(path) as f:
        out = {}
        for name in f:
            obj = f.compressed(name)
            if obj.transform == "verbatim":  # stored as its bytes: uploaded as they are
                out[name] = obj.decode(as_kind="torch", device=device)
                continue
            streams = [p.blob for p in obj.planes]
            out[name] = tg.decode_planes(streams, obj.transform, obj.dtype, obj.shape, device=device)
        return out


def repeat_layers(path: str, layers: int, out: str) -> None:
    """A model of ``layers`` decoder layers from the real ones in ``path``, repeated in order
    (their compressed bytes reused, nothing re-encoded): SmolLM2-135M's depth from the few
    layers that fit the carry limit."""
    import re

    import tensorpress as tp

    with tp.open(path) as f:
        names = list(f)
        have = sorted({int(m.group(1)) for n in names if (m := re.match(r"model\.layers\.(\d+)\.", n))})
        stored = {}
        for i in range(layers):
            src = f"model.layers.{have[i % len(have)]}."
            for n in names:
                if n.startswith(src):
                    stored[f"model.layers.{i}." + n.removeprefix(src)] = f.compressed(n)
        tp.save(stored, out, metadata=f.metadata)


def model_rows(
    path: str, layers: int, device: str, repeat: int, sync: Callable[[], None], tokens: int = 256
) -> list[dict[str, Any]]:
    """bf16 model load onto ``device``: safetensors + ``.to(device)`` against tensorpress, all from
    the page cache (each timed load is the best of ``repeat`` after a warm-up)."""
    import tempfile

    import safetensors.torch
    import torch

    import tensorpress as tp

    tmp_dir = tempfile.TemporaryDirectory()
    if layers:
        repeat_layers(path, layers, f"{tmp_dir.name}/model.tpz")
        path = f"{tmp_dir.name}/model.tpz"
    state = tp.load(path, as_kind="torch")
    raw = sum(t.numel() * t.element_size() for t in state.values())
    on_gpu = gpu_load(path, device)
    exact = all(torch.equal(on_gpu[k].cpu().view(torch.int16), v.view(torch.int16)) for k, v in state.items())
    rows: list[dict[str, Any]] = []
    with tmp_dir as tmp:
        st_path = f"{tmp}/model.safetensors"
        safetensors.torch.save_file(state, st_path)
        base = {"kind": "model-load", "tensors": len(state), "bytes": raw, "tpz_bytes": os.path.getsize(path)}
        base["layers"] = layers or "as stored"
        timed = {
            "safetensors load_file, then .to(device)": lambda: {
                k: v.to(device) for k, v in safetensors.torch.load_file(st_path).items()
            },
            "safetensors load_file(device=device)": lambda: safetensors.torch.load_file(
                st_path, device=device
            ),
            "tp.load(device=device) (lossless tensors decoded on the device)": lambda: tp.load(
                path, as_kind="torch", device=device
            ),
            "tensorpress.gpu.decode_planes per tensor (compressed upload, GPU decode)": lambda: gpu_load(
                path, device
            ),
        }
        for what, fn in timed.items():
            t = best_seconds(fn, repeat, sync)
            rows.append({**base, "what": what, "seconds": t, "gbps": raw / t / 1e9})
            if what.startswith("tensorpress.gpu"):
                rows[-1]["bit_exact"] = exact
            print(json.dumps(rows[-1]), flush=True)
        del state, on_gpu
        try:
            rows += layerwise_rows(path, device, repeat, sync, tokens)
        except Exception as exc:  # record, keep the other rows
            rows.append({"kind": "layerwise", "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def layerwise_rows(
    path: str, device: str, repeat: int, sync: Callable[[], None], tokens: int = 256
) -> list[dict[str, Any]]:
    """Forward passes of a Llama model built from the file's config and its decoder layers
    (embeddings and final norm left at their random init): dense bf16 weights against weights
    held compressed on the device and decoded layer by layer (tensorpress.gpu.layerwise), for
    one token and for a ``tokens``-token prompt; tokens/s and whether the logits are identical."""
    import torch
    import transformers

    import tensorpress as tp
    from tensorpress.gpu import layerwise

    with tp.open(path) as f:
        config = json.loads(dict(f.metadata).get("config", "null"))
    if config is None:
        return [{"kind": "layerwise", "error": f"{path} holds no model config"}]
    weights = gpu_load(path, device)
    config["num_hidden_layers"] = 1 + max(
        int(n.split(".")[2]) for n in weights if n.startswith("model.layers.")
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig.from_dict(config))
        model = model.to(torch.bfloat16).eval()
    model.load_state_dict(weights, strict=False)
    del weights
    ids = torch.randint(0, model.config.vocab_size, (1, tokens), device=device)

    def forward(n: int) -> Any:
        with torch.no_grad():
            return model(ids[:, :n], use_cache=False).logits

    rows: list[dict[str, Any]] = []
    base = {"kind": "layerwise", "layers": config["num_hidden_layers"]}
    dense = {n: forward(n) for n in (1, tokens)}
    held = None
    for mode in ("dense bf16 weights", "weights compressed on the device, decoded layer by layer"):
        if held is None and mode.startswith("weights"):
            held = layerwise.compress_modules(model.model.layers, device=device)
            base |= {"device_bytes": held.device_bytes, "dense_bytes": held.dense_bytes}
        for n in (1, tokens):
            t = best_seconds(lambda n=n: forward(n), repeat, sync)
            row = {**base, "what": mode, "tokens": n, "seconds": t, "tokens_per_s": n / t}
            if held is not None:
                row["bit_exact"] = bool(torch.equal(forward(n), dense[n]))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def chroma_cost() -> None:
    """Bytes of neutral 4:2:0 chroma over 4:0:0 for frames of a real weight matrix."""
    from tensorpress import samples
    from tensorpress.video import backends

    w = samples.minilm_weights()["encoder.layer.0.attention.self.query.weight"].astype(np.float32)
    pyav = backends.PyAVBackend()
    for codec in ("hevc", "h264"):
        for bd in (8, 10):
            q = np.round((w - w.min()) / (w.max() - w.min()) * (2**bd - 1)).astype(np.uint16)
            frames = [q[:256, :384], q[128:384, :384]]
            for qp in (0, 25):
                size = {}
                for chroma in ("400", "420"):
                    opts = backends.EncodeOptions(codec, bd, qp, lossless=qp == 0, chroma=chroma)
                    size[chroma] = sum(map(len, pyav.encode(frames, opts)))
                extra = 100 * (size["420"] / size["400"] - 1)
                mode = "lossless" if qp == 0 else f"qp{qp}"
                print(
                    f"{codec} {bd}-bit {mode}: 4:0:0 {size['400']} B, 4:2:0 {size['420']} B ({extra:+.2f} %)"
                )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mib", type=float, default=256, help="e4m3 bytes to decode, in MiB")
    p.add_argument("--device", default="cuda", help="'cpu' runs the kernels interpreted (TRITON_INTERPRET=1)")
    p.add_argument("--codecs", nargs="+", default=[c for c in te.CODECS if c != "raw"], choices=te.CODECS)
    p.add_argument("--lanes", type=int, default=te.DEFAULT_LANES)
    p.add_argument("--chunk-size", type=int, default=te.DEFAULT_CHUNK_SIZE)
    p.add_argument("--lane-groups", type=int, nargs="+", default=[32, 8], help="lanes per Triton program")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", help="also write every row to this file")
    p.add_argument("--model", help="a .tpz of bf16 tensors to load onto the device (made by --make-model)")
    p.add_argument("--make-model", help="write the first --layers SmolLM2 layers here and exit")
    p.add_argument("--layers", type=int, default=4, help="layers --make-model stores")
    p.add_argument("--tokens", type=int, default=256, help="prompt length of the layer-by-layer forward")
    p.add_argument(
        "--model-layers", type=int, default=30, help="--model's layers repeated to this depth (0: as stored)"
    )
    p.add_argument("--chroma-cost", action="store_true", help="print 4:2:0 vs 4:0:0 sizes and exit")
    args = p.parse_args(argv)
    if args.make_model:
        make_model(args.make_model, args.layers)
        return 0
    if args.chroma_cost:
        chroma_cost()
        return 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to measure", file=sys.stderr)
        return 1
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu (Triton interpreter)"
    print(json.dumps({"kind": "device", "name": name, "torch": torch.__version__}), flush=True)
    rows = entropy_rows(args) + bf16_rows(args) if args.mib > 0 else []
    if args.model:
        sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
        rows += model_rows(args.model, args.model_layers, args.device, args.repeat, sync, args.tokens)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
