"""NVDEC on a real GPU, in three steps, each printed as it runs (one JSON object per line):

1. the driver's caps: ``GetDecoderCaps`` for H.264/HEVC/AV1 x 4:0:0/4:2:0 x 8/10 bits and
   ``GetEncoderCaps`` per codec, next to what ``tensorpress.video.capabilities()`` concludes;
2. every "check" stream of the file benches/nvdec_streams.py made (CPU-encoded, with FFmpeg's
   decode as the reference) decoded by NVDEC directly — host output read through
   ``GetPtrToPlane``, no torch, none of tensorpress's code — and then by tensorpress's
   ``NvCodecBackend``, both compared with the reference bit for bit;
3. throughput of ``NvCodecBackend.decode`` on the "speed" streams (1024x1024 frames of real
   weights), each stream decoded ``--repeat`` times over in one decoder session.

The streams NVDEC may refuse (4:0:0, AV1 on Hopper, frames below its minimum) run last, after
the throughput step, and output is flushed line by line: an abort inside the driver still leaves
every earlier result. Needs PyNvVideoCodec >= 2.2.4 and numpy; no PyAV::

    PYTHONPATH=python python benches/nvdec_check.py .carry/nvdec_streams.npz --json nvdec.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import time
from typing import Any

import numpy as np

from nvdec_streams import Case, load

ROWS: list[dict[str, Any]] = []


def emit(**row: Any) -> None:
    ROWS.append(row)
    print(json.dumps(row, default=str), flush=True)


def caps_table(nvc: Any) -> None:
    from tensorpress.video import backends

    cap = backends.capabilities()["nvcodec"]
    emit(kind="tensorpress-probe", decode=cap.decode, encode=cap.encode, reason=cap.reason,
         decode_min_size=cap.decode_min_size)  # fmt: skip
    keys = ("supported", "num_decoder_engines", "width_min", "height_min", "width_max", "height_max")
    for codec in ("H264", "HEVC", "AV1"):
        for chroma in ("Monochrome", "420"):
            for depth in (8, 10):
                row: dict[str, Any] = {
                    "kind": "decoder-caps",
                    "codec": codec,
                    "chroma": chroma,
                    "bits": depth,
                }
                try:
                    caps = nvc.GetDecoderCaps(
                        gpuid=0,
                        codec=getattr(nvc.cudaVideoCodec, codec),
                        chromaformat=nvc.cudaVideoChromaFormat.__members__[chroma],
                        bitdepth=depth,
                    )
                    row |= {k: caps.get(k) for k in keys}
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"
                emit(**row)
    for codec in ("h264", "hevc", "av1"):
        try:
            caps = nvc.GetEncoderCaps(codec=codec)
            emit(kind="encoder-caps", codec=codec, caps=dict(caps))
        except Exception as exc:
            emit(kind="encoder-caps", codec=codec, error=f"{type(exc).__name__}: {exc}")


def raw_nvdec(nvc: Any, case: Case) -> list[np.ndarray]:
    """NVDEC with nothing of tensorpress in between: host-memory output, the luma plane first
    (height x width samples, packed; 16-bit samples with the code in the high bits above 8 bits)."""
    codec_id = getattr(nvc.cudaVideoCodec, case.codec.upper())
    dec = nvc.CreateDecoder(gpuid=0, codec=codec_id, usedevicememory=False)
    wide = case.bit_depth > 8
    n = case.height * case.width * (2 if wide else 1)
    out, keep = [], []
    for data in [*case.packets, b""]:  # an empty packet (bsl = 0) is end of stream: flush
        keep.append(np.frombuffer(data or b"\0", np.uint8))
        pkt = nvc.PacketData()
        pkt.bsl_data, pkt.bsl = int(keep[-1].ctypes.data), len(data)
        for frame in dec.Decode(pkt):
            ptr = ctypes.cast(frame.GetPtrToPlane(0), ctypes.POINTER(ctypes.c_uint8))
            y = np.ctypeslib.as_array(ptr, (n,)).copy()
            codes = y.view(np.uint16) >> (16 - case.bit_depth) if wide else y.astype(np.uint16)
            out.append(codes.reshape(case.height, case.width))
    return out


def check_streams(nvc: Any, cases: list[Case]) -> None:
    from tensorpress.video import backends

    for case in cases:
        decoders = {
            "raw-nvdec": lambda c: raw_nvdec(nvc, c),
            "tensorpress-nvcodec": lambda c: backends.NvCodecBackend().decode(
                c.packets, c.codec, c.bit_depth, c.height, c.width
            ),
        }
        for who, fn in decoders.items():
            row = {"kind": "bit-exact", "case": case.name, "decoder": who}
            try:
                same, why = case.matches(fn(case))
                row |= {"ok": same} | ({"why": why} if why else {})
            except Exception as exc:
                row |= {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            emit(**row)


def speed(cases: list[Case], repeat: int) -> None:
    from tensorpress.video import backends

    for case in cases:
        row: dict[str, Any] = {"kind": "nvdec-speed", "case": case.name, "frames": len(case.packets) * repeat}
        row["bitstream_bytes_per_frame"] = sum(map(len, case.packets)) / len(case.packets)
        try:
            nv = backends.get_backend("nvcodec", "decode", case.codec)
            args = (case.codec, case.bit_depth, case.height, case.width)
            row["bit_exact"] = case.matches(nv.decode(case.packets, *args))[0]
            packets = case.packets * repeat  # intra-only: the stream repeated is a valid stream
            nv.decode(packets, *args)  # warm-up (decoder creation, host buffers)
            start = time.perf_counter()
            got = nv.decode(packets, *args)
            t = time.perf_counter() - start
            assert len(got) == len(packets)
            sample = 2 if case.bit_depth > 8 else 1
            row |= {"seconds": t, "frames_per_s": len(packets) / t}
            row["luma_gbps"] = len(packets) * case.height * case.width * sample / t / 1e9
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        emit(**row)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("streams", help="the .npz benches/nvdec_streams.py wrote")
    p.add_argument("--repeat", type=int, default=16, help="times each speed stream is decoded in one session")
    p.add_argument("--json", help="also write every row to this file")
    args = p.parse_args(argv)
    ROWS.clear()
    try:
        import PyNvVideoCodec as nvc  # noqa: N813 (the library's own docs use this name)
    except Exception as exc:  # the wheel probes the driver on import (RuntimeError, OSError)
        emit(kind="import", error=f"PyNvVideoCodec unusable: {type(exc).__name__}: {exc}")
        nvc = None
    if nvc is not None:
        emit(kind="import", version=nvc.__version__)
        caps_table(nvc)
        checks = load(args.streams, "check")
        safe = [c.chroma == "420" and c.codec != "av1" and min(c.height, c.width) >= 256 for c in checks]
        check_streams(nvc, [c for c, ok in zip(checks, safe, strict=True) if ok])
        speed(load(args.streams, "speed"), args.repeat)
        check_streams(nvc, [c for c, ok in zip(checks, safe, strict=True) if not ok])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(ROWS, f, indent=1, default=str)
    return 0 if nvc is not None else 1


if __name__ == "__main__":
    sys.exit(main())
