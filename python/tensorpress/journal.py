"""The journal of a streamed compression: which output shards are finished, so that a killed run
restarts at the first unfinished one (:func:`tensorpress.streaming.compress_folder`).

One small JSON record per finished shard in ``out/.tensorpress-journal/`` — one file per shard,
so ranks on a shared filesystem never write the same file — holding the shard's size, its
SHA-256 and the fingerprint of the job (source tensors and files, options, shard plan). A record
of another job, or a shard whose bytes changed, is not trusted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tensorpress import _core, container

if TYPE_CHECKING:
    from tensorpress.safetensors_stream import SourceTensor
    from tensorpress.streaming import OutputShard

#: Folder (inside the output folder) holding one record per finished shard.
JOURNAL_DIR = ".tensorpress-journal"
_CHUNK = 16 << 20


class Journal:
    """One small JSON record per finished shard in ``out/.tensorpress-journal/`` (one file per
    shard, so ranks on a shared filesystem never write the same file)."""

    def __init__(self, out: Path, fingerprint: str) -> None:
        self.dir = out / JOURNAL_DIR
        self.fingerprint = fingerprint

    def _record(self, shard: str) -> Path:
        return self.dir / f"{shard}.done"

    def record(self, shard: str, size: int, sha256: str, tensors_: int) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        doc = {"fingerprint": self.fingerprint, "file": shard, "size": size, "sha256": sha256}
        doc["tensors"] = tensors_
        text = json.dumps(doc, sort_keys=True).encode()
        container.atomic_write(self._record(shard), lambda f: f.write(text))

    def finished(self, out: Path, shard: str, *, rehash: bool = True) -> bool:
        """True when ``shard`` was recorded by this job and its file still has the recorded size
        and SHA-256 (a shard from another job, or a damaged one, is redone). ``rehash=False``
        checks the record and the size only (a shard written moments ago by this job)."""
        path = self._record(shard)
        if not path.is_file():
            return False
        try:
            doc = json.loads(path.read_bytes())
        except (ValueError, OSError):
            return False
        if not isinstance(doc, dict) or doc.get("fingerprint") != self.fingerprint:
            return False
        target = out / shard
        try:
            if target.stat().st_size != doc.get("size"):
                return False
        except FileNotFoundError:
            return False
        return not rehash or bool(_sha256(target) == doc.get("sha256"))

    def remove(self) -> None:
        if self.dir.is_dir():
            for p in self.dir.iterdir():
                p.unlink(missing_ok=True)
            self.dir.rmdir()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(
    items: Sequence[SourceTensor], shards: Sequence[OutputShard], options: Mapping[str, Any]
) -> str:
    """What identifies a job: the source tensors (file, name, dtype, shape, byte range, file size
    and mtime), the options and the shard plan. A journal of another job is not trusted."""
    files = sorted({t.file for t in items})
    doc = {
        "version": _core.__version__,
        "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files],
        "tensors": [[t.file.name, t.name, t.dtype, list(t.shape), t.start, t.end] for t in items],
        "options": dict(options),
        "shards": [[s.file, [t.name for t in s.tensors]] for s in shards],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


__all__ = ["JOURNAL_DIR", "Journal", "fingerprint"]
