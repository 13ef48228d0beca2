"""The ``.tpz`` container: many compressed tensors in one checksummed, randomly accessible file.

Normative specification: ``docs/format.md``. In short (version 1.2, as written)::

    preamble (64 bytes)  magic 89 54 50 5A 0D 0A 1A 0A | major u16 | minor u16 | flags u32
                         | header length u64 | header CRC32C u32 | preamble CRC32C u32
                         | header offset u64 | 20 zero bytes | CRC32C of the header offset u32
    payloads             one per tensor, each starting at a multiple of 64 (relative to byte 64),
                         zero padding between them
    header               UTF-8 JSON (flag bit 0: as a zlib stream), ending the file

The header comes last (flag bit 1) so that payloads are written as they are coded, and nothing
but the header entries is held in memory; the preamble, written last, says where the header is.
Files of version 1.0/1.1 (the header first, payloads after it) read unchanged.

Writes are atomic (temporary file in the same directory, fsync, rename). Reads validate every
length against the file before allocating and check each payload's CRC32C before decoding. Each
tensor is a stored tensor of a registered method (:mod:`tensorpress.methods`); the container
reads them through the registry only.
``.safetensors`` paths are read and written too (uncompressed, via the safetensors library).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tensorpress import _core, entropy, methods, safetensors_io, tensors
from tensorpress.atomic import atomic_write, start_writeback
from tensorpress.errors import (
    ChecksumError,
    CorruptDataError,
    FormatError,
    InvalidArgumentError,
    TensorpressError,
)
from tensorpress.filesource import FileSource
from tensorpress.methods import base, lossless
from tensorpress.ordered import map_in_order

MAGIC = b"\x89TPZ\r\n\x1a\n"
MAJOR_VERSION = 1
#: 1.1 added :data:`FLAG_ZLIB_HEADER`, 1.2 :data:`FLAG_TRAILING_HEADER`; older files read as before.
MINOR_VERSION = 2
#: Preamble flag: the header is a zlib stream (RFC 1950) of the JSON, not the JSON itself. A
#: model of many small tensors repeats the same keys, dtypes and names in every entry: MiniLM's
#: 37 KB header deflates to 2.6 KB, which decides whether a .tpz beats zstd on small models.
FLAG_ZLIB_HEADER = 1
#: Preamble flag: the header follows the payloads and ends the file; the preamble is extended to
#: 64 bytes by :data:`HEADER_LOCATION` and the payloads start at byte 64. A writer can then put each
#: payload on disk as soon as it is coded, where a leading header (it holds every payload's length
#: and CRC) made it hold the whole model's payloads until the last one was done.
FLAG_TRAILING_HEADER = 2
#: Flags this version understands; every other bit is reserved and must be zero.
KNOWN_FLAGS = FLAG_ZLIB_HEADER | FLAG_TRAILING_HEADER
PREAMBLE = struct.Struct("<8sHHIQII")
PREAMBLE_BYTES = PREAMBLE.size  # 32
#: Bytes [32, 64) of a :data:`FLAG_TRAILING_HEADER` file: header offset u64, 20 reserved zero
#: bytes, CRC32C of bytes [32, 60).
HEADER_LOCATION = struct.Struct("<Q20sI")
#: Where the payloads of a :data:`FLAG_TRAILING_HEADER` file start (the extended preamble's end).
TRAILING_DATA_START = PREAMBLE_BYTES + HEADER_LOCATION.size  # 64
#: Largest JSON header accepted, checked before it is read.
MAX_HEADER_BYTES = 64 << 20
#: Payload alignment (cache lines, and enough for any SIMD load).
ALIGNMENT = 64
#: A writer starts the disk writeback of its payloads every this many bytes.
WRITEBACK_BYTES = 8 << 20


def align(n: int) -> int:
    """``n`` rounded up to a multiple of :data:`ALIGNMENT` (where each payload starts)."""
    return -(-n // ALIGNMENT) * ALIGNMENT


def _is_safetensors(path: Path) -> bool:
    return path.suffix == ".safetensors"


# --- writing ---------------------------------------------------------------------------------


def _check_utf8(text: str, what: str) -> None:
    """Names and metadata are stored as UTF-8: a lone surrogate cannot be, so refuse it here."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{what} {text!r} is not valid Unicode (lone surrogate)") from None


class _Encoded(NamedTuple):
    """A stored tensor with its payload and the payload's CRC32C, computed by the worker that
    encoded it (in parallel, while the payload is in cache) rather than by the writer."""

    stored: Any
    payload: bytes
    crc: int


def _encode_named(name: str, value: Any, codec: str, threads: int | None) -> _Encoded:
    """:func:`_encode_one`, its errors naming tensor ``name``."""
    try:
        return _encode_one(value, codec, threads)
    except TensorpressError as exc:
        raise type(exc)(f"tensor {name!r}: {exc}") from None


def _encode_one(value: Any, codec: str, threads: int | None) -> _Encoded:
    # A value already stored by some method (lossless, blockwise, video, lowrank) is kept.
    return _encoded(value if methods.is_stored(value) else tensors.compress(value, codec, threads=threads))


def _encoded(stored: Any) -> _Encoded:
    payload = stored.payload()
    return _Encoded(stored, payload, _core.crc32c(payload))


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
        _check_utf8(name, "tensor name")
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    for key, value in meta.items():
        _check_utf8(key, "metadata key")
        _check_utf8(value, "metadata value")
    if _is_safetensors(path):
        _save_safetensors(tensors_by_name, path, meta)
        return path

    items = list(tensors_by_name.items())

    def write(f: Any) -> None:
        writer = TpzWriter(f)
        for name, encoded in _progress(_encode_all(items, codec, threads), progress, "compress", len(items)):
            writer.add_encoded(name, encoded.stored, encoded.payload, encoded.crc)
        writer.finish(meta)

    atomic_write(path, write)
    return path


class TpzWriter:
    """Writes a ``.tpz`` (version 1.2, trailing header) into an open, seekable binary file as
    stored tensors arrive: each payload goes to disk at once, at its aligned offset, and only the
    header entries are kept; :meth:`finish` appends the header and writes the preamble over the
    zero bytes left for it at the start. The file is valid only after :meth:`finish`."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self._entries: list[dict[str, Any]] = []
        self._names: set[str] = set()
        self._end = 0  # end of the last payload, relative to TRAILING_DATA_START
        self._written_back = 0  # file offset up to which writeback was started
        f.write(bytes(TRAILING_DATA_START))

    def add(self, name: str, stored: Any) -> None:
        """Append stored tensor ``stored`` (of any registered method) as ``name``."""
        payload = stored.payload()
        self.add_encoded(name, stored, payload, _core.crc32c(payload))

    def add_encoded(self, name: str, stored: Any, payload: bytes, crc: int) -> None:
        """:meth:`add` with ``stored``'s payload and its CRC32C already computed."""
        if name in self._names:
            raise InvalidArgumentError(f"tensor name {name!r} is written twice")
        offset = align(self._end) if self._entries else 0
        self._f.write(bytes(offset - self._end))
        self._f.write(payload)
        self._end = offset + len(payload)
        self._names.add(name)
        self._entries.append(header_entry(name, stored, payload, offset, crc))
        # Written payloads go to disk while later tensors are coded: the final fsync of an
        # atomic save then waits only for the tail (measured 10-20 % off a SmolLM2 save).
        written = TRAILING_DATA_START + self._end
        if written - self._written_back >= WRITEBACK_BYTES:
            start_writeback(self._f, self._written_back, written)
            self._written_back = written

    def finish(self, metadata: Mapping[str, str]) -> int:
        """Write the header and the preamble; returns the file's size."""
        header, flags = _stored_header(self._entries, metadata)
        header_offset = TRAILING_DATA_START + self._end
        self._f.write(header)
        preamble = _preamble(flags | FLAG_TRAILING_HEADER, header)
        location = HEADER_LOCATION.pack(header_offset, bytes(20), 0)[:-4]
        self._f.seek(0)
        self._f.write(preamble + location + struct.pack("<I", _core.crc32c(location)))
        self._f.seek(0, os.SEEK_END)
        return header_offset + len(header)


def header_entry(
    name: str, stored: Any, payload: bytes, offset: int, crc: int | None = None
) -> dict[str, Any]:
    """The header entry of one stored tensor whose ``payload`` starts at ``offset`` (relative to
    the end of the header; docs/format.md §2.1) and has CRC32C ``crc`` (computed if not given):
    the one writer of entries, key order included."""
    return {
        "name": name,
        "method": stored.method,
        "dtype": stored.dtype,
        "shape": list(stored.shape),
        "codec": stored.codec,
        "raw_nbytes": stored.raw_nbytes,
        "params": stored.header(),
        "offset": offset,
        "length": len(payload),
        "crc32c": _core.crc32c(payload) if crc is None else crc,
    }


def _stored_header(entries: list[dict[str, Any]], metadata: Mapping[str, str]) -> tuple[bytes, int]:
    """The header as stored (the JSON of ``entries`` and ``metadata``, deflated when smaller) and
    the preamble flags that say how."""
    text = json.dumps({"tensors": entries, "metadata": dict(metadata)}, separators=(",", ":")).encode()
    if len(text) > MAX_HEADER_BYTES:
        raise InvalidArgumentError(f"header of {len(text)} bytes exceeds {MAX_HEADER_BYTES}")
    packed = zlib.compress(text, 9)
    return (packed, FLAG_ZLIB_HEADER) if len(packed) < len(text) else (text, 0)


def _preamble(flags: int, header: bytes) -> bytes:
    """The first 32 bytes of a container whose header (as stored) is ``header``."""
    fields = PREAMBLE.pack(MAGIC, MAJOR_VERSION, MINOR_VERSION, flags, len(header), _core.crc32c(header), 0)
    return fields[:-4] + struct.pack("<I", _core.crc32c(fields[:-4]))


def inflate_header(stored: bytes, what: str) -> bytes:
    """The JSON of a :data:`FLAG_ZLIB_HEADER` header: one complete zlib stream, nothing after
    it, inflating to at most :data:`MAX_HEADER_BYTES` (checked while inflating, so a small
    hostile stream cannot expand into a huge allocation)."""
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(stored, MAX_HEADER_BYTES)
    except zlib.error as exc:
        raise FormatError(f"{what}: not a valid zlib stream ({exc})") from None
    if inflater.unconsumed_tail:
        raise FormatError(f"{what}: inflates beyond the {MAX_HEADER_BYTES}-byte header limit")
    if not inflater.eof:
        raise FormatError(f"{what}: zlib stream ends early (truncated)")
    if inflater.unused_data:
        raise FormatError(f"{what}: {len(inflater.unused_data)} bytes after its zlib stream")
    return text


def _save_safetensors(tensors_by_name: Mapping[str, Any], path: Path, meta: dict[str, str]) -> None:
    arrays = {}
    for name, value in tensors_by_name.items():
        if methods.is_stored(value):
            value = tensors.decompress(value, as_kind="numpy")
        arrays[name], _, _ = tensors.to_numpy(value)
    safetensors_io.save_file(arrays, path, meta)


#: ``save`` codes tensors smaller than this together, several per call (see :func:`_units`).
SOLO_ENCODE_BYTES = 8 << 20
#: Most bytes of small tensors coded in one call.
BATCH_ENCODE_BYTES = 4 << 20


def _encode_all(
    items: list[tuple[str, Any]], codec: str, threads: int | None
) -> Iterator[tuple[str, _Encoded]]:
    """``(name, encoded tensor)`` in order. Small tensors are coded in batches, every chunk of
    every tensor of a batch a work item on the shared pool, so that models of many small tensors
    (one or two chunks each) still use every core; a large one spreads its own chunks over the
    pool. Two batches or tensors are in progress at once (the Rust encoder releases the GIL), so
    one's Python work and copies overlap the other's coding. ``threads=1`` encodes one tensor at
    a time on the calling thread."""
    limit = entropy.check_threads(threads)
    workers = min(len(items), entropy.pool_threads() if limit is None else limit)
    if workers <= 1:
        yield from ((name, _encode_named(name, value, codec, threads)) for name, value in items)
        return

    def encode(unit: list[tuple[str, Any]]) -> list[tuple[str, _Encoded]]:
        if len(unit) > 1:
            try:
                stored = lossless.compress_many([value for _, value in unit], codec, threads=threads)
            except TensorpressError:
                pass  # coded one by one below, so that the error names its tensor
            else:
                return [(name, _encoded(s)) for (name, _), s in zip(unit, stored, strict=True)]
        return [(name, _encode_named(name, value, codec, threads)) for name, value in unit]

    # At most 2 x workers units in flight: encoded payloads are held until written anyway, but
    # the sources of a lazily produced mapping are not all pulled into memory at once.
    with map_in_order(
        encode, _units(items), workers=workers, ahead=2 * workers, name="tensorpress-save"
    ) as encoded:
        for unit in encoded:
            yield from unit


def _units(items: list[tuple[str, Any]]) -> Iterator[list[tuple[str, Any]]]:
    """``items`` in order, in units to code in one call: consecutive tensors (not yet stored) of
    fewer than :data:`SOLO_ENCODE_BYTES` together up to :data:`BATCH_ENCODE_BYTES`, anything else
    alone."""
    batch: list[tuple[str, Any]] = []
    size = 0
    for name, value in items:
        nbytes = getattr(value, "nbytes", None)
        small = isinstance(nbytes, int) and nbytes < SOLO_ENCODE_BYTES and not methods.is_stored(value)
        weight = nbytes if small and isinstance(nbytes, int) else 0
        if batch and (not small or size + weight > BATCH_ENCODE_BYTES):
            yield batch
            batch, size = [], 0
        if small:
            batch.append((name, value))
            size += weight
        else:
            yield [(name, value)]
    if batch:
        yield batch


def _progress(items: Any, enabled: bool, what: str, total: int | None = None) -> Any:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=what, unit="tensor", total=total)


# --- reading ---------------------------------------------------------------------------------


class TpzFile(Mapping[str, Any]):
    """A memory-mapped ``.tpz`` file; tensors are decoded one at a time on access.

    Every access first checks that the file has not changed since it was opened
    (:class:`~tensorpress.errors.FileChangedError`; see :mod:`tensorpress.filesource` for what
    stays racy and ``mmap=False``). Access after :meth:`close` is an InvalidArgumentError.

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
        mmap: bool = True,
    ) -> None:
        base.check_as_kind(as_kind)
        methods.check_max_size(_NoTensor(), max_size)
        self.path = Path(path)
        self.as_kind, self.device, self.max_size = as_kind, device, max_size
        self._source = FileSource(self.path, use_mmap=mmap)
        try:
            if self._source.size < PREAMBLE_BYTES:
                raise FormatError(f"{self.path}: {self._source.size} bytes is shorter than the preamble")
            self._entries, self.metadata, self._data_start, self._data_end = _parse(self._source, self.path)
        except BaseException:
            self._source.close()
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
        if self._source.closed:
            raise InvalidArgumentError(f"{self.path}: the file is closed")
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
        return self._stored(name, borrow=False)

    def _stored_all(self, threads: int | None = None) -> dict[str, Any]:
        """Every tensor as ``_stored(name, borrow=True)`` gives it, after one check that the file
        is unchanged; the payload checksums are computed side by side on the shared pool before
        any payload is parsed, except those of :meth:`_stream_checked` tensors, which their
        decode verifies (call :meth:`_verify_deferred` when that decode fails)."""
        spans = {}
        for name in self:
            entry = self.entry(name)
            start = self._data_start + entry["offset"]
            end = start + entry["length"]
            spans[name] = (start, end, self._padded_end(end))
        self._source.check_unchanged()
        # Lossless payloads stay views; the others are copied first, so the bytes parsed are the
        # bytes summed.
        payloads = {
            name: view if self.entry(name)["method"] == lossless.METHOD else bytes(view)
            for name, view in ((n, self._source.view(a, b, checked=True)) for n, (a, b, _) in spans.items())
        }
        summed = [name for name in payloads if not self._stream_checked(name)]
        sums = _core.crc32c_many([payloads[n] for n in summed], entropy.check_threads(threads))
        crcs = dict(zip(summed, sums, strict=True))
        stored = {}
        for name, (_, end, padded) in spans.items():
            padding = self._source.view(end, padded, checked=True)
            stored[name] = self._build(name, payloads[name], padding, crcs.get(name), borrow=True)
        return stored

    def _stream_checked(self, name: str) -> bool:
        """Whether every byte of tensor ``name``'s payload lies in an entropy stream whose header
        and chunk checksums its decode verifies (a lossless tensor of coded planes): its payload
        checksum, a second pass over the same bytes, is then only computed when parsing or
        decoding it fails, to name the tensor in a ``ChecksumError``."""
        entry = self.entry(name)
        params = entry["params"]
        return (
            entry["method"] == lossless.METHOD
            and isinstance(params, dict)
            and params.get("transform") in lossless.TRANSFORMS
            and params.get("transform") != lossless.VERBATIM
        )

    def _verify_deferred(self, names: Any) -> None:
        """Raise ``ChecksumError`` for the first of ``names`` whose payload fails its checksum."""
        for name in names:
            if self._stream_checked(name):
                entry = self.entry(name)
                start = self._data_start + entry["offset"]
                self._check_crc(name, _core.crc32c(self._source.view(start, start + entry["length"])))

    def _check_crc(self, name: str, crc: int) -> None:
        if crc != self.entry(name)["crc32c"]:
            raise ChecksumError(f"{self.path}: payload of tensor {name!r} fails its checksum")

    def _stored(self, name: str, *, borrow: bool) -> Any:
        """:meth:`compressed`; with ``borrow`` a lossless tensor's planes are views into the
        mapping instead of copies (for a decode done at once)."""
        entry = self.entry(name)
        start = self._data_start + entry["offset"]
        end = start + entry["length"]
        padding = self._source.read(end, self._padded_end(end))
        borrow = borrow and entry["method"] == lossless.METHOD
        # A copy is summed and then parsed, so what is parsed is what was checked.
        payload = self._source.view(start, end) if borrow else self._source.read(start, end)
        return self._build(name, payload, padding, _core.crc32c(payload), borrow=borrow)

    def _padded_end(self, end: int) -> int:
        """Where the zero padding after a payload ending at ``end`` ends: at the next aligned
        offset, or where the payloads end (the end of the file, or the start of a trailing header)."""
        return min(self._data_start + align(end - self._data_start), self._data_end)

    def _build(self, name: str, payload: Any, padding: Any, crc: int | None, *, borrow: bool) -> Any:
        """Tensor ``name`` from its payload (a view into the file) and the zero padding after it,
        whose checksum is ``crc``: checked, then parsed and validated against its entry. With
        ``crc=None`` (a :meth:`_stream_checked` tensor) the checksum is computed only if parsing
        fails, so that a damaged payload is still reported as one."""
        entry = self.entry(name)
        # The zero padding after a payload belongs to it: a flipped padding bit is corruption too.
        if any(padding):
            raise CorruptDataError(f"{self.path}: non-zero padding after tensor {name!r}")
        if crc is not None:
            self._check_crc(name, crc)
        borrow = borrow and entry["method"] == lossless.METHOD
        try:
            if borrow:
                obj = lossless.CompressedTensor.from_parts(entry["params"], payload, borrow=True)
                methods.check_max_size(obj, self.max_size)
            else:
                obj = methods.from_parts(entry["method"], entry["params"], payload, max_size=self.max_size)
            _check_summary(entry, obj, self.path)
        except FormatError as exc:
            if crc is None:
                self._check_crc(name, _core.crc32c(payload))
            raise type(exc)(f"{self.path}: tensor {name!r}: {exc}") from None
        return obj

    @property
    def closed(self) -> bool:
        return self._source.closed

    def read_all(
        self,
        *,
        as_kind: str | None = None,
        device: str | None = None,
        progress: bool = False,
        threads: int | None = None,
        out: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Every tensor decoded, as :func:`load` gives them (its arguments mean the same; this
        file's ``max_size`` bounds all tensors together)."""
        base.check_as_kind(as_kind)
        # Lossless planes are borrowed from the mapping: decoded below, before the file closes.
        stored = self._stored_all(threads)
        total = sum(int(obj.decoded_nbytes) for obj in stored.values())
        if self.max_size is not None and total > self.max_size:
            raise FormatError(
                f"{self.path}: tensors decode to {total:,} bytes, more than max_size={self.max_size:,}"
            )
        targets = dict(out or {})
        unknown = set(targets) - set(stored)
        if unknown:
            raise InvalidArgumentError(f"out names tensors {sorted(unknown)} that {self.path} does not hold")
        try:
            if progress:
                return {
                    name: _decode_into(stored[name], targets[name], threads)
                    if name in targets
                    else tensors.decompress(stored[name], as_kind=as_kind, device=device, threads=threads)
                    for name in _progress(list(stored), progress, "decompress")
                }
            return _decode_all(stored, targets, as_kind, device, threads)
        except (FormatError, CorruptDataError):
            # Name the damaged tensor where its payload checksum was left to the decode.
            self._verify_deferred(stored)
            raise

    def read_into(self, name: str, out: Any, *, threads: int | None = None) -> Any:
        """Decode tensor ``name`` straight into ``out`` (a C-contiguous numpy array or torch CPU
        tensor of its dtype and shape, caller-owned: preallocated or pinned memory) and return
        ``out``. Lossless tensors are decoded and merged in place, with no intermediate copy."""
        return _decode_into(self.compressed(name), out, threads)

    def close(self) -> None:
        self._source.close()

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
    if not name.isascii():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise FormatError(f"{what}: tensor name {name!r} is not valid Unicode (lone surrogate)") from None
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


def _parse(buf: FileSource, path: Path) -> tuple[list[dict[str, Any]], dict[str, str], int, int]:
    """``(entries, metadata, D, E)``: the payloads tile the bytes [D, E) of the file."""
    size = len(buf)
    magic, major, minor, flags, header_len, header_crc, preamble_crc = PREAMBLE.unpack(buf[:PREAMBLE_BYTES])
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
    trailing = bool(flags & FLAG_TRAILING_HEADER)
    header_start = _header_location(buf, header_len, path) if trailing else PREAMBLE_BYTES
    if header_len > MAX_HEADER_BYTES or header_start + header_len > size:
        raise FormatError(f"{path}: header length {header_len} exceeds the limit or the file (truncated?)")
    header = buf[header_start : header_start + header_len]
    if _core.crc32c(header) != header_crc:
        raise ChecksumError(f"{path}: header checksum mismatch")
    if flags & FLAG_ZLIB_HEADER:
        header = inflate_header(header, f"{path}: header")
    doc = base.parse_json(header, f"{path}: header")
    if not isinstance(doc, dict) or not isinstance(doc.get("tensors"), list):
        raise FormatError(f"{path}: malformed header: no list of tensors")
    metadata = doc.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FormatError(f"{path}: metadata must map strings to strings")
    entries = [_parse_entry(i, e, path) for i, e in enumerate(doc["tensors"])]
    if trailing:
        data_start, data_end = TRAILING_DATA_START, header_start
    else:
        data_start, data_end = align(PREAMBLE_BYTES + header_len), size
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
        if offset != align(end):
            raise FormatError(
                f"{path}: payload of {name!r} at {offset} breaks the tiling (expected {align(end)})"
            )
        end = offset + length
    if (entries or trailing) and data_start + end != data_end:
        where = f"payloads end at byte {data_end}" if trailing else f"file is {size} bytes"
        raise FormatError(f"{path}: {where}, its header describes {data_start + end} (truncated?)")
    return entries, metadata, data_start, data_end


def _header_location(buf: FileSource, header_len: int, path: Path) -> int:
    """Where the trailing header of a :data:`FLAG_TRAILING_HEADER` file starts, from bytes
    [32, 64): checked, and the header must end the file."""
    size = len(buf)
    if size < TRAILING_DATA_START:
        raise FormatError(f"{path}: {size} bytes is shorter than the 64-byte preamble (truncated?)")
    location = buf[PREAMBLE_BYTES:TRAILING_DATA_START]
    header_offset, reserved, crc = HEADER_LOCATION.unpack(location)
    if _core.crc32c(location[:-4]) != crc:
        raise ChecksumError(f"{path}: preamble checksum mismatch (header offset)")
    if any(reserved):
        raise FormatError(f"{path}: reserved preamble bytes are not zero")
    ends_file = header_offset >= TRAILING_DATA_START and header_offset + header_len == size
    if header_len > MAX_HEADER_BYTES or not ends_file:
        raise FormatError(
            f"{path}: header length {header_len} at offset {header_offset} does not end the "
            f"{size}-byte file (truncated?)"
        )
    return int(header_offset)


def open(
    path: str | os.PathLike[str],
    *,
    as_kind: str | None = None,
    device: str | None = None,
    max_size: int | None = None,
    mmap: bool = True,
) -> TpzFile:
    """Open a ``.tpz`` file for lazy, per-tensor random access (see :class:`TpzFile`;
    ``max_size`` bounds the decoded bytes of each tensor; ``mmap=False`` reads with ``pread``,
    for files other programs may rewrite while they are open)."""
    return TpzFile(path, as_kind=as_kind, device=device, max_size=max_size, mmap=mmap)


def load(
    path: str | os.PathLike[str],
    *,
    as_kind: str | None = None,
    device: str | None = None,
    max_size: int | None = None,
    progress: bool = False,
    mmap: bool = True,
    threads: int | None = None,
    out: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Read every tensor of a ``.tpz`` (or ``.safetensors``) file, decoded.

    ``out`` maps tensor names to caller-owned arrays/CPU tensors of the right dtype and shape
    (preallocated model parameters, pinned memory): those tensors are decoded straight into
    them and returned as given. Arrays already written once load fastest: their pages need no
    clearing, and large float tensors are written with streaming stores (benches/RESULTS.md
    §2). ``threads`` bounds the decode workers (default: all cores).

    Tensors come back as the kind they were saved from (numpy or torch) unless ``as_kind`` says
    otherwise; torch tensors go to ``device``, or to their recorded device when this machine has
    it (else to the CPU, with a warning). ``max_size`` bounds the decoded bytes of all tensors
    together and is checked against every header before anything is decoded.

    The lossless tensors decoded on the CPU (those not given in ``out``) share one allocation,
    carved into 64-byte aligned arrays: it is freed once none of them is referenced, as the
    tensors of a memory-mapped safetensors file share its mapping. Copy a tensor to keep it alone.
    """
    path = Path(path)
    base.check_as_kind(as_kind)
    if _is_safetensors(path):
        if out:
            raise InvalidArgumentError("out= applies to .tpz files; a .safetensors file is read as a whole")
        arrays, _ = safetensors_io.load_file(path, max_size=max_size)
        if as_kind == "torch":
            return {k: tensors.from_numpy(v, "torch", device) for k, v in arrays.items()}
        return arrays
    with TpzFile(path, max_size=max_size, mmap=mmap) as f:
        return f.read_all(as_kind=as_kind, device=device, progress=progress, threads=threads, out=out)


#: Environment variable: ``0`` (or ``off``, ``false``) carves :func:`load`'s outputs from 4 KiB
#: pages instead of transparent huge pages. Huge pages load a model faster within a process,
#: but some virtual machines hand a fresh process its huge pages slowly: the first load of a
#: model in a new process can then take twice as long (benches/RESULTS.md §2).
HUGE_PAGES_ENV = "TENSORPRESS_HUGE_PAGES"


def _huge_pages() -> bool:
    value = os.environ.get(HUGE_PAGES_ENV, "").strip().lower()
    if value in ("", "1", "on", "true"):
        return True
    if value in ("0", "off", "false"):
        return False
    raise InvalidArgumentError(f"{HUGE_PAGES_ENV}={value!r}: use 1 (huge pages, the default) or 0")


def _arena(nbytes: int) -> np.ndarray:
    """``nbytes`` of fresh, uninitialised memory: from numpy (which advises transparent huge
    pages above 4 MB), or an anonymous mapping advised against them (:data:`HUGE_PAGES_ENV`)."""
    if _huge_pages():
        return np.empty(nbytes, np.uint8)
    import mmap

    pages = mmap.mmap(-1, nbytes)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):  # Linux; elsewhere there is nothing to advise against
        pages.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(pages, np.uint8)  # keeps the mapping alive while any view lives


def _arena_arrays(stored: dict[str, Any]) -> dict[str, np.ndarray]:
    """Empty output arrays for ``stored``, carved (64-byte aligned) out of one allocation.

    One large allocation gets transparent huge pages (numpy asks for them above 4 MB), where a
    model's many tensors of 0.2–2 MB would each be fresh 4 KiB-page mappings: page faults then
    cost as much as decoding. The arrays share that memory, which is freed once none of them is
    referenced any more (as the tensors of a memory-mapped safetensors file share its mapping)."""
    sizes = {name: int(obj.decoded_nbytes) for name, obj in stored.items()}
    arena = _arena(sum(align(n) for n in sizes.values()) + ALIGNMENT)
    at = -arena.ctypes.data % ALIGNMENT
    out = {}
    for name, obj in stored.items():
        view = arena[at : at + sizes[name]].view(tensors.dtype_from_name(obj.dtype))
        out[name] = view.reshape(obj.shape)
        at += align(sizes[name])
    return out


def _decode_into(obj: Any, out: Any, threads: int | None) -> Any:
    """Decode ``obj`` into the caller's ``out``: in place for lossless tensors, else decoded and
    copied (other methods produce their values in their own buffers)."""
    if isinstance(obj, lossless.CompressedTensor):
        return obj.decode(threads=threads, out=out)
    value = tensors.decompress(
        obj, as_kind="torch" if tensors.is_torch_tensor(out) else "numpy", threads=threads
    )
    if tuple(value.shape) != tuple(out.shape) or value.dtype != out.dtype:
        raise InvalidArgumentError(
            f"out must be {value.dtype} of shape {tuple(value.shape)}, got {out.dtype} of {tuple(out.shape)}"
        )
    if tensors.is_torch_tensor(out):
        out.copy_(value)
    else:
        np.copyto(out, value)
    return out


def _decode_all(
    stored: dict[str, Any],
    targets: dict[str, Any],
    as_kind: str | None,
    device: str | None,
    threads: int | None,
) -> dict[str, Any]:
    """Every tensor, in file order. The lossless ones bound for the CPU are decoded in one call,
    every chunk of every tensor a work item on the thread pool (a model of many small tensors
    still loads on every core), straight into their output arrays; those bound for a CUDA device
    are decoded there (only their compressed bytes are uploaded)."""
    items = []
    cpu_bound = {
        name: obj
        for name, obj in stored.items()
        if isinstance(obj, lossless.CompressedTensor)
        and (name in targets or not base.gpu_decode_target(obj.kind, obj.device, as_kind, device))
    }
    fresh = _arena_arrays({name: obj for name, obj in cpu_bound.items() if name not in targets})
    for name, obj in cpu_bound.items():
        if name in targets:
            obj.check_out(targets[name])
            dst = targets[name]
        else:
            dst = fresh[name]
        if obj.transform == lossless.VERBATIM:
            obj.decode(out=dst)  # a copy of its bytes
        else:
            items.append(([p.blob for p in obj.planes], obj.transform, dst))
    entropy.decode_planes_many(items, threads)
    result: dict[str, Any] = {}
    for name, obj in stored.items():
        if name in fresh:
            result[name] = base.deliver(fresh[name], obj.kind, obj.device, as_kind, device)
        elif name in targets:
            lossless_done = isinstance(obj, lossless.CompressedTensor)
            result[name] = targets[name] if lossless_done else _decode_into(obj, targets[name], threads)
        else:
            result[name] = tensors.decompress(obj, as_kind=as_kind, device=device, threads=threads)
    return result


__all__ = [
    "ALIGNMENT",
    "FLAG_TRAILING_HEADER",
    "FLAG_ZLIB_HEADER",
    "MAGIC",
    "MAX_HEADER_BYTES",
    "TpzFile",
    "TpzWriter",
    "align",
    "atomic_write",
    "header_entry",
    "inflate_header",
    "load",
    "open",
    "save",
]
