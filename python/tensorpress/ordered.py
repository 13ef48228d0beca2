"""Calls on a few threads, results in the order of their inputs: what ``tp.save`` and the
streaming folder writer need to encode several tensors at once (the Rust coders release the GIL)
while writing them one after another."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")


@contextlib.contextmanager
def map_in_order(
    fn: Callable[[_T], _R], items: Iterable[_T], *, workers: int, ahead: int, name: str
) -> Iterator[Iterator[_R]]:
    """A context giving ``fn(item)`` for every item, in item order, computed on ``workers``
    threads with at most ``ahead`` items submitted and not yet taken (inputs are pulled lazily,
    so a lazy ``items`` is never read far ahead). Leaving the context early — an exception in the
    consumer or in ``fn`` — cancels the calls not started and waits for the running ones."""
    pending: deque[Future[_R]] = deque()

    def results(pool: ThreadPoolExecutor) -> Iterator[_R]:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        try:
            yield results(pool)
        finally:
            for future in pending:
                future.cancel()


__all__ = ["map_in_order"]
