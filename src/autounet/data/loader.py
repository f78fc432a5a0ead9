"""Background batch loading: patches are read and sampled in worker threads while the network trains.

Batch ``i`` of epoch ``e`` is drawn with a generator seeded from ``(seed, e, i)``, so the sequence of
batches is the same whatever the number of workers and after resuming at any epoch. Threads suffice:
reading memory-mapped slices and padding release the GIL, and nothing is pickled.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from autounet.data.sampler import PatchSampler

__all__ = ["BatchLoader", "batch_rng"]


def batch_rng(seed: int, epoch: int, iteration: int, stream: int = 0) -> np.random.Generator:
    """The generator for one batch; ``stream`` separates independent uses (sampling 0, validation 1)."""
    return np.random.default_rng([seed, stream, epoch, iteration])


class BatchLoader:
    """Yields batches of one epoch in order, keeping ``prefetch`` batches in flight.

    Args:
        sampler: Where patches come from.
        seed: Base seed of the run.
        num_workers: Worker threads (0: load in the calling thread).
        prefetch: Batches prepared ahead.
        stream: Random stream id (training and validation differ).
    """

    def __init__(self, sampler: PatchSampler, seed: int, num_workers: int = 2, prefetch: int = 4,
                 stream: int = 0) -> None:
        self.sampler = sampler
        self.seed = seed
        self.stream = stream
        self.prefetch = max(1, prefetch)
        self._pool = ThreadPoolExecutor(num_workers, thread_name_prefix="autounet-loader") if num_workers else None

    def _load(self, epoch: int, iteration: int) -> tuple[np.ndarray, np.ndarray]:
        return self.sampler.sample_batch(batch_rng(self.seed, epoch, iteration, self.stream))

    def epoch(self, epoch: int, num_iterations: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The ``num_iterations`` batches of ``epoch``."""
        if self._pool is None:
            for iteration in range(num_iterations):
                yield self._load(epoch, iteration)
            return
        pending: deque[Future] = deque()
        submitted = 0
        try:
            while submitted < num_iterations or pending:
                while submitted < num_iterations and len(pending) < self.prefetch:
                    pending.append(self._pool.submit(self._load, epoch, submitted))
                    submitted += 1
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        """Stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
