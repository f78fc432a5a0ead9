"""A three-stage pipeline over cases: prepare ahead in a thread, compute here, finish behind in a thread.

Prediction of a folder spends its time in three places: reading + preprocessing (NumPy/SciPy/nibabel), the
network (torch) and export + writing (NumPy/SciPy, gzip). All three release the GIL for their heavy parts,
so threads overlap them without copying arrays between processes. Queues hold at most ``ahead`` prepared
and ``behind`` unfinished cases, which bounds memory to a few cases whatever the folder's size.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["run_pipelined"]

T = TypeVar("T")
P = TypeVar("P")
R = TypeVar("R")

_POLL_SECONDS = 0.1


class _Failure:
    """An exception raised while preparing ``item``, passed through the queue to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _prepare_all(items: Sequence[T], prepare: Callable[[T], P], out: queue.Queue, stop: threading.Event) -> None:
    """Producer thread: prepare every item in order and queue it; stop on the first failure or on request."""
    for item in items:
        try:
            prepared: object = prepare(item)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which re-raises it
            prepared = _Failure(error)
        while not stop.is_set():
            try:
                out.put(prepared, timeout=_POLL_SECONDS)
                break
            except queue.Full:
                continue
        if stop.is_set() or isinstance(prepared, _Failure):
            return


def run_pipelined(items: Sequence[T], prepare: Callable[[T], P], compute: Callable[[P], R],
                  finish: Callable[[R], None], ahead: int = 1, behind: int = 1,
                  wrap: Callable[[Iterable[T]], Iterable[T]] | None = None) -> None:
    """Run ``finish(compute(prepare(item)))`` for every item, overlapping the three stages across items.

    ``prepare`` runs in one background thread, at most ``ahead`` items ahead of ``compute``; ``compute`` runs
    in the calling thread, in item order; ``finish`` runs in one background thread, with at most ``behind``
    results handed to it and not yet finished (a further result waits in ``compute``'s thread until one is).
    Everything is finished before this returns.

    Args:
        items: The work, in order.
        prepare: Loads one item (must not keep shared mutable state; it runs concurrently with the others).
        compute: The main step (for prediction, the network; it may use every core).
        finish: Consumes one result (export, writing).
        ahead: Prepared items queued at most (>= 1).
        behind: Results handed to ``finish`` and not yet finished, at most (>= 1).
        wrap: Wraps the item loop of ``compute``, e.g. in a progress bar.

    Raises:
        BaseException: The first exception of any stage, re-raised unchanged in the calling thread (so typed
            errors keep their message and path); the remaining work is abandoned (items being finished are
            completed first, so no half-written output is left behind).
    """
    if ahead < 1 or behind < 1:
        raise ValueError(f"ahead and behind must be >= 1, got {ahead} and {behind}")
    prepared: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()
    producer = threading.Thread(target=_prepare_all, args=(items, prepare, prepared, stop), daemon=True,
                                name="autounet-prepare")
    pending: deque[Future[None]] = deque()
    producer.start()
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="autounet-finish") as finisher:
            try:
                for _ in wrap(items) if wrap is not None else items:
                    value = prepared.get()
                    if isinstance(value, _Failure):
                        raise value.error
                    result = compute(value)
                    del value  # drop the prepared input before waiting on the finisher
                    while len(pending) > behind - 1:
                        pending.popleft().result()
                    pending.append(finisher.submit(finish, result))
                    del result
                while pending:
                    pending.popleft().result()
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
    finally:
        stop.set()
        producer.join()
