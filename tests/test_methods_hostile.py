"""Hostile headers and flipped bits, for every method: only tensorpress errors, no big allocation,
no silently wrong tensor.

The sweep mutates one stored tensor per method ≥ 10,000 times (seeded): values replaced by
non-integers, Infinity/NaN, negatives, huge numbers, wrong types and deep nesting; keys deleted
or swapped; integers nudged by one. Half the mutants go through a packed message (JSON text,
checksums recomputed, so every one reaches the header checks), half straight into
``from_parts``. Whatever is accepted is decoded under ``max_size``; tracemalloc's peak bounds
what any of it allocated.
"""

from __future__ import annotations

import copy
import json
import os
import random
import struct
import tracemalloc
import warnings
import zlib
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pytest

from golden import make_golden as golden
from tensorpress import _core, methods
from tensorpress.distributed import PACK_MAGIC, PACK_VERSION, pack_object, unpack_object
from tensorpress.errors import TensorpressError
from tensorpress.methods import lossless, lowrank
from tensorpress.methods.blockwise import quantize_blockwise

#: Decoded-size limit passed to every load in the sweep, and the allocation bound it implies.
LIMIT = 1 << 20
#: Mutants per method (the scripted mutation run of benches/mutate_parsers.py lowers it).
MUTANTS_PER_METHOD = int(os.environ.get("TENSORPRESS_HOSTILE_MUTANTS", "10000"))


def _deep(depth: int) -> Any:
    out: Any = 0
    for _ in range(depth):
        out = [out]
    return out


HOSTILE: list[Any] = [
    -1, 0, 1, 2, 3, 7, 8, 16, 255, 256, 2**31, 2**32, 2**40, 2**40 + 1, 2**63, 2**64, 10**30,
    -(2**63), 0.5, 1.0, -0.0, 1e300, float("inf"), float("-inf"), float("nan"), True, False, None,
    "0", "1", "", "lossless", "float16", "int4", "cuda:0", "cuda:0;x", "nibbles", "x" * 64, [], {},
    [0], [1, 2], [2**40, 2**40], [-1], [1.5], ["1"], {"a": 1}, _deep(40), "__deep__",
]  # fmt: skip
#: Stands for a 10,000-deep list: too deep to copy or serialize, spliced in where it is used.
DEEP_MARK = "__deep__"
DEEP = _deep(10_000)
DEEP_TEXT = b"[" * 10_000 + b"0" + b"]" * 10_000
#: Replacements for a number inside the JSON text (things ``json.dumps`` cannot write).
TEXT_NUMBERS = [b"Infinity", b"-Infinity", b"NaN", b"1e400", b"-1e400", b"1" * 5000, b"1.0", b"0e0"]


def _sources() -> dict[str, Any]:
    rng = np.random.default_rng(7)
    m = rng.standard_normal((16, 24)).astype(np.float32)
    pytest.importorskip("av")
    video = pytest.importorskip("tensorpress.video")
    verbatim = lossless.compress(rng.integers(-128, 128, (5, 7)).astype(np.int8))
    assert verbatim.transform == lossless.VERBATIM
    return {
        "lossless": lossless.compress(m),
        "lossless-int4": lossless.compress((np.arange(9) % 13 - 6).astype("int4")),
        "lossless-verbatim": verbatim,
        "blockwise": quantize_blockwise(m, 4, 8, layout="packed"),
        "blockwise-tender": quantize_blockwise(m, 5, 4, scheme="tender-group", layout="qlc"),
        "video": video.encode(rng.standard_normal((32, 32)).astype(np.float32), qp=30, codec="av1"),
        "lowrank": lowrank.from_factors(m[:, :4], m[:4, :], m[:, 0].copy()),
    }


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


def mutate(header: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    h = copy.deepcopy(header)
    paths = _paths(h)
    path = rng.choice(paths)
    parent = _get(h, path[:-1])
    key = path[-1]
    roll = rng.random()
    current = parent[key]
    if roll < 0.3 and isinstance(current, int) and not isinstance(current, bool):
        parent[key] = rng.choice(
            [current + 1, current - 1, current * 2, current // 2, -current, current + 64]
        )
    elif roll < 0.4 and isinstance(parent, dict):
        del parent[key]
    elif roll < 0.5:
        parent[key] = copy.deepcopy(_get(h, rng.choice(paths)))
    else:
        parent[key] = copy.deepcopy(rng.choice(HOSTILE))
    return h


def materialize(node: Any) -> Any:
    """``node`` with every :data:`DEEP_MARK` replaced by the deep list itself."""
    if node == DEEP_MARK:
        return DEEP
    if isinstance(node, dict):
        return {k: materialize(v) for k, v in node.items()}
    if isinstance(node, list):
        return [materialize(v) for v in node]
    return node


def packed(method: str, header: Any, payload: bytes, text: bytes | None = None) -> bytes:
    """A packed message around ``header`` (or raw JSON ``text``) with every checksum recomputed."""
    if text is None:
        text = json.dumps({"method": method, "params": header}, separators=(",", ":")).encode()
    text = text.replace(json.dumps(DEEP_MARK).encode(), DEEP_TEXT)
    head = struct.pack(
        "<4sBBHIQII",
        PACK_MAGIC,
        PACK_VERSION,
        0,
        0,
        len(text),
        len(payload),
        _core.crc32c(text),
        _core.crc32c(payload),
    )
    return head + struct.pack("<I", _core.crc32c(head)) + text + payload


def _try(build: Callable[[], Any]) -> tuple[str, str | None]:
    """('rejected'|'decoded', None) or ('escaped', description of the untyped exception)."""
    try:
        obj = build()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # recorded devices this machine lacks
            methods.decode(obj, as_kind="numpy", max_size=LIMIT)
    except TensorpressError:
        return "rejected", None
    except Exception as exc:  # the sweep exists to find these
        return "escaped", f"{type(exc).__name__}: {exc}"[:300]
    return "decoded", None


@pytest.fixture(scope="module")
def sources() -> dict[str, Any]:
    return _sources()


@pytest.mark.parametrize("name", ["lossless", "blockwise", "video", "lowrank"])
def test_hostile_header_sweep(sources: dict[str, Any], name: str) -> None:
    variants = [k for k in sources if k == name or k.startswith(name + "-")]
    rng = random.Random(f"hostile-{name}")
    counts = {"rejected": 0, "decoded": 0}
    escaped: list[str] = []
    tracemalloc.start()
    try:
        for i in range(MUTANTS_PER_METHOD):
            obj = sources[variants[i % len(variants)]]
            header, payload, method = obj.header(), obj.payload(), obj.method
            mutant = mutate(header, rng)
            if i % 2:
                live = materialize(mutant)
                outcome, why = _try(partial(methods.from_parts, method, live, payload, max_size=LIMIT))
            else:
                text = None
                if i % 10 == 0:  # a number token replaced by one only hostile text can hold
                    base = json.dumps({"method": method, "params": mutant}, separators=(",", ":")).encode()
                    digits = [
                        j for j, c in enumerate(base) if chr(c).isdigit() and not chr(base[j - 1]).isdigit()
                    ]
                    at = rng.choice(digits) if digits else 0
                    end = at
                    while end < len(base) and chr(base[end]).isdigit():
                        end += 1
                    text = base[:at] + rng.choice(TEXT_NUMBERS) + base[end:]
                blob = packed(method, mutant, payload, text)
                outcome, why = _try(partial(unpack_object, blob, max_size=LIMIT))
            if why is not None:
                escaped.append(f"{json.dumps(mutant, default=str)[:300]} -> {why}")
            else:
                counts[outcome] += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"{name}: {MUTANTS_PER_METHOD} mutants, {counts}, peak traced allocation {peak:,} bytes")
    assert not escaped, f"{len(escaped)} untyped exceptions, e.g. {escaped[:3]}"
    assert counts["rejected"] > MUTANTS_PER_METHOD // 2, counts
    assert MUTANTS_PER_METHOD >= 10_000 or "TENSORPRESS_HOSTILE_MUTANTS" in os.environ
    # Everything decoded was at most LIMIT bytes; headroom for the payload copies and frames.
    assert peak < 4 * LIMIT, f"peak traced allocation {peak:,} bytes"


def test_pack_object_bit_flips_never_decode_silently(sources: dict[str, Any]) -> None:
    rng = random.Random("bit-flips")
    flips = wrong = caught = 0
    for obj in sources.values():
        blob = pack_object(obj)
        want = methods.decode(obj, as_kind="numpy")
        positions = list(range(32 * 8)) + [rng.randrange(len(blob) * 8) for _ in range(120)]
        for bit in positions:
            bad = bytearray(blob)
            bad[bit // 8] ^= 1 << (bit % 8)
            flips += 1
            try:
                got = methods.decode(unpack_object(bytes(bad)), as_kind="numpy")
            except TensorpressError:
                caught += 1
                continue
            if got.dtype != want.dtype or got.tobytes() != want.tobytes():
                wrong += 1
    assert flips >= 300 and wrong == 0 and caught == flips, (flips, caught, wrong)


def _container(text: bytes, region: bytes, *, deflate: bool = False, trailing: bool = False) -> bytes:
    """A container over ``region`` with header ``text``: plain (1.0) or zlib (1.1, flag bit 0),
    leading or trailing the payloads (1.2, flag bit 1)."""
    header = zlib.compress(text, 9) if deflate else text
    return golden.build(None, region, header_text=header, zlib_flag=deflate, trailing=trailing)


def test_hostile_container_header_sweep(sources: dict[str, Any], tmp_path: Any) -> None:
    """Mutated container headers (entries, metadata, document), every CRC recomputed."""
    from tensorpress import container

    good = container.save(
        {k: v for k, v in sources.items() if k != "video"}, tmp_path / "ok.tpz"
    ).read_bytes()
    doc, region = golden.split(good)
    rng = random.Random("container-sweep")
    path = tmp_path / "m.tpz"
    escaped = []
    outcomes = {"rejected": 0, "decoded": 0}
    for i in range(2000):
        mutant = mutate(doc, rng)
        text = (
            json.dumps(mutant, separators=(",", ":"))
            .encode()
            .replace(json.dumps(DEEP_MARK).encode(), DEEP_TEXT)
        )
        path.write_bytes(_container(text, region, deflate=i % 2 == 1, trailing=i % 4 >= 2))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                container.load(path, max_size=LIMIT)
            outcomes["decoded"] += 1
        except TensorpressError:
            outcomes["rejected"] += 1
        except Exception as exc:
            escaped.append(f"{i}: {type(exc).__name__}: {exc}"[:300])
    assert not escaped, escaped[:3]
    assert outcomes["rejected"] > 1000, outcomes
