"""Data-parallel training across processes started by ``torchrun`` (``torch.distributed`` + DDP).

``torchrun --nproc_per_node N -m autounet train ...`` starts N copies of the command and tells each its place
through environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``).
This module is the only one besides :mod:`autounet.paths` that reads the environment: everything else gets
a :class:`DistributedContext`. Without those variables (a plain ``autounet train``) the context is the
single-process one and nothing here touches ``torch.distributed``, so single-process runs stay bit-identical.

Each rank draws its own batches and augmentations (:meth:`DistributedContext.rank_seed`); the global batch
of the plan is split across ranks as nnU-Net does (:func:`split_batch`); only rank 0 writes files.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from autounet.errors import CheckpointError, ConfigError

__all__ = ["DistributedContext", "distributed_session", "is_main_process", "split_batch", "unwrap",
           "verify_ranks_agree", "weights_digest", "wrap_network"]

logger = logging.getLogger(__name__)

# Ranks other than 0 wait for rank 0's final validation, which may take hours on big datasets; that wait
# gets its own group so the default group keeps a short timeout that detects a hung collective in training.
_FINAL_WAIT_TIMEOUT = timedelta(hours=48)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a data-parallel run.

    Attributes:
        rank: Global rank (0 is the main process, the one that writes files).
        world_size: Number of processes; 1 means no ``torch.distributed`` at all.
        local_rank: Rank on this node (picks the GPU).
        backend: ``nccl``, ``gloo`` or ``""`` when not distributed.
        device: The device this rank trains on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    wait_group: Any = field(default=None, compare=False, repr=False)

    @property
    def is_distributed(self) -> bool:
        """Whether more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0

    def rank_seed(self, seed: int) -> int:
        """The seed this rank draws batches and augmentations from.

        Rank 0 keeps ``seed`` so a single-process run draws exactly what it did before distributed training
        existed (the exact-resume guarantee depends on it); other ranks get an independent derived seed, so
        batch ``i`` of epoch ``e`` on rank ``r`` depends on ``(seed, e, i, r)``.
        """
        if self.rank == 0:
            return seed
        return int(np.random.SeedSequence([seed, 0xD15, self.rank]).generate_state(2, np.uint64)[0] >> 1)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over ranks (``value`` itself when single-process)."""
        if not self.is_distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self._reduce_device())
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks (``values`` itself when single-process); every rank gets the result."""
        if not self.is_distributed:
            return list(values)
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self._reduce_device())
        dist.all_reduce(tensor)
        return [float(v) for v in tensor.cpu()]

    def barrier(self) -> None:
        """Wait for every rank (no-op when single-process)."""
        if self.is_distributed:
            dist.barrier()

    def wait_for_main(self) -> None:
        """Every rank waits here until rank 0 arrives (after its final validation), with a long timeout."""
        if self.is_distributed:
            dist.barrier(group=self.wait_group)

    def _reduce_device(self) -> torch.device:
        # NCCL reduces only CUDA tensors; gloo only CPU ones.
        return self.device if self.backend == "nccl" else torch.device("cpu")


def is_main_process(context: DistributedContext | None = None) -> bool:
    """Whether this process should write files and log (rank 0, or any single-process run)."""
    if context is not None:
        return context.is_main
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


@contextmanager
def distributed_session(device: str, environ: Mapping[str, str] | None = None) -> Iterator[DistributedContext]:
    """Join the ``torchrun`` process group for the duration of a run, and leave it afterwards.

    Args:
        device: The requested device (``cpu``, ``cuda``...). Under ``torchrun`` with CUDA each rank uses
            ``cuda:<LOCAL_RANK>`` and NCCL; on CPU the backend is gloo.
        environ: The environment to read; ``os.environ`` when ``None`` (tests pass a dict).

    Raises:
        ConfigError: A device that data-parallel training does not support, or malformed torchrun variables.
    """
    context = _init(device, os.environ if environ is None else environ)
    try:
        yield context
    finally:
        if context.is_distributed and dist.is_initialized():
            dist.destroy_process_group()


def _init(device: str, environ: Mapping[str, str]) -> DistributedContext:
    world_size = _int_variable(environ, "WORLD_SIZE", 1)
    if world_size <= 1:
        return DistributedContext(device=torch.device(device))
    rank, local_rank = _int_variable(environ, "RANK", 0), _int_variable(environ, "LOCAL_RANK", 0)
    if "MASTER_ADDR" not in environ:
        raise ConfigError("WORLD_SIZE > 1 but MASTER_ADDR is not set; start data-parallel training with torchrun")
    kind = torch.device(device)
    if kind.type == "cuda":
        if kind.index is not None:
            raise ConfigError("with torchrun pass --device cuda (each rank uses cuda:<LOCAL_RANK>); pick GPUs with "
                              "CUDA_VISIBLE_DEVICES")
        kind, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(kind)
    elif kind.type == "cpu":
        backend = "gloo"
    else:
        raise ConfigError(f"data-parallel training supports cpu and cuda, not '{device}'")
    dist.init_process_group(backend, rank=rank, world_size=world_size,
                            device_id=kind if backend == "nccl" else None)
    wait_group = dist.new_group(backend="gloo", timeout=_FINAL_WAIT_TIMEOUT)
    logger.info("data-parallel rank %d of %d (local rank %d, %s on %s)", rank, world_size, local_rank, backend,
                kind)
    return DistributedContext(rank, world_size, local_rank, backend, kind, wait_group)


def _int_variable(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got '{text}'") from None


def split_batch(batch_size: int, oversample_foreground: float, context: DistributedContext) -> tuple[int, float]:
    """This rank's share of the plan's global batch, and its foreground-oversampling fraction.

    Like nnU-Net: the global batch is split as evenly as possible (the first ``batch % world`` ranks get one
    more), and the forced-foreground patches, which a single process puts at the end of the batch, go to the
    ranks holding the end of the global batch, so the global fraction stays what the recipe asks for.

    Raises:
        ConfigError: Fewer patches in the global batch than ranks.
    """
    world, rank = context.world_size, context.rank
    if world == 1:
        return batch_size, oversample_foreground
    if batch_size < world:
        raise ConfigError(f"the plan's batch size {batch_size} is smaller than the {world} data-parallel ranks; "
                          "use fewer processes or a plan with a larger batch")
    sizes = [batch_size // world + (1 if r < batch_size % world else 0) for r in range(world)]
    low, high = sum(sizes[:rank]) / batch_size, sum(sizes[:rank + 1]) / batch_size
    random_part = 1 - oversample_foreground  # the share of the global batch drawn without forcing foreground
    if high <= random_part:
        return sizes[rank], 0.0
    if low >= random_part:
        return sizes[rank], 1.0
    return sizes[rank], min(1.0, max(0.0, (high - random_part) / (high - low)))


def wrap_network(network: nn.Module, context: DistributedContext) -> nn.Module:
    """``network`` inside ``DistributedDataParallel`` when distributed (which also copies rank 0's weights to
    every rank), else ``network`` unchanged."""
    if not context.is_distributed:
        return network
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    # The deep-supervision loss gives the lowest-resolution head weight 0, so that head never gets a gradient
    # and DDP must be told to expect unused parameters (a graph traversal per step, small next to 3D convs).
    # static_graph=True would avoid the traversal but fails once a no-grad validation forward runs in between.
    return nn.parallel.DistributedDataParallel(network, device_ids=device_ids, find_unused_parameters=True)


def unwrap(network: nn.Module) -> nn.Module:
    """The plain network inside DDP and ``torch.compile`` wrappers."""
    network = getattr(network, "module", network)
    return getattr(network, "_orig_mod", network)


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict (names, shapes, dtypes and bytes of every tensor), hex."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def verify_ranks_agree(network: nn.Module, context: DistributedContext) -> str | None:
    """Check that every data-parallel rank holds bit-identical weights; returns this rank's digest (``None``
    without data parallelism, where there is nothing to compare).

    DDP keeps replicas identical by averaging gradients; a rank that diverged (a non-deterministic op, a
    parameter outside DDP's reach) would silently make the checkpoint rank 0 writes unrepresentative. The
    check costs one digest and one small all-reduce.

    Raises:
        CheckpointError: The ranks' weights differ (on every rank alike).
    """
    if not context.is_distributed:
        return None
    digest = weights_digest(unwrap(network).state_dict())
    # Each rank puts the first 8 bytes of its digest, as two exact 32-bit integers, into its own slots.
    words = [int(digest[i:i + 8], 16) for i in (0, 8)]
    slots = [0.0] * (2 * context.world_size)
    slots[2 * context.rank:2 * context.rank + 2] = words
    gathered = context.sum(slots)
    if len({tuple(gathered[2 * r:2 * r + 2]) for r in range(context.world_size)}) != 1:
        raise CheckpointError(f"the {context.world_size} data-parallel ranks ended with different weights; the "
                              "checkpoint is not trustworthy (rerun; report it if it repeats)")
    logger.info("weights identical on all %d ranks (sha256 %s)", context.world_size, digest[:16])
    return digest
