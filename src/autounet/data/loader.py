"""Background batch loading: patches are read, sampled and (on the CPU) augmented in worker threads.

Batch ``i`` of epoch ``e`` is drawn with a generator seeded from ``(seed, e, i)`` and, when the loader
augments, augmented with a torch generator seeded with :func:`step_seed` ``(seed, e, i)``, so the sequence of
batches is the same whatever the number of workers and after resuming at any epoch. Threads suffice: reading
memory-mapped slices, padding and torch's operators release the GIL, and nothing is pickled.

Workers that augment run torch on one intra-op thread each, as nnU-Net's worker processes run single-threaded:
the workers are the parallelism, and several OpenMP teams competing for the same cores slow each other down
several times over (2 workers x 2 threads on 2 cores: 16 instead of 40 3D batches/s).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

from autounet.data.augmentation import BatchAugmenter
from autounet.data.sampler import PatchSampler

__all__ = ["Augment", "BatchLoader", "batch_rng", "step_seed"]

# (image (B,C,*sampling patch), seg (B,1,*sampling patch), generator) -> (image, seg) at the final patch size.
Augment = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]

# A worker that never starts would otherwise block the loader's construction forever.
_WORKER_START_TIMEOUT_S = 60.0


def batch_rng(seed: int, epoch: int, iteration: int, stream: int = 0) -> np.random.Generator:
    """The generator for one batch; ``stream`` separates independent uses (sampling 0, validation 1)."""
    return np.random.default_rng([seed, stream, epoch, iteration])


def step_seed(seed: int, epoch: int, iteration: int) -> int:
    """Seed of the augmentation generator of training step ``iteration`` of ``epoch``.

    Independent of how many steps ran before, so a resumed run draws exactly the same augmentations, and the
    same whether the trainer or the loader augments.

    Args:
        seed: The run's (per-rank) seed.
        epoch: Epoch index.
        iteration: Step within the epoch.

    Returns:
        A non-negative seed below ``2**62`` for ``torch.Generator.manual_seed``.
    """
    return int(np.random.default_rng([seed, 2, epoch, iteration]).integers(2**62))


@contextmanager
def _single_threaded_torch() -> Iterator[None]:
    """Run the calling thread's torch operators on one intra-op thread, restoring its count afterwards."""
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _init_single_threaded_worker() -> None:
    torch.get_num_threads()  # initialise this thread's count first, or torch would reset it on first use
    torch.set_num_threads(1)


def _single_threaded_pool(num_workers: int) -> ThreadPoolExecutor:
    """A pool whose threads run torch single-threaded, leaving every other thread's setting as it was."""
    main_threads = torch.get_num_threads()
    pool = ThreadPoolExecutor(num_workers, thread_name_prefix="autounet-loader",
                              initializer=_init_single_threaded_worker)
    # torch.set_num_threads also sets the count that threads started later begin with. Start every worker
    # now (each task holds its thread until all have started), then put that default back.
    barrier = threading.Barrier(num_workers)
    for future in [pool.submit(barrier.wait, _WORKER_START_TIMEOUT_S) for _ in range(num_workers)]:
        future.result()
    torch.set_num_threads(main_threads)
    return pool


class BatchLoader:
    """Yields batches of one epoch in order, keeping ``prefetch`` batches in flight.

    Args:
        sampler: Where patches come from.
        seed: Base seed of the run (the per-rank seed under data-parallel training).
        num_workers: Worker threads (0: load in the calling thread).
        prefetch: Batches prepared ahead.
        stream: Random stream id (training and validation differ).
        augment: Augmentation run on the CPU right after sampling (e.g. a CPU
            :class:`~autounet.data.augmentation.BatchAugmenter`), with a generator seeded by
            :func:`step_seed` ``(seed, epoch, iteration)``; it must return CPU tensors. Augmentation always runs
            on one torch thread (in each worker, or in the calling thread for ``num_workers=0``), so batches are
            bit-identical for any number of workers, and to those the trainer gets by augmenting the loader's
            plain batches with the same seeds on one thread (on more threads, torch's FFT in the elastic
            deformation and reductions over more than ~1M voxels may round differently). ``None``: batches are
            yielded as sampled.

    Batches are ``(image, seg)`` NumPy arrays: float32 ``(B, C, *patch)`` and int16 ``(B, S, *patch)``, the
    patch being the sampler's, or the augmentation's final patch when the loader augments.
    """

    def __init__(self, sampler: PatchSampler, seed: int, num_workers: int = 2, prefetch: int = 4,
                 stream: int = 0, augment: Augment | None = None) -> None:
        self.sampler = sampler
        self.seed = seed
        self.stream = stream
        self.prefetch = max(1, prefetch)
        self.augment = augment
        self._pool: ThreadPoolExecutor | None = None
        if num_workers and augment is not None:
            self._pool = _single_threaded_pool(num_workers)
        elif num_workers:
            self._pool = ThreadPoolExecutor(num_workers, thread_name_prefix="autounet-loader")

    def _load(self, epoch: int, iteration: int) -> tuple[np.ndarray, np.ndarray]:
        rng = batch_rng(self.seed, epoch, iteration, self.stream)
        if self.augment is None:
            return self.sampler.sample_batch(rng)
        generator = torch.Generator().manual_seed(step_seed(self.seed, epoch, iteration))
        with _single_threaded_torch():  # a no-op in the workers, which are single-threaded already
            if isinstance(self.augment, BatchAugmenter):
                # Parameters first (the same draws as augment(...) makes): samples that will only be centre-
                # cropped need just the crop read, a fifth of a 3D sampling patch. Same batch, less work.
                params = self.augment.sample(self.sampler.settings.batch_size, self.sampler.num_channels, generator)
                windows = self.augment.input_windows(params)
                image, seg = self.sampler.sample_batch(rng, windows)
                image_t, seg_t = self.augment.apply(params, torch.from_numpy(image), torch.from_numpy(seg))
            else:
                image, seg = self.sampler.sample_batch(rng)
                image_t, seg_t = self.augment(torch.from_numpy(image), torch.from_numpy(seg), generator)
        if image_t.device.type != "cpu" or seg_t.device.type != "cpu":
            raise ValueError(f"the loader augments on the CPU; the augmentation returned tensors on "
                             f"{image_t.device} and {seg_t.device}")
        return image_t.numpy(), seg_t.numpy()  # views, no copy; the trainer wraps them back without one

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
