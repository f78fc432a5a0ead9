"""The prepare / compute / finish pipeline: order, bounded look-ahead, errors re-raised unchanged."""

from __future__ import annotations

import threading
import time

import pytest

from autounet.errors import ImageIOError
from autounet.inference._pipeline import run_pipelined


def test_every_item_in_order_with_bounded_lookahead() -> None:
    lock = threading.Lock()
    prepared: list[int] = []
    computed: list[int] = []
    finished: list[int] = []
    max_ahead = 0

    def prepare(item: int) -> int:
        nonlocal max_ahead
        with lock:
            prepared.append(item)
            max_ahead = max(max_ahead, len(prepared) - len(computed))
        return item * 10

    def compute(value: int) -> int:
        time.sleep(0.002)  # let the producer run ahead as far as it may
        with lock:
            computed.append(value // 10)
        return value + 1

    run_pipelined(list(range(8)), prepare, compute, finished.append, wrap=lambda items: list(items))
    assert finished == [i * 10 + 1 for i in range(8)]
    # One item queued, one being prepared, beyond the one being computed.
    assert max_ahead <= 3


@pytest.mark.parametrize("stage", ["prepare", "compute", "finish"])
def test_first_error_is_reraised_unchanged(stage: str, tmp_path) -> None:  # noqa: ANN001
    error = ImageIOError("cannot read image", tmp_path / "b.nii.gz")
    done: list[int] = []

    def step(name: str):  # noqa: ANN202
        def run(value: int) -> int:
            if name == stage and value == 1:
                raise error
            return value
        return run

    with pytest.raises(ImageIOError) as caught:
        run_pipelined([0, 1, 2, 3], step("prepare"), step("compute"), lambda v: done.append(step("finish")(v)))
    assert caught.value is error
    assert done[:1] == [0] and 2 not in done and 3 not in done
    assert not [t for t in threading.enumerate() if t.name.startswith("autounet-")]


def test_rejects_empty_queues() -> None:
    with pytest.raises(ValueError, match="ahead and behind"):
        run_pipelined([1], str, str, print, ahead=0)
