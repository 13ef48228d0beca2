"""Read-only byte access to an open file that notices when the file changes underneath.

A memory-mapped file that another process truncates kills the reader with SIGBUS on the next
access to a lost page; Python cannot catch that. :class:`FileSource` therefore checks, before
every read, that the open file still has the size, inode and modification time it had when it
was opened, and raises :class:`~tensorpress.errors.FileChangedError` otherwise.

What stays racy with ``mmap=True``: a truncation in the microseconds between that check and the
copy out of the mapping still raises SIGBUS. Files that other programs may rewrite while they are
open (network filesystems, shared scratch space, untrusted sources) should be opened with
``mmap=False``: every read is then a ``pread`` that returns short (a typed error) instead of
faulting. Either way the bytes read are checked by the container's CRC32C, so a change of
content that keeps the size and time is caught as a checksum error.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from pathlib import Path

from tensorpress.errors import FileChangedError, InvalidArgumentError


class FileSource:
    """The bytes of ``path``, read through a memory map (``use_mmap``) or with ``pread``."""

    def __init__(self, path: Path, *, use_mmap: bool = True) -> None:
        if not isinstance(use_mmap, bool):
            raise InvalidArgumentError(f"mmap must be True or False, got {use_mmap!r}")
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            self._identity = self._stat()
            self.size = self._identity[2]
            self._map = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ) if use_mmap and self.size else None
        except BaseException:
            os.close(self._fd)
            raise
        self.closed = False

    def _stat(self) -> tuple[int, int, int, int]:
        st = os.fstat(self._fd)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def check_unchanged(self) -> None:
        """FileChangedError if the open file's size, identity or modification time changed."""
        if self.closed:
            raise InvalidArgumentError(f"{self.path}: the file is closed")
        now = self._stat()
        if now != self._identity:
            raise FileChangedError(
                f"{self.path}: the file changed while open (size {self._identity[2]} -> {now[2]}); "
                "reopen it, and use mmap=False for files other programs may rewrite"
            )

    def __len__(self) -> int:
        return self.size

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) clipped to the file, after checking that the file is unchanged."""
        start, end = self._span(start, end)
        if end <= start:
            return b""
        if self._map is not None:
            return self._map[start:end]
        data = os.pread(self._fd, end - start, start)
        if len(data) != end - start:
            raise FileChangedError(f"{self.path}: the file became shorter while it was read")
        return data

    def view(self, start: int, end: int, *, checked: bool = False) -> bytes | memoryview:
        """As :meth:`read`, but a read-only view into the mapping (no copy) when the file is
        mapped. The view stays valid after :meth:`close` (the mapping is released with its last
        view); a truncation of the file while a view is used still raises SIGBUS, so borrow views
        only for work done at once, as ``tp.load`` does. ``checked``: the caller has just called
        :meth:`check_unchanged` for a batch of views (one ``fstat`` instead of one per view)."""
        if self._map is None:
            return self.read(start, end)
        start, end = self._span(start, end, checked=checked)
        return memoryview(self._map)[start : max(start, end)]

    def _span(self, start: int, end: int, *, checked: bool = False) -> tuple[int, int]:
        """[start, end) clipped to the file, after checking that the file is unchanged."""
        if not checked:
            self.check_unchanged()
        elif self.closed:
            raise InvalidArgumentError(f"{self.path}: the file is closed")
        return max(0, min(start, self.size)), max(0, min(end, self.size))

    def __getitem__(self, key: slice) -> bytes:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("FileSource supports contiguous slices only")
        start = 0 if key.start is None else key.start
        end = self.size if key.stop is None else key.stop
        return self.read(start, end)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._map is not None:
            # Views from `view` still alive keep the mapping: it goes with the last of them.
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None
        os.close(self._fd)


__all__ = ["FileSource"]
