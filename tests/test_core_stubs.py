"""The type stubs of the compiled extension name exactly what the extension exports, and each stub
function takes the extension function's parameters (names and order, where the extension
publishes a text signature)."""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorpress import _core, entropy
from tensorpress.errors import CorruptDataError, FormatError, InvalidArgumentError

STUBS = Path(__file__).parents[1] / "python" / "tensorpress" / "_core.pyi"
#: Names the stub defines for its own annotations, not exported by the extension.
STUB_ONLY = {"Buffer"}


def stub_defs() -> dict[str, ast.AST]:
    tree = ast.parse(STUBS.read_text())
    defs: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            defs[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defs[node.target.id] = node
        elif isinstance(node, ast.Assign):
            defs.update((t.id, node) for t in node.targets if isinstance(t, ast.Name))
    return defs


def test_stubs_name_every_export() -> None:
    exported = {name for name in dir(_core) if not name.startswith("_")} | {"__version__"}
    assert set(stub_defs()) - STUB_ONLY == exported


def test_stub_functions_take_the_extension_parameters() -> None:
    checked = 0
    for name, node in stub_defs().items():
        if not isinstance(node, ast.FunctionDef):
            continue
        try:
            real = inspect.signature(getattr(_core, name))
        except (TypeError, ValueError):
            continue  # no text signature published
        stub = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
        assert stub == list(real.parameters), name
        checked += 1
    assert checked >= 10


def test_huffman_lengths_reads_both_table_forms() -> None:
    """The one Huffman table parser, which the GPU host parser calls too."""
    golden = Path(__file__).parent / "golden"
    v1, v2 = ((golden / f"stream-v{v}-huffman.tpe").read_bytes() for v in (1, 2))
    tables = [blob[24 : 24 + int.from_bytes(blob[20:24], "little")] for blob in (v1, v2)]
    assert len(tables[0]) == 128 and len(tables[1]) < 128
    lengths = [_core.huffman_lengths(t, v) for t, v in zip(tables, (1, 2), strict=True)]
    assert lengths[0] == lengths[1] and len(lengths[0]) == 256 and max(lengths[0]) <= 12
    assert entropy.decode(v1).tobytes() == entropy.decode(v2).tobytes()
    for table, version, match in [(tables[1], 3, "version 3"), (tables[1] + b"\0", 2, "its lengths take")]:
        with pytest.raises(FormatError, match=match):
            _core.huffman_lengths(table, version)


def test_lane_lengths_reads_the_varint_table() -> None:
    """The one lane-length parser (docs/format.md §1.1), which the GPU host parser calls too."""
    # 3000, 3010, 2990: zigzag differences 6000 (two bytes), 20, 39.
    table = bytes([0xF0, 0x2E, 20, 39])
    assert _core.lane_lengths(table + b"\xff", 3) == ([3000, 3010, 2990], 4)
    for body, match in [(b"\x80", "truncated"), (b"\x82\x00", "shortest"), (b"\x01", "outside")]:
        with pytest.raises(CorruptDataError, match=match):
            _core.lane_lengths(body, 1)
    with pytest.raises(InvalidArgumentError):
        _core.lane_lengths(table, 33)


#: The Python reference `_core.json_depth` replaced: strip complete strings, count brackets.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def reference_json_depth(data: bytes) -> int:
    bare = np.frombuffer(_STRING.sub(b"", data), dtype=np.uint8)
    step = np.isin(bare, (0x5B, 0x7B)).astype(np.int64) - np.isin(bare, (0x5D, 0x7D)).astype(np.int64)
    return int(np.cumsum(step).max(initial=0))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b"a", b",", b":", b"1"]), max_size=60))
def test_json_depth_counts_brackets_outside_strings(pieces: list[bytes]) -> None:
    text = b"".join(pieces)
    if b'"' not in _STRING.sub(b"", text):
        # Every string terminated: the regex reference applies exactly.
        assert _core.json_depth(text) == reference_json_depth(text)
    # An unterminated string runs to the end of the text: its brackets never count.
    assert _core.json_depth(text) <= reference_json_depth(text)


def test_json_depth_of_real_headers_and_deep_nesting() -> None:
    header = json.dumps({"a": [[1, "[[{"], {"b": ['\\"]']}], "c": "}}}"}).encode()
    assert _core.json_depth(header) == reference_json_depth(header) == 4
    assert _core.json_depth(b"[" * 100_000) == 100_000
    assert _core.json_depth(b'["[[[') == 1
