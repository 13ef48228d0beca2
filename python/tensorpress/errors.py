"""Exception types. Every error tensorpress raises on purpose is a :class:`TensorpressError`.

Data errors (bytes that are not what they claim) also subclass :class:`ValueError`, and a missing
optional backend also subclasses :class:`ImportError`, so generic handlers keep working.
"""

from __future__ import annotations


class TensorpressError(Exception):
    """Base class of all tensorpress errors."""


class FormatError(TensorpressError, ValueError):
    """The bytes are not a tensorpress stream/container this version reads (magic, version,
    reserved flags, impossible header fields, truncation)."""


class CorruptDataError(TensorpressError, ValueError):
    """The header is well formed but the payload cannot be what an encoder wrote."""


class ChecksumError(CorruptDataError):
    """A stored checksum does not match the bytes."""


class InvalidArgumentError(TensorpressError, ValueError):
    """An option or argument is out of range or inconsistent."""


class InvalidTypeError(InvalidArgumentError, TypeError):
    """An argument has a type tensorpress cannot take (also a TypeError, as Python expects)."""


class FileChangedError(CorruptDataError):
    """A file changed (size, identity or modification time) while tensorpress had it open."""


class WriteError(TensorpressError, OSError):
    """Writing a file failed; the message and ``filename`` name the destination."""


class RankFailedError(TensorpressError, RuntimeError):
    """Another rank of a multi-rank job failed; the message names it and its error. Raised on
    every surviving rank at the next point where the ranks meet, instead of waiting for the
    process group's timeout."""


class BackendUnavailableError(TensorpressError, ImportError):
    """An optional backend (torch, PyAV, PyNvVideoCodec, ...) is not installed or cannot run."""

    def __init__(self, message: str, *, extra: str | None = None) -> None:
        if extra:
            message = f"{message} (install it with: pip install 'tensorpress[{extra}]')"
        super().__init__(message)
        self.extra = extra


__all__ = [
    "BackendUnavailableError",
    "ChecksumError",
    "CorruptDataError",
    "FileChangedError",
    "FormatError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "RankFailedError",
    "TensorpressError",
    "WriteError",
]
