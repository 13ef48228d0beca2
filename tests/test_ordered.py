"""tensorpress.ordered.map_in_order: results in input order, inputs pulled lazily, errors stop it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tensorpress.ordered import map_in_order


def test_results_come_in_input_order_and_inputs_are_pulled_lazily() -> None:
    pulled: list[int] = []

    def items() -> Iterator[int]:
        for i in range(20):
            pulled.append(i)
            yield i

    def slow_first(i: int) -> int:
        time.sleep(0.02 if i % 3 == 0 else 0)
        return i * i

    with map_in_order(slow_first, items(), workers=3, ahead=4, name="t") as results:
        first = next(results)
        assert first == 0 and len(pulled) == 4  # never more than `ahead` pulled before a result
        assert [first, *results] == [i * i for i in range(20)]


def test_an_error_cancels_the_calls_not_started() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def fn(i: int) -> int:
        with lock:
            started.append(i)
        if i == 1:
            raise ValueError("boom")
        time.sleep(0.01)
        return i

    with (
        pytest.raises(ValueError, match="boom"),
        map_in_order(fn, range(100), workers=2, ahead=3, name="t") as r,
    ):
        list(r)
    assert len(started) < 10
