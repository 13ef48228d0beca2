"""Hugging Face style model folders as untrusted input: safe file names, strict JSON, shards.

A compressed folder written by :func:`tensorpress.save_pretrained` holds ``model.tpz`` (or shards
``model-00001-of-0000N.tpz`` listed by ``model.tpz.index.json``), ``config.json`` and the tokenizer
and generation files of the source. A source folder holds ``model.safetensors`` (or shards listed
by ``model.safetensors.index.json``).

Every file name read from an index is checked before it is opened: a plain file name (no path
separator, not ``.``/``..``), which after resolving symbolic links still lies inside the folder.
A malformed index or config raises :class:`~tensorpress.errors.FormatError` naming the file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tensorpress import container
from tensorpress.errors import FormatError, InvalidArgumentError

TPZ_WEIGHTS = "model.tpz"
TPZ_INDEX = "model.tpz.index.json"
SAFETENSORS_WEIGHTS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
CONFIG = "config.json"
#: Largest JSON side file (config, index) read, checked before reading.
MAX_JSON_BYTES = 64 << 20
#: Side files copied from a source folder: tokenizer, generation and sentence-transformers files.
#: Data only: no Python file is ever copied or run.
SIDE_FILE_SUFFIXES = (".json", ".txt", ".model", ".jinja")
_WEIGHT_FILES = (SAFETENSORS_INDEX, TPZ_INDEX, "pytorch_model.bin.index.json")


def member(folder: Path, name: Any, what: str) -> Path:
    """``folder / name`` for a plain file name that stays inside ``folder`` (symlinks resolved);
    otherwise a :class:`FormatError` naming ``what`` (the file that listed ``name``)."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or os.sep in name
        or (os.altsep is not None and os.altsep in name)
    ):
        raise FormatError(f"{what}: {name!r} is not a plain file name inside the folder")
    path = folder / name
    root = folder.resolve()
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise FormatError(f"{what}: cannot resolve {name!r}: {exc}") from None
    if resolved.parent != root:
        raise FormatError(f"{what}: {name!r} leads outside the folder {folder}")
    return path


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; FormatError naming the file when it is not one."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise FormatError(f"{path}: missing") from None
    if size > MAX_JSON_BYTES:
        raise FormatError(f"{path}: {size} bytes is more than a config or index may hold")
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: malformed JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise FormatError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def weight_map(folder: Path, index_name: str) -> dict[str, Path]:
    """``{tensor name: shard path}`` from a sharded checkpoint index, every shard name checked."""
    index_path = folder / index_name
    doc = read_json(index_path)
    mapping = doc.get("weight_map")
    if not isinstance(mapping, dict) or not mapping:
        raise FormatError(f"{index_path}: 'weight_map' must be a non-empty object")
    out: dict[str, Path] = {}
    checked: dict[str, Path] = {}
    for tensor, shard in mapping.items():
        if not isinstance(tensor, str) or not tensor:
            raise FormatError(f"{index_path}: invalid tensor name {tensor!r}")
        if shard not in checked:
            checked[shard] = member(folder, shard, str(index_path))
            if not checked[shard].is_file():
                raise FormatError(f"{index_path}: shard {shard!r} is missing")
        out[tensor] = checked[shard]
    return out


def is_compressed_folder(folder: Path) -> bool:
    """True when ``folder`` holds tensorpress weights (``model.tpz`` or its index)."""
    return (folder / TPZ_WEIGHTS).is_file() or (folder / TPZ_INDEX).is_file()


def tpz_shards(folder: Path) -> tuple[list[Path], dict[str, Path] | None]:
    """The ``.tpz`` files of a compressed folder (first one first) and the index's weight map
    (None for a single file)."""
    if (folder / TPZ_INDEX).is_file():
        mapping = weight_map(folder, TPZ_INDEX)
        shards = sorted(set(mapping.values()), key=lambda p: p.name)
        return shards, mapping
    single = folder / TPZ_WEIGHTS
    if single.is_file():
        return [member(folder, TPZ_WEIGHTS, str(folder))], None
    hint = ""
    if (folder / SAFETENSORS_WEIGHTS).is_file() or (folder / SAFETENSORS_INDEX).is_file():
        hint = (
            "; it holds uncompressed safetensors weights: load it with transformers, or compress it "
            "first with tensorpress.save_pretrained(folder, out_dir) / `tensorpress compress folder out_dir`"
        )
    raise FormatError(f"{folder}: no {TPZ_WEIGHTS} or {TPZ_INDEX} (not a tensorpress model folder){hint}")


def read_source_state(folder: Path) -> dict[str, Any]:
    """The tensors of an uncompressed HF folder (``model.safetensors`` or its sharded index), as
    torch tensors."""
    from safetensors.torch import load_file

    if (folder / SAFETENSORS_INDEX).is_file():
        mapping = weight_map(folder, SAFETENSORS_INDEX)
        state: dict[str, Any] = {}
        for shard in sorted(set(mapping.values()), key=lambda p: p.name):
            for name, value in _load_safetensors(load_file, shard).items():
                if mapping.get(name) == shard:
                    state[name] = value
        missing = [n for n in mapping if n not in state]
        if missing:
            raise FormatError(f"{folder / SAFETENSORS_INDEX}: tensor {missing[0]!r} is not in its shard")
        return state
    single = folder / SAFETENSORS_WEIGHTS
    if single.is_file():
        return _load_safetensors(load_file, member(folder, SAFETENSORS_WEIGHTS, str(folder)))
    if is_compressed_folder(folder):
        from tensorpress.hf import load_state

        return load_state(folder)
    raise InvalidArgumentError(
        f"{folder}: no {SAFETENSORS_WEIGHTS}, {SAFETENSORS_INDEX} or {TPZ_WEIGHTS} "
        "(only safetensors checkpoints are read: a pickled .bin can run code)"
    )


def _load_safetensors(load_file: Callable[[str], dict[str, Any]], path: Path) -> dict[str, Any]:
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError
        raise FormatError(f"{path}: not a readable safetensors file: {exc}") from None


def copy_side_files(src: Path, dst: Path) -> list[str]:
    """Copy the config, tokenizer and generation files (regular files, data only) of ``src``
    into ``dst``; returns their names. Weights, weight indexes and symlinks are skipped."""
    copied = []
    for path in sorted(src.iterdir()):
        if path.is_symlink() or not path.is_file() or path.name in _WEIGHT_FILES:
            continue
        if path.suffix in SIDE_FILE_SUFFIXES:
            shutil.copyfile(path, dst / path.name)
            copied.append(path.name)
    return copied


def write_json(path: Path, doc: Mapping[str, Any]) -> None:
    """Write a JSON file atomically (indented, like transformers does)."""
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    container.atomic_write(path, lambda f: f.write(text.encode()))


__all__ = [
    "CONFIG",
    "SAFETENSORS_INDEX",
    "SAFETENSORS_WEIGHTS",
    "TPZ_INDEX",
    "TPZ_WEIGHTS",
    "copy_side_files",
    "is_compressed_folder",
    "member",
    "read_json",
    "read_source_state",
    "tpz_shards",
    "weight_map",
    "write_json",
]
