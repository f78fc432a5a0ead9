"""Progress bars and process pools shared by every per-case loop."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from tqdm import tqdm

from autounet.errors import AutounetError

__all__ = ["close_progress_bars", "parallel_map", "progress"]

T = TypeVar("T")
R = TypeVar("R")


def progress(items: Iterable[T], description: str, total: int | None = None, unit: str = "case",
             leave: bool = True) -> Iterator[T]:
    """Wrap ``items`` in a tqdm progress bar on stderr (``leave=False``: erase it when done, for inner bars)."""
    yield from tqdm(items, desc=description, total=total, unit=unit, file=sys.stderr, mininterval=0.5,
                    dynamic_ncols=True, leave=leave)


def close_progress_bars() -> None:
    """Close every progress bar still on screen, so that what is printed next starts on a line of its own.

    A loop left by an exception keeps its bar open (the traceback holds the generator) with the cursor at the
    end of the bar's line; an error printed then would be appended to the bar. Closing ends a kept bar with a
    newline and erases a transient one (``leave=False``); inner (higher-positioned) bars go first.
    """
    bars = list(getattr(tqdm, "_instances", ()))
    for bar in sorted(bars, key=lambda b: abs(getattr(b, "pos", 0)), reverse=True):
        bar.close()


def parallel_map(function: Callable[[T], R], items: Sequence[T], num_processes: int, description: str,
                 unit: str = "case") -> list[R]:
    """Apply ``function`` to every item, in ``num_processes`` worker processes, with a progress bar.

    Results keep the order of ``items``. With ``num_processes <= 1`` everything runs in this process
    (easier to debug, no pickling). Workers are forked on Linux: the per-case functions use NumPy/SciPy
    only, and forking avoids re-importing them in every worker.

    Raises:
        AutounetError: A worker process died (native crash, out of memory).
        Exception: The first exception raised by ``function``, after cancelling the remaining work.
    """
    if num_processes <= 1 or len(items) <= 1:
        return [function(item) for item in progress(items, description, total=len(items), unit=unit)]
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    results: list[R | None] = [None] * len(items)
    with ProcessPoolExecutor(max_workers=min(num_processes, len(items)),
                             mp_context=multiprocessing.get_context(method)) as pool:
        futures = {pool.submit(function, item): index for index, item in enumerate(items)}
        try:
            for future in progress(as_completed(futures), description, total=len(items), unit=unit):
                results[futures[future]] = future.result()
        except BrokenProcessPool:
            # A worker died without a Python exception: a crash inside a native reader or the OOM killer.
            raise AutounetError(f"a worker process died while {description.lower()} (a crash in a native image "
                                "reader, or out of memory); rerun with -np 1 to see which file") from None
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return results  # type: ignore[return-value]
