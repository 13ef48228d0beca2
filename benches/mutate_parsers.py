"""Scripted mutation run over the Python parsers: does every check have a test that notices when
it is removed?

Each mutant disables one check — an ``if <condition>: raise ...`` becomes ``if False: ...``, a
video ``need(<condition>, ...)`` becomes ``need(True, ...)`` — or moves one comparison of a check
by one (``<`` ↔ ``<=``, ``>`` ↔ ``>=``), by swapping the code object of the
one function it lives in (in this process), then runs the format tests (pytest, in-process,
stopping at the first failure). A mutant the tests still pass on *survives*: that check is
untested, or redundant behind another. Usage::

    PYTHONPATH=python python benches/mutate_parsers.py [--limit N] [--only SUBSTRING]

Prints one line per mutant and the survivors at the end (listed in benches/RESULTS.md).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import importlib
import io
import os
import time
import types
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "python" / "tensorpress"
#: File -> functions whose checks are mutated (the parsers of stored bytes and headers).
TARGETS: dict[str, tuple[str, ...]] = {
    "container.py": ("_parse", "_parse_entry", "compressed", "_check_summary", "__init__"),
    "methods/base.py": ("parse_json", "need_dict", "need_int", "need_choice", "need_float", "need_shape",
                        "need_dtype", "need_device"),
    "methods/__init__.py": ("stored_class", "check_max_size"),
    "methods/lossless.py": ("from_parts", "merge_planes", "stream_facts"),
    "methods/blockwise.py": ("from_parts", "unpack_bits", "dequantize_numpy"),
    "methods/lowrank.py": ("from_parts",),
    "distributed.py": ("unpack_object",),
    "video/__init__.py": ("_validate_header", "from_bytes"),
}  # fmt: skip
TESTS = [
    "tests/test_methods_golden.py",
    "tests/test_container.py",
    "tests/test_methods.py",
    "tests/test_methods_hostile.py",
    "tests/test_methods_checks.py",
    "tests/test_video.py::test_from_parts_validates_header",
    "tests/test_video.py::test_from_parts_truncated_or_garbage_payload",
    "tests/test_video.py::test_damaged_bytes_raise_typed_errors",
    "tests/test_video.py::test_truncated_bytes_raise_typed_errors",
]


class Mutant:
    def __init__(self, file: str, function: str, line: int, what: str, tree: ast.Module) -> None:
        self.file, self.function, self.line, self.what, self.tree = file, function, line, what, tree

    def __str__(self) -> str:
        return f"{self.file}:{self.line} ({self.function}): {self.what}"


def mutants(file: str, functions: tuple[str, ...]) -> list[Mutant]:
    source = (PACKAGE / file).read_text()
    tree = ast.parse(source)
    found: list[tuple[int, str, str, int]] = []  # (line, function, kind, index among walk)
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) or fn.name not in functions:
            continue
        for i, node in enumerate(ast.walk(fn)):
            if isinstance(node, ast.If) and any(isinstance(s, ast.Raise) for s in node.body):
                found.append((node.lineno, fn.name, "if", i))
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "need" and node.args:
                found.append((node.lineno, fn.name, "need", i))
    # Boundary mutants: one comparison of a check's condition moved by one (< ↔ <=, > ↔ >=).
    boundary = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
    for _line, name, _kind, index in list(found):
        fn = next(f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == name)
        node = list(ast.walk(fn))[index]
        condition = node.test if isinstance(node, ast.If) else node.args[0]  # type: ignore[attr-defined]
        for j, sub in enumerate(ast.walk(condition)):
            if isinstance(sub, ast.Compare):
                for k, op in enumerate(sub.ops):
                    if type(op) in boundary:
                        found.append((sub.lineno, name, f"boundary:{index}:{j}:{k}", index))
    out = []
    for line, name, kind, index in found:
        mutated = copy.deepcopy(tree)
        fn = next(f for f in ast.walk(mutated) if isinstance(f, ast.FunctionDef) and f.name == name)
        node = list(ast.walk(fn))[index]
        if kind.startswith("boundary"):
            _, _, j, k = kind.split(":")
            condition = node.test if isinstance(node, ast.If) else node.args[0]  # type: ignore[attr-defined]
            sub = list(ast.walk(condition))[int(j)]
            assert isinstance(sub, ast.Compare)
            before = ast.unparse(sub)
            sub.ops[int(k)] = boundary[type(sub.ops[int(k)])]()
            what = f"boundary `{before[:60]}` -> `{ast.unparse(sub)[:60]}`"
        elif kind == "if":
            segment = ast.unparse(node.test)
            assert isinstance(node, ast.If)
            node.test = ast.Constant(False)
            what = f"check `if {segment[:70]}` removed"
        else:
            assert isinstance(node, ast.Call)
            segment = ast.unparse(node.args[0])
            node.args[0] = ast.Constant(True)
            what = f"check `need({segment[:70]})` removed"
        out.append(Mutant(file, name, line, what, mutated))
    return out


def _holder_and_function(module: Any, name: str) -> tuple[Any, Any]:
    """The object holding function ``name`` in ``module`` (the module or a class) and the plain
    function (classmethods unwrapped)."""
    if isinstance(getattr(module, name, None), types.FunctionType):
        return module, getattr(module, name)
    for value in vars(module).values():
        if isinstance(value, type) and value.__module__ == module.__name__ and name in vars(value):
            member = vars(value)[name]
            return value, getattr(member, "__func__", member)
    raise LookupError(f"{module.__name__}.{name}")


def _module_name(file: str) -> str:
    return "tensorpress." + file.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def mutated_code(m: Mutant) -> types.CodeType:
    """The code object of ``m.function`` compiled from the mutated module."""
    module = importlib.import_module(_module_name(m.file))
    namespace: dict[str, Any] = {"__name__": module.__name__, "__package__": module.__package__}
    exec(compile(ast.unparse(m.tree), str(PACKAGE / m.file), "exec"), namespace)
    shadow = types.ModuleType(module.__name__)
    shadow.__dict__.update(namespace)
    return _holder_and_function(shadow, m.function)[1].__code__


def run_tests() -> bool:
    args = ["-x", "-q", "-p", "no:cacheprovider", *TESTS]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = pytest.main(args)
    return code == pytest.ExitCode.OK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="stop after this many mutants")
    parser.add_argument("--only", default="", help="only files whose path contains this")
    parser.add_argument("--kind", choices=("all", "remove", "boundary"), default="all", help="mutant kinds")
    args = parser.parse_args()
    os.environ.setdefault("TENSORPRESS_HOSTILE_MUTANTS", "600")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    all_mutants = [m for f, fns in TARGETS.items() if args.only in f for m in mutants(f, fns)]
    if args.kind != "all":
        all_mutants = [m for m in all_mutants if m.what.startswith("boundary") == (args.kind == "boundary")]
    if args.limit:
        all_mutants = all_mutants[: args.limit]
    if not run_tests():
        raise SystemExit("the tests fail without any mutant: fix them first")
    survivors = []
    start = time.perf_counter()
    for i, m in enumerate(all_mutants, 1):
        module = importlib.import_module(_module_name(m.file))
        function = _holder_and_function(module, m.function)[1]
        original = function.__code__
        function.__code__ = mutated_code(m)
        try:
            killed = not run_tests()
        finally:
            function.__code__ = original
        print(f"[{i}/{len(all_mutants)}] {'killed  ' if killed else 'SURVIVED'} {m}", flush=True)
        if not killed:
            survivors.append(m)
    elapsed = time.perf_counter() - start
    print(
        f"\n{len(all_mutants)} mutants, {len(all_mutants) - len(survivors)} killed, "
        f"{len(survivors)} survived, {elapsed:.0f} s"
    )
    for m in survivors:
        print(f"  survived: {m}")


if __name__ == "__main__":
    main()
