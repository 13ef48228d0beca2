"""Atomic file writes: readers see the old file or the new one, never a partial one.

``write(file)`` runs on a temporary file in the destination's directory, which is flushed,
fsynced and renamed over the destination; the directory is fsynced after the rename. Guarantees
and their limits:

- An exception, Ctrl-C (SIGINT) or SIGTERM during the write removes the temporary file and
  leaves the destination untouched. SIGTERM is then re-delivered with the previous handler, so
  the process still ends the way its owner expects.
- SIGKILL or a power loss cannot be intercepted: the temporary file
  (``.NAME.PID.XXXX.tmp``) stays behind, but the destination is intact. The next write to the
  same destination removes temporary files whose writing process no longer exists.
- A missing parent directory is an error (a typo in a path should not create directories).
- A destination that is a symbolic link is written *through*: the link stays a link and its
  target file is replaced atomically (as editors do).
- Errors name the destination, not the hidden temporary file.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tensorpress.errors import InvalidArgumentError, WriteError

_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


class _Terminated(BaseException):
    """Raised inside a write when SIGTERM arrives, so that the temporary file is removed."""


def resolve_destination(path: str | os.PathLike[str]) -> Path:
    """The file a write to ``path`` replaces: ``path`` itself, or a symlink's final target.

    InvalidArgumentError when the parent directory is missing or ``path`` is a directory.
    """
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    if path.is_dir():
        raise InvalidArgumentError(f"{path}: is a directory, expected a file path")
    if not path.parent.is_dir():
        raise InvalidArgumentError(f"{path}: parent directory {path.parent} does not exist")
    return path


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], None]) -> Path:
    """Run ``write(binary_file)`` on a temporary file beside ``path``, then rename it over
    ``path`` (see the module docstring for the guarantees). Returns the path written."""

    def write_file(tmp_name: str, fd: int) -> None:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())

    return _atomic(path, write_file)


def atomic_write_path(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """As :func:`atomic_write`, for writers that take a file name (e.g. a library's
    ``save_file``): ``write(temporary_path)`` must create the whole file."""

    def write_named(tmp_name: str, fd: int) -> None:
        os.close(fd)
        write(tmp_name)
        fd_again = os.open(tmp_name, os.O_RDONLY)
        try:
            os.fsync(fd_again)
        finally:
            os.close(fd_again)

    return _atomic(path, write_named)


def _atomic(path: str | os.PathLike[str], write: Callable[[str, int], None]) -> Path:
    target, fd, tmp_name = _temporary(path)
    try:
        with _terminate_cleanly():
            write(tmp_name, fd)
            os.replace(tmp_name, target)
    except BaseException as exc:
        _discard(tmp_name, target, exc)
        raise
    _fsync_directory(target.parent)
    return target


class AtomicFile:
    """A file written over time, for writers that cannot be one ``write(file)`` call (a shard
    filled as tensors arrive): :attr:`file` is a temporary file beside the destination, opened
    for reading and writing; :meth:`commit` flushes, fsyncs and renames it over the destination,
    :meth:`abort` removes it. Same guarantees as :func:`atomic_write`, except that SIGTERM is
    left to the caller between calls (the next write to the destination removes the temporary
    file of a process that no longer runs)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.target, fd, self._tmp_name = _temporary(path)
        self.file = os.fdopen(fd, "w+b")
        self._done = False

    def commit(self) -> Path:
        """Make the written bytes the destination's; returns the destination."""
        if self._done:
            raise InvalidArgumentError(f"{self.target}: this write was already committed or aborted")
        self._done = True
        try:
            with _terminate_cleanly():
                self.file.flush()
                os.fsync(self.file.fileno())
                self.file.close()
                os.replace(self._tmp_name, self.target)
        except BaseException as exc:
            self.file.close()
            _discard(self._tmp_name, self.target, exc)
            raise
        _fsync_directory(self.target.parent)
        return self.target

    def abort(self) -> None:
        """Remove the temporary file; the destination stays as it was (no-op after commit)."""
        if self._done:
            return
        self._done = True
        self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp_name)


# sync_file_range(2) flag: start writing the range's dirty pages back, do not wait.
_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` where the platform has it (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def start_writeback(file: Any, start: int, end: int) -> None:
    """Ask the kernel to start writing bytes [start, end) of ``file`` to disk now, without
    waiting, so that the fsync of an atomic write that follows waits only for the tail. A hint:
    it does nothing where the platform or the file (no descriptor) does not support it, and its
    errors are ignored (the fsync reports real ones)."""
    fn = _sync_file_range()
    if fn is None or end <= start:
        return
    try:
        file.flush()
        fn(file.fileno(), start, end - start, _SYNC_FILE_RANGE_WRITE)
    except (OSError, AttributeError, ValueError):
        pass


def _temporary(path: str | os.PathLike[str]) -> tuple[Path, int, str]:
    """``(destination, fd, name)`` of a new temporary file beside ``path``'s destination."""
    target = resolve_destination(path)
    _remove_stale_temporaries(target)
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent
        )
    except OSError as exc:
        raise WriteError(exc.errno, f"cannot write {target}: {exc.strerror}", str(target)) from None
    try:
        os.chmod(tmp_name, _new_file_mode(target))
    except OSError as exc:
        os.close(fd)
        _discard(tmp_name, target, exc)
        raise
    return target, fd, tmp_name


def _discard(tmp_name: str, target: Path, exc: BaseException) -> None:
    """After a failed write: remove the temporary file, re-deliver SIGTERM, and turn an OSError
    into a WriteError naming the destination (the caller re-raises what this does not)."""
    with contextlib.suppress(OSError):
        os.unlink(tmp_name)
    if isinstance(exc, _Terminated):
        _redeliver_sigterm()
    if isinstance(exc, OSError) and not isinstance(exc, WriteError):
        raise WriteError(
            exc.errno or errno.EIO, f"cannot write {target}: {exc.strerror or exc}", str(target)
        ) from exc


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """Turn SIGTERM into an exception while the block runs (main thread, default handler only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        yield  # someone else handles SIGTERM: leave it to them
        return

    def raise_terminated(signum: int, frame: Any) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _redeliver_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _remove_stale_temporaries(target: Path) -> None:
    """Remove ``.NAME.PID.*.tmp`` files left beside ``target`` by processes that no longer run."""
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return
    for sibling in siblings:
        match = _TEMP_NAME.match(sibling.name)
        if match is None or match["name"] != target.name or _process_exists(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            sibling.unlink()


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists but not ours, or not a pid at all: leave the file alone
    return True


def _fsync_directory(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
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
        return 0o666 & ~_current_umask()


def _current_umask() -> int:
    # os.umask can only be read by setting it; /proc avoids even a momentary change.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


__all__ = ["AtomicFile", "atomic_write", "atomic_write_path", "resolve_destination"]
