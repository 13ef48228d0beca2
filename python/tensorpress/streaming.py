"""Compress checkpoints larger than memory: tensor by tensor, in parallel, resumable, on N ranks.

:func:`compress_folder` reads a (sharded) safetensors folder one tensor at a time
(:mod:`tensorpress.safetensors_stream`), compresses it, and appends it to the ``.tpz`` shard it
belongs to, so the resident set is a few tensors and the encoders' working sets, never the model.
The output is what :func:`tensorpress.save_pretrained` writes (``model.tpz``, or
``model-0000i-of-0000N.tpz`` plus ``model.tpz.index.json``), read by
:func:`tensorpress.from_pretrained`; given the same shard layout it is byte-identical to the
in-memory path.

- **Shards are planned before anything is compressed**, from the source's tensor sizes alone
  (greedy in source order up to ``max_shard_size`` source bytes). The layout therefore depends
  neither on the number of threads nor on the number of ranks: 1 worker and 64 machines write the
  same bytes.
- **Threads**: ``workers`` tensors are compressed at once (the Rust entropy coder releases the
  GIL); results are written in source order, so the bytes equal a sequential run.
- **Ranks** (:mod:`tensorpress.streaming_dist`): each rank writes a disjoint, deterministic set
  of shards into the shared output folder; rank 0 writes the index once all are journaled.
- **Resume**: each finished shard is recorded in ``.tensorpress-journal/`` (size and SHA-256 of
  the file, and a fingerprint of the source, options and shard plan). A restarted run skips
  shards whose file still matches its record; the journal is removed when the job completes.

Each payload goes straight into the shard's temporary file as soon as it is coded (the ``.tpz``
header, which holds the payloads' lengths and checksums, follows them: docs/format.md §2), and
the shard is renamed into place once complete: every byte is written once, as
:func:`tensorpress.save` writes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tensorpress import container, hf_folder, methods, tensors
from tensorpress.atomic import AtomicFile
from tensorpress.errors import FormatError, InvalidArgumentError, RankFailedError
from tensorpress.hf import RECIPE_KEY
from tensorpress.journal import JOURNAL_DIR, Journal, fingerprint
from tensorpress.models import ALIASES_KEY, CONSTRAINT_KEY, PLANS_KEY
from tensorpress.ordered import map_in_order
from tensorpress.safetensors_stream import SourceTensor, folder_tensors, read_tensor

#: Default largest output shard, in *source* bytes (output sizes are unknown until compressed).
DEFAULT_MAX_SHARD_BYTES = 2 << 30


#: Stored tensor classes that predate the ``method`` attribute, by class name.
class Comm(Protocol):
    """What a group of ranks offers: its size, this rank, an all-gather of small objects and a
    barrier (:class:`tensorpress.streaming_dist.TorchComm` over ``torch.distributed``)."""

    rank: int
    world_size: int

    def all_gather(self, obj: Any) -> list[Any]: ...

    def barrier(self) -> None: ...


class SingleProcess:
    """The trivial group of one rank."""

    rank = 0
    world_size = 1

    def all_gather(self, obj: Any) -> list[Any]:
        return [obj]

    def barrier(self) -> None:
        pass


_T = TypeVar("_T")


def gather_or_fail(comm: Comm, work: Callable[[], _T], what: str) -> list[_T]:
    """Run ``work`` on this rank, then all-gather its result with every rank's. A rank whose work
    raised still takes part in the gather (sending its error), so the others raise
    :class:`RankFailedError` at once instead of blocking until the group's timeout; the failed
    rank re-raises its own exception. Returns every rank's result, in rank order."""
    try:
        result, status = work(), None
    except Exception as exc:  # handed to the other ranks, then re-raised here
        result, status, error = None, f"{type(exc).__name__}: {exc}", exc
    gathered = comm.all_gather((status, result))
    if status is not None:
        raise error
    failed = [f"rank {r}: {s}" for r, (s, _) in enumerate(gathered) if s is not None]
    if failed:
        raise RankFailedError(f"{what} failed on another rank ({'; '.join(failed)[:2000]})")
    return [r for _, r in gathered]


# --- the shard plan --------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputShard:
    """One ``.tpz`` file of the output: its name and its tensors, in source order."""

    file: str
    tensors: tuple[SourceTensor, ...]

    @property
    def source_nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


def plan_shards(items: Sequence[SourceTensor], max_shard_size: int) -> list[OutputShard]:
    """Group tensors (in order) into shards of at most ``max_shard_size`` source bytes (a larger
    tensor gets a shard of its own), named as :func:`tensorpress.save_pretrained` names them."""
    if not isinstance(max_shard_size, int) or max_shard_size < 1:
        raise InvalidArgumentError(f"max_shard_size must be a positive int, got {max_shard_size!r}")
    groups: list[list[SourceTensor]] = [[]]
    size = 0
    for t in items:
        if groups[-1] and size + t.nbytes > max_shard_size:
            groups.append([])
            size = 0
        groups[-1].append(t)
        size += t.nbytes
    if len(groups) == 1:
        return [OutputShard(hf_folder.TPZ_WEIGHTS, tuple(groups[0]))]
    n = len(groups)
    return [OutputShard(f"model-{i + 1:05d}-of-{n:05d}.tpz", tuple(g)) for i, g in enumerate(groups)]


def assign_shards(shards: Sequence[OutputShard], world_size: int) -> list[list[int]]:
    """Shard indices per rank: largest first to the least loaded rank (ties: lowest rank), each
    rank's list in file order. Deterministic, so every rank computes the same split."""
    load = [0] * world_size
    owned: list[list[int]] = [[] for _ in range(world_size)]
    for i in sorted(range(len(shards)), key=lambda i: (-shards[i].source_nbytes, i)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        load[rank] += shards[i].source_nbytes
        owned[rank].append(i)
    return [sorted(o) for o in owned]


# --- writing one shard -----------------------------------------------------------------------


class ShardWriter:
    """Writes one ``.tpz`` as tensors arrive: each payload goes to disk as it comes, into a
    temporary file beside the shard that :meth:`finish` completes and renames into place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = AtomicFile(path)
        self._writer = container.TpzWriter(self._file.file)

    def add(self, name: str, encoded: Any) -> None:
        if not methods.is_stored(encoded):
            raise InvalidArgumentError(f"{name!r}: a {type(encoded).__name__} is not a stored tensor")
        self._writer.add(name, encoded)

    def finish(self, metadata: Mapping[str, str]) -> tuple[int, str]:
        """Write the shard; returns its ``(size, sha256 hex)``."""
        try:
            size = self._writer.finish({str(k): str(v) for k, v in metadata.items()})
        except InvalidArgumentError as exc:
            self.abort()
            raise InvalidArgumentError(f"{self.path}: {exc}") from None
        f = self._file.file
        f.flush()
        f.seek(0)
        digest = hashlib.file_digest(f, "sha256").hexdigest()  # the preamble went in last
        self._file.commit()
        return size, digest

    def abort(self) -> None:
        self._file.abort()


# --- compressing a folder --------------------------------------------------------------------


@dataclass
class StreamResult:
    """What :func:`compress_folder` did on this rank, and (rank 0) what the folder holds."""

    path: Path
    files: tuple[str, ...]
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    tensors: int = 0
    values: int = 0
    raw_nbytes: int = 0
    nbytes: int = 0
    constraint: str = "lossless"

    @property
    def bits_per_value(self) -> float:
        return 8 * self.nbytes / self.values if self.values else 0.0


Encoder = Callable[[str, Any], tuple[Any, Any]]


def as_torch_source(obj: Any) -> Any:
    """Record a stored tensor as decoding to a CPU torch tensor, as
    :func:`tensorpress.save_pretrained` records the tensors of a safetensors folder (it loads
    them with torch). The streaming path reads them as numpy arrays instead: importing torch
    alone costs ~600 MB of resident memory, more than a bounded-memory run may spend."""
    if hasattr(obj, "kind") and hasattr(obj, "device"):
        obj.kind, obj.device = "torch", "cpu"
    header = getattr(obj, "_header", None)  # a video-coded tensor keeps its source in its header
    if isinstance(header, dict) and "kind" in header:
        header["kind"], header["device"] = "torch", "cpu"
    return obj


def per_tensor_encoder(
    *,
    lossless: bool | None = None,
    max_rel_error: float | None = None,
    method: str | None = None,
    keep: Iterable[str] = (),
    lossy_vectors: bool = False,
) -> tuple[Encoder, str]:
    """``(encode(name, tensor) -> (compressed, plan or None), constraint text)`` for constraints
    that hold tensor by tensor (lossless, ``max_rel_error``), exactly as
    :func:`tensorpress.hf.compress_state` applies them to a whole state dict."""
    from tensorpress.hf import compress_state

    keep = [keep] if isinstance(keep, str) else list(keep)
    options: dict[str, Any] = {"lossless": lossless, "max_rel_error": max_rel_error, "method": method}
    _, _, constraint = compress_state({}, **options, keep=keep, lossy_vectors=lossy_vectors)

    def encode(name: str, value: Any) -> tuple[Any, Any]:
        packed, plans, _ = compress_state({name: value}, **options, keep=keep, lossy_vectors=lossy_vectors)
        return as_torch_source(packed[name]), plans.get(name)

    return encode, constraint


def compress_folder(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    lossless: bool | None = None,
    max_rel_error: float | None = None,
    method: str | None = None,
    keep: Iterable[str] = (),
    lossy_vectors: bool = False,
    max_shard_size: int = DEFAULT_MAX_SHARD_BYTES,
    workers: int = 1,
    resume: bool = True,
    comm: Comm | None = None,
    progress: Callable[[str], None] | None = None,
    bars: bool = False,
    encoder: Encoder | None = None,
    constraint: str | None = None,
    job: Mapping[str, Any] | None = None,
) -> StreamResult:
    """Compress a safetensors model folder into a tensorpress folder without loading the model.

    Args:
        source: an HF folder with ``model.safetensors`` or a sharded index.
        out_dir: the output folder (shared by every rank).
        lossless, max_rel_error, method, keep, lossy_vectors: as for
            :func:`tensorpress.save_pretrained`; constraints that hold per tensor only (a model
            ``bits_per_value`` budget is :func:`tensorpress.streaming_dist.compress_folder_at_budget`).
        max_shard_size: source bytes per output shard (the layout never depends on workers or ranks).
        workers: tensors compressed at once by this rank (threads).
        resume: skip shards a previous run of the same job finished (journal verified).
        comm: the rank group (default: this process alone).
        progress: called with short status lines; ``bars=True`` also shows tqdm bars (overall and
            per shard, with an ETA) on stderr.
        encoder, constraint, job: a custom per-tensor encoder, its constraint text and what
            identifies its settings in the journal (the budget path, once the allocation is fixed).
    """
    say = _around_bars(progress or (lambda _m: None), bars)
    comm = comm or SingleProcess()
    if not isinstance(workers, int) or workers < 1:
        raise InvalidArgumentError(f"workers must be a positive int, got {workers!r}")
    src, out = Path(source), Path(out_dir)
    if not src.is_dir():
        raise InvalidArgumentError(f"{src}: not a model folder")
    if out.exists() and out.resolve() == src.resolve():
        raise InvalidArgumentError(f"{out}: the output folder must differ from the source folder")
    if encoder is None:
        encoder, constraint = per_tensor_encoder(
            lossless=lossless,
            max_rel_error=max_rel_error,
            method=method,
            keep=keep,
            lossy_vectors=lossy_vectors,
        )
    items = folder_tensors(src)
    if not items:
        raise InvalidArgumentError(f"{src}: the checkpoint holds no tensors")
    shards = plan_shards(items, max_shard_size)
    options: dict[str, Any] = {
        "constraint": constraint,
        "keep": sorted(keep) if not isinstance(keep, str) else [keep],
    }
    options.update({"method": method, "lossy_vectors": lossy_vectors, "max_shard_size": max_shard_size})
    options["job"] = dict(job or {})
    journal = Journal(out, fingerprint(items, shards, options))
    mine = assign_shards(shards, comm.world_size)[comm.rank]
    out.mkdir(parents=True, exist_ok=True)
    result = StreamResult(out, tuple(s.file for s in shards), constraint=constraint or "")
    todo = []
    for i in mine:
        if resume and journal.finished(out, shards[i].file):
            result.skipped.append(shards[i].file)
        else:
            todo.append(shards[i])
    if result.skipped:
        say(f"rank {comm.rank}: {len(result.skipped)} shards already done, {len(todo)} to go")
    meta = {ALIASES_KEY: "{}", CONSTRAINT_KEY: constraint or "", RECIPE_KEY: "{}"}
    mine_bytes = sum(shards[i].source_nbytes for i in mine)
    done_bytes = sum(s.source_nbytes for s in shards if s.file in result.skipped)

    def compress_mine() -> None:
        _run_shards(todo, out, meta, encoder, workers, journal, result, say, bars, mine_bytes, done_bytes)

    gather_or_fail(comm, compress_mine, "compressing shards")
    gather_or_fail(
        comm, lambda: _finish_folder(src, out, shards, journal, say) if comm.rank == 0 else None, "the index"
    )
    result.tensors = len(items)
    result.values = sum(t.numel for t in items)
    result.raw_nbytes = sum(t.nbytes for t in items)
    files = [s.file for s in shards] + ([hf_folder.TPZ_INDEX] if len(shards) > 1 else [])
    result.files = tuple(files)
    result.nbytes = sum((out / s.file).stat().st_size for s in shards)
    return result


def _run_shards(
    todo: Sequence[OutputShard],
    out: Path,
    meta: Mapping[str, str],
    encoder: Encoder,
    workers: int,
    journal: Journal,
    result: StreamResult,
    say: Callable[[str], None],
    bars: bool,
    total_bytes: int,
    done_bytes: int,
) -> None:
    """Compress the shards in ``todo`` with ``workers`` threads, keeping at most ``workers + 1``
    tensors in flight and writing results in source order."""
    overall, per_shard = _bars(bars, total_bytes, done_bytes)
    jobs = [(s, t) for s in todo for t in s.tensors]

    def work(job: tuple[OutputShard, SourceTensor]) -> tuple[Any, Any]:
        return encoder(job[1].name, read_tensor(job[1], as_torch=False))

    writer: ShardWriter | None = None
    plans: dict[str, Any] = {}
    count = 0
    with map_in_order(work, jobs, workers=workers, ahead=workers + 1, name="tensorpress-stream") as results:
        try:
            for (shard, t), (encoded, plan_) in zip(jobs, results, strict=True):
                if writer is None:
                    writer = ShardWriter(out / shard.file)
                    plans, count = {}, 0
                    if per_shard is not None:
                        per_shard.reset(total=shard.source_nbytes)
                        per_shard.set_description(shard.file)
                writer.add(t.name, encoded)
                if plan_ is not None:
                    plans[t.name] = plan_.to_dict()
                count += 1
                del encoded
                for bar in (overall, per_shard):
                    if bar is not None:
                        bar.update(t.nbytes)
                if count == len(shard.tensors):
                    shard_meta = dict(meta)
                    shard_meta[PLANS_KEY] = json.dumps(plans, separators=(",", ":"))
                    size, digest = writer.finish(shard_meta)
                    journal.record(shard.file, size, digest, count)
                    result.written.append(shard.file)
                    say(f"finished {shard.file} ({count} tensors, {size / 1e6:.1f} MB)")
                    writer = None
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            for bar in (per_shard, overall):
                if bar is not None:
                    bar.close()


def _around_bars(say: Callable[[str], None], bars: bool) -> Callable[[str], None]:
    """Status lines printed while the bars are up: tqdm clears them first and redraws after."""
    if not bars:
        return say

    def wrapped(line: str) -> None:
        from tqdm import tqdm

        with tqdm.external_write_mode(file=sys.stderr):
            say(line)

    return wrapped


def _bars(enabled: bool, total: int, done: int) -> tuple[Any, Any]:
    if not enabled:
        return None, None
    from tqdm import tqdm

    overall = tqdm(
        total=total, initial=done, unit="B", unit_scale=True, desc="model", position=0, file=sys.stderr
    )
    per_shard = tqdm(
        total=0, unit="B", unit_scale=True, desc="shard", position=1, leave=False, file=sys.stderr
    )
    return overall, per_shard


def _finish_folder(
    src: Path, out: Path, shards: Sequence[OutputShard], journal: Journal, say: Callable[[str], None]
) -> None:
    """Rank 0, once every rank is done: check every shard is journaled, write the index and the
    side files, remove stale weight files and the journal."""
    for s in shards:  # every rank recorded its shards after writing them (no need to re-read them)
        if not journal.finished(out, s.file, rehash=False):
            raise FormatError(f"{out / s.file}: missing or not matching its journal record after the run")
    names = {s.file for s in shards}
    index = out / hf_folder.TPZ_INDEX
    if len(shards) > 1:
        weight_map = {t.name: s.file for s in shards for t in s.tensors}
        hf_folder.write_json(index, {"metadata": {"format": "tensorpress"}, "weight_map": weight_map})
    else:
        index.unlink(missing_ok=True)
    config_path = src / hf_folder.CONFIG
    cfg = hf_folder.read_json(config_path) if config_path.is_file() else None
    for name in hf_folder.copy_side_files(src, out):
        say(f"copied {name}")
    if cfg is not None:  # normalised as save_pretrained writes it
        hf_folder.write_json(out / hf_folder.CONFIG, cfg)
    for stale in out.iterdir():
        ours = stale.name == hf_folder.TPZ_WEIGHTS or (
            stale.name.startswith("model-") and stale.name.endswith(".tpz")
        )
        if ours and stale.name not in names:
            stale.unlink()
        elif stale.name.startswith(".model") and stale.name.endswith((".spool", ".tmp")):
            stale.unlink()  # left by a killed run
    journal.remove()


def save_pretrained_streaming(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    lossless: bool | None = None,
    max_rel_error: float | None = None,
    bits_per_value: float | None = None,
    method: str | None = None,
    keep: Iterable[str] = (),
    lossy_vectors: bool = False,
    strict: bool = False,
    max_shard_size: int = DEFAULT_MAX_SHARD_BYTES,
    workers: int = 1,
    resume: bool = True,
    comm: Comm | None = None,
    progress: Callable[[str], None] | None = None,
    bars: bool = False,
) -> Any:
    """:func:`tensorpress.save_pretrained` for a safetensors folder, streamed: the constraint goes
    to :func:`compress_folder` (lossless, ``max_rel_error``) or, for a model ``bits_per_value``
    with ``method="video"``, to :func:`tensorpress.streaming_dist.compress_folder_at_budget`.
    ``comm`` defaults to the ranks the environment describes (``torchrun``). Returns a
    :class:`tensorpress.hf.SavedFolder`."""
    from tensorpress.hf import SavedFolder
    from tensorpress.streaming_dist import comm_from_env, compress_folder_at_budget

    if not isinstance(source, str | os.PathLike) or not Path(source).is_dir():
        raise InvalidArgumentError("streaming compresses a model folder (safetensors); got no folder")
    comm = comm or comm_from_env()
    common: dict[str, Any] = {"max_shard_size": max_shard_size, "workers": workers, "resume": resume}
    common.update(
        {"comm": comm, "progress": progress, "bars": bars, "keep": keep, "lossy_vectors": lossy_vectors}
    )
    if bits_per_value is not None:
        if lossless or max_rel_error is not None:
            raise InvalidArgumentError("give one of lossless, max_rel_error, bits_per_value")
        if method != "video":
            raise InvalidArgumentError(
                "a streamed model bits_per_value budget is allocated over video-coded tensors: "
                "pass method='video' (other methods need the whole model in memory: streaming=False)"
            )
        r = compress_folder_at_budget(source, out_dir, bits_per_value, strict=strict, **common)
    else:
        r = compress_folder(
            source, out_dir, lossless=lossless, max_rel_error=max_rel_error, method=method, **common
        )
    return SavedFolder(r.path, r.files, r.tensors, r.values, r.raw_nbytes, r.nbytes, r.constraint)


# --- reading a compressed folder shard by shard ----------------------------------------------


def _shard_names(shard: Path) -> list[str]:
    with container.open(shard) as f:
        return list(f)


def _compressed(shard: Path, name: str) -> Any:
    """One tensor's compressed form (checksum verified). The shard is mapped for this read only:
    pages of a memory-mapped file stay resident while it is mapped, so keeping a multi-GB shard
    open while every tensor is read would grow the resident set to the whole shard."""
    with container.open(shard) as f:
        return f.compressed(name)


def iter_folder(
    folder: str | os.PathLike[str], *, as_kind: str | None = "torch"
) -> Iterator[tuple[str, Any]]:
    """``(name, tensor)`` of a compressed folder, shard by shard, one tensor decoded at a time
    (index checked as :func:`tensorpress.hf.read_folder` checks it)."""
    folder = Path(folder)
    shards, mapping = hf_folder.tpz_shards(folder)
    seen: set[str] = set()
    for shard in shards:
        for name in _shard_names(shard):
            if mapping is not None and mapping.get(name) != shard:
                raise FormatError(
                    f"{folder / hf_folder.TPZ_INDEX}: {shard.name} holds unlisted tensor {name!r}"
                )
            if name in seen:
                raise FormatError(f"{shard}: tensor {name!r} is stored twice")
            seen.add(name)
            yield name, tensors.decompress(_compressed(shard, name), as_kind=as_kind)
    if mapping is not None:
        missing = [n for n in mapping if n not in seen]
        if missing:
            raise FormatError(f"{folder / hf_folder.TPZ_INDEX}: tensor {missing[0]!r} is not in its shard")


def decompress_folder(folder: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> list[str]:
    """A compressed folder back to safetensors, one output shard per ``.tpz`` shard, one tensor
    in memory at a time (plus ``model.safetensors.index.json`` when sharded); returns the files."""
    from tensorpress.safetensors_stream import write_streaming

    src, out = Path(folder), Path(out_dir)
    if out.exists() and out.resolve() == src.resolve():
        raise InvalidArgumentError(f"{out}: the output folder must differ from the input folder")
    shards, _ = hf_folder.tpz_shards(src)
    out.mkdir(parents=True, exist_ok=True)
    names = (
        [hf_folder.SAFETENSORS_WEIGHTS]
        if len(shards) == 1
        else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    weight_map: dict[str, str] = {}
    for shard, name in zip(shards, names, strict=True):
        with container.open(shard) as f:
            entries = f.entries()
        specs = [(e["name"], str(e["dtype"]), list(e["shape"])) for e in entries]
        values = (tensors.decompress(_compressed(shard, e["name"]), as_kind="numpy") for e in entries)
        write_streaming(out / name, specs, values)
        weight_map.update({e["name"]: name for e in entries})
    if len(shards) > 1:
        hf_folder.write_json(
            out / hf_folder.SAFETENSORS_INDEX, {"metadata": {"format": "pt"}, "weight_map": weight_map}
        )
        names.append(hf_folder.SAFETENSORS_INDEX)
    hf_folder.copy_side_files(src, out)
    return names


__all__ = [
    "DEFAULT_MAX_SHARD_BYTES",
    "JOURNAL_DIR",
    "Comm",
    "Journal",
    "OutputShard",
    "ShardWriter",
    "SingleProcess",
    "StreamResult",
    "as_torch_source",
    "assign_shards",
    "compress_folder",
    "decompress_folder",
    "fingerprint",
    "iter_folder",
    "per_tensor_encoder",
    "plan_shards",
    "save_pretrained_streaming",
]
