from __future__ import annotations

import os

import pytest

from autounet.errors import AutounetError
from autounet.progress import parallel_map


def _square(x: int) -> int:
    return x * x


def _die(x: int) -> int:
    if x == 2:
        os._exit(1)  # simulates a native crash: no Python exception reaches the pool
    return x


@pytest.mark.parametrize("processes", [1, 2])
def test_parallel_map_keeps_order(processes: int) -> None:
    assert parallel_map(_square, list(range(7)), processes, "Squaring") == [x * x for x in range(7)]


def test_dead_worker_becomes_one_line_error() -> None:
    with pytest.raises(AutounetError, match="worker process died"):
        parallel_map(_die, [1, 2, 3, 4], 2, "Testing")
