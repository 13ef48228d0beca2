"""The ``.tpz`` container: many compressed tensors in one checksummed, randomly accessible file.

Normative specification: ``docs/format.md``. In short::

    preamble (32 bytes)  magic 89 54 50 5A 0D 0A 1A 0A | major u16 | minor u16 | flags u32
                         | header length u64 | header CRC32C u32 | preamble CRC32C u32
    header               UTF-8 JSON, then zero bytes up to a multiple of 64
    payloads             one per tensor, each starting at a multiple of 64 (relative to the end
                         of the header), zero padding between them, the file ending exactly at
                         the end of the last payload

Writes are atomic (temporary file in the same directory, fsync, rename). Reads validate every
length against the file before allocating and check each payload's CRC32C before decoding. Each
tensor is a stored tensor of a registered method (:mod:`tensorpress.methods`); the container
reads them through the registry only.
``.safetensors`` paths are read and written too (uncompressed, via the safetensors library).
"""

from __future__ import annotations

import builtins
import json
import mmap
import os
import struct
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tensorpress import _core, methods, tensors
from tensorpress.errors import ChecksumError, CorruptDataError, FormatError, InvalidArgumentError
from tensorpress.methods import base

MAGIC = b"\x89TPZ\r\n\x1a\n"
MAJOR_VERSION = 1
MINOR_VERSION = 0
#: Flags this version understands; every other bit is reserved and must be zero.
KNOWN_FLAGS = 0
PREAMBLE = struct.Struct("<8sHHIQII")
PREAMBLE_BYTES = PREAMBLE.size  # 32
#: Largest JSON header accepted, checked before it is read.
MAX_HEADER_BYTES = 64 << 20
#: Payload alignment (cache lines, and enough for any SIMD load).
ALIGNMENT = 64


def _align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def _is_safetensors(path: Path) -> bool:
    return path.suffix == ".safetensors"


# --- writing ---------------------------------------------------------------------------------


def _encode_one(value: Any, codec: str, threads: int | None) -> Any:
    if methods.is_stored(value):
        return value  # already stored by some method (lossless, blockwise, video, lowrank)
    return tensors.compress(value, codec, threads=threads)


def save(
    tensors_by_name: Mapping[str, Any],
    path: str | os.PathLike[str],
    codec: str = "auto",
    *,
    metadata: Mapping[str, str] | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> Path:
    """Compress ``tensors_by_name`` and write them to ``path`` atomically.

    Values may be numpy arrays, torch tensors (compressed losslessly with ``codec``), or stored
    tensors of any method (from :func:`tensorpress.compress`, :meth:`tensorpress.Plan.apply`,
    :func:`tensorpress.video.encode`, :func:`tensorpress.methods.lowrank.factorize`). A
    ``.safetensors`` path writes an uncompressed safetensors file instead.
    """
    path = Path(path)
    if not isinstance(tensors_by_name, Mapping):
        raise InvalidArgumentError("save() takes a mapping of tensor name to tensor")
    for name in tensors_by_name:
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"tensor names must be non-empty strings, got {name!r}")
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    if _is_safetensors(path):
        _save_safetensors(tensors_by_name, path, meta)
        return path

    items = list(tensors_by_name.items())
    entries: list[dict[str, Any]] = []
    payloads: list[bytes] = []
    offset = 0
    for name, value in _progress(items, progress, "compress"):
        encoded = _encode_one(value, codec, threads)
        payload = encoded.payload()
        params = encoded.header()
        entries.append(
            {
                "name": name,
                "method": encoded.method,
                "dtype": encoded.dtype,
                "shape": list(encoded.shape),
                "codec": encoded.codec,
                "raw_nbytes": encoded.raw_nbytes,
                "params": params,
                "offset": offset,
                "length": len(payload),
                "crc32c": _core.crc32c(payload),
            }
        )
        payloads.append(payload)
        offset = _align(offset + len(payload))
    header = json.dumps({"tensors": entries, "metadata": meta}, separators=(",", ":")).encode()
    if len(header) > MAX_HEADER_BYTES:
        raise InvalidArgumentError(f"header of {len(header)} bytes exceeds {MAX_HEADER_BYTES}")
    preamble_fields = (MAGIC, MAJOR_VERSION, MINOR_VERSION, 0, len(header), _core.crc32c(header))
    head = PREAMBLE.pack(*preamble_fields, 0)[:-4]
    preamble = head + struct.pack("<I", _core.crc32c(head))

    def write(f: Any) -> None:
        f.write(preamble)
        f.write(header)
        f.write(b"\0" * (_align(PREAMBLE_BYTES + len(header)) - PREAMBLE_BYTES - len(header)))
        at = 0
        for entry, payload in zip(entries, payloads, strict=True):
            f.write(b"\0" * (entry["offset"] - at))
            f.write(payload)
            at = entry["offset"] + len(payload)

    atomic_write(path, write)
    return path


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Run ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over
    ``path``: readers see the old file or the new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp_name, _new_file_mode(path))
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some filesystems cannot fsync directories; the rename itself already happened
    finally:
        os.close(dir_fd)


def _new_file_mode(path: Path) -> int:
    """Keep an existing file's permissions; otherwise what open() would give (mkstemp uses 0600)."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _save_safetensors(tensors_by_name: Mapping[str, Any], path: Path, meta: dict[str, str]) -> None:
    from safetensors.numpy import save as save_bytes

    arrays = {}
    for name, value in tensors_by_name.items():
        if methods.is_stored(value):
            value = tensors.decompress(value, as_kind="numpy")
        arr, _, _ = tensors.to_numpy(value)
        arrays[name] = arr.copy() if not arr.flags.c_contiguous else arr
    data = save_bytes(arrays, metadata=meta or None)
    atomic_write(path, lambda f: f.write(data))


def _progress(items: list[Any], enabled: bool, what: str) -> Any:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=what, unit="tensor")


# --- reading ---------------------------------------------------------------------------------


class TpzFile(Mapping[str, Any]):
    """A memory-mapped ``.tpz`` file; tensors are decoded one at a time on access.

    Use as a context manager (or call :meth:`close`). Mapping access returns decoded tensors (as
    ``as_kind``, on ``device``, refusing any tensor that decodes to more than ``max_size`` bytes);
    :meth:`entry` returns a tensor's header entry, :meth:`compressed` its stored form.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        as_kind: str | None = None,
        device: str | None = None,
        max_size: int | None = None,
    ) -> None:
        base.check_as_kind(as_kind)
        methods.check_max_size(_NoTensor(), max_size)
        self.path = Path(path)
        self.as_kind, self.device, self.max_size = as_kind, device, max_size
        self._file = builtins.open(self.path, "rb")  # noqa: SIM115 - lives as long as the mapping
        try:
            size = os.fstat(self._file.fileno()).st_size
            if size < PREAMBLE_BYTES:
                raise FormatError(f"{self.path}: {size} bytes is shorter than the preamble")
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            self._entries, self.metadata, self._data_start = _parse(self._map, self.path)
        except BaseException:
            self._file.close()
            raise
        self._by_name = {e["name"]: e for e in self._entries}

    # Mapping protocol
    def __getitem__(self, name: str) -> Any:
        return tensors.decompress(self.compressed(name), as_kind=self.as_kind, device=self.device)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def entry(self, name: str) -> dict[str, Any]:
        """The header entry of tensor ``name`` (dtype, shape, method, codec, sizes, params)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no tensor named {name!r} in {self.path}") from None

    def entries(self) -> list[dict[str, Any]]:
        """Header entries in file order."""
        return list(self._entries)

    def compressed(self, name: str) -> Any:
        """Tensor ``name`` in stored form: payload checksum verified, header validated against the
        payload and the entry's ``dtype``/``shape``/``codec``/``raw_nbytes``, ``max_size`` checked."""
        entry = self.entry(name)
        start = self._data_start + entry["offset"]
        end = start + entry["length"]
        # The zero padding after a payload belongs to it: a flipped padding bit is corruption too.
        if any(self._map[end : min(self._data_start + _align(end - self._data_start), len(self._map))]):
            raise CorruptDataError(f"{self.path}: non-zero padding after tensor {name!r}")
        with memoryview(self._map)[start:end] as view:
            if _core.crc32c(view) != entry["crc32c"]:
                raise ChecksumError(f"{self.path}: payload of tensor {name!r} fails its checksum")
            payload = bytes(view)
        try:
            obj = methods.from_parts(entry["method"], entry["params"], payload, max_size=self.max_size)
        except FormatError as exc:
            raise type(exc)(f"{self.path}: tensor {name!r}: {exc}") from None
        _check_summary(entry, obj, self.path)
        return obj

    def close(self) -> None:
        self._map.close()
        self._file.close()

    def __enter__(self) -> TpzFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _NoTensor:
    """Stands in for a tensor of size 0 when only ``max_size`` itself is being checked."""

    method = "none"
    decoded_nbytes = 0


def _check_summary(entry: dict[str, Any], obj: Any, path: Path) -> None:
    """The entry's summary fields must say what the method's params say."""
    expected = {
        "dtype": obj.dtype,
        "shape": list(obj.shape),
        "codec": obj.codec,
        "raw_nbytes": obj.raw_nbytes,
    }
    for key, value in expected.items():
        if entry[key] != value or type(entry[key]) is not type(value):
            raise FormatError(
                f"{path}: tensor {entry['name']!r}: entry {key} {entry[key]!r} contradicts "
                f"its params ({value!r})"
            )


def _parse_entry(i: int, e: Any, path: Path) -> dict[str, Any]:
    """Check one header entry's fields (types and bounds; the params are checked on access)."""
    what = f"{path}: entry {i}"
    if not isinstance(e, dict):
        raise FormatError(f"{what} is not a JSON object")
    name = e.get("name")
    if not isinstance(name, str) or not name:
        raise FormatError(f"{what}: tensor names must be non-empty strings, got {name!r}")
    if not isinstance(e.get("method"), str) or e["method"] not in methods.REGISTRY:
        raise FormatError(
            f"{what}: unknown tensor method {e.get('method')!r} (written by a newer tensorpress?)"
        )
    for key, kinds in (("dtype", str), ("codec", str), ("params", dict), ("shape", list)):
        if not isinstance(e.get(key), kinds):
            raise FormatError(f"{what}: {key} must be a {kinds.__name__}, got {e.get(key)!r}")
    for key, hi in (("offset", base.U64_MAX), ("length", base.U64_MAX), ("crc32c", 0xFFFFFFFF)):
        if not base.is_int(e.get(key)) or not 0 <= e[key] <= hi:
            raise FormatError(f"{what}: {key} must be an integer in [0, {hi}], got {e.get(key)!r}")
    if not base.is_int(e.get("raw_nbytes")) or e["raw_nbytes"] < 0:
        raise FormatError(f"{what}: raw_nbytes must be a non-negative integer, got {e.get('raw_nbytes')!r}")
    return e


def _parse(buf: mmap.mmap, path: Path) -> tuple[list[dict[str, Any]], dict[str, str], int]:
    size = len(buf)
    magic, major, minor, flags, header_len, header_crc, preamble_crc = PREAMBLE.unpack_from(buf, 0)
    if magic != MAGIC:
        raise FormatError(f"{path}: not a .tpz file (bad magic)")
    if major != MAJOR_VERSION:
        raise FormatError(
            f"{path}: format version {major}.{minor} is not readable by this tensorpress "
            f"(reads {MAJOR_VERSION}.x); upgrade tensorpress"
        )
    if _core.crc32c(buf[: PREAMBLE_BYTES - 4]) != preamble_crc:
        raise ChecksumError(f"{path}: preamble checksum mismatch")
    if flags & ~KNOWN_FLAGS:
        raise FormatError(f"{path}: reserved flag bits set ({flags:#x})")
    if header_len > MAX_HEADER_BYTES or PREAMBLE_BYTES + header_len > size:
        raise FormatError(f"{path}: header length {header_len} exceeds the limit or the file (truncated?)")
    header = buf[PREAMBLE_BYTES : PREAMBLE_BYTES + header_len]
    if _core.crc32c(header) != header_crc:
        raise ChecksumError(f"{path}: header checksum mismatch")
    doc = base.parse_json(header, f"{path}: header")
    if not isinstance(doc, dict) or not isinstance(doc.get("tensors"), list):
        raise FormatError(f"{path}: malformed header: no list of tensors")
    metadata = doc.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FormatError(f"{path}: metadata must map strings to strings")
    entries = [_parse_entry(i, e, path) for i, e in enumerate(doc["tensors"])]
    data_start = _align(PREAMBLE_BYTES + header_len)
    if not entries:
        # An empty container ends at the end of its header or after its zero padding.
        if size not in (PREAMBLE_BYTES + header_len, data_start):
            raise FormatError(f"{path}: file is {size} bytes, an empty container ends at 32+h or at D")
    elif data_start > size:
        raise FormatError(f"{path}: truncated after the header")
    if any(buf[PREAMBLE_BYTES + header_len : min(data_start, size)]):
        raise FormatError(f"{path}: non-zero header padding")
    end = 0
    names = set()
    for e in entries:
        name, offset, length = e["name"], e["offset"], e["length"]
        if name in names:
            raise FormatError(f"{path}: duplicate tensor name {name!r}")
        names.add(name)
        # Payloads tile the file: each starts at the next aligned offset after the previous.
        if offset != _align(end):
            raise FormatError(
                f"{path}: payload of {name!r} at {offset} breaks the tiling (expected {_align(end)})"
            )
        end = offset + length
    if entries and data_start + end != size:
        raise FormatError(
            f"{path}: file is {size} bytes, its header describes {data_start + end} (truncated?)"
        )
    return entries, metadata, data_start


def open(
    path: str | os.PathLike[str],
    *,
    as_kind: str | None = None,
    device: str | None = None,
    max_size: int | None = None,
) -> TpzFile:
    """Open a ``.tpz`` file for lazy, per-tensor random access (see :class:`TpzFile`;
    ``max_size`` bounds the decoded bytes of each tensor)."""
    return TpzFile(path, as_kind=as_kind, device=device, max_size=max_size)


def load(
    path: str | os.PathLike[str],
    *,
    as_kind: str | None = None,
    device: str | None = None,
    max_size: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Read every tensor of a ``.tpz`` (or ``.safetensors``) file, decoded.

    Tensors come back as the kind they were saved from (numpy or torch) unless ``as_kind`` says
    otherwise; torch tensors go to ``device``, or to their recorded device when this machine has
    it (else to the CPU, with a warning). ``max_size`` bounds the decoded bytes of all tensors
    together and is checked against every header before anything is decoded.
    """
    path = Path(path)
    base.check_as_kind(as_kind)
    if _is_safetensors(path):
        from safetensors.numpy import load_file

        arrays = load_file(str(path))
        if as_kind == "torch":
            return {k: tensors.from_numpy(v, "torch", device) for k, v in arrays.items()}
        return arrays
    with TpzFile(path, max_size=max_size) as f:
        if max_size is not None:
            # A first pass validates every tensor and sums the declared sizes; tensors are then
            # decoded one at a time, so no more than one compressed copy is alive at once.
            total = sum(int(f.compressed(name).decoded_nbytes) for name in f)
            if total > max_size:
                raise FormatError(
                    f"{path}: tensors decode to {total:,} bytes, more than max_size={max_size:,}"
                )
        return {
            name: tensors.decompress(f.compressed(name), as_kind=as_kind, device=device)
            for name in _progress(list(f), progress, "decompress")
        }


__all__ = ["ALIGNMENT", "MAGIC", "MAX_HEADER_BYTES", "TpzFile", "atomic_write", "load", "open", "save"]
