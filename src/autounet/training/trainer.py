"""The training loop, and only the loop: every part it uses is built elsewhere and passed in."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autounet.data.loader import Augment, BatchLoader, step_seed
from autounet.io.checkpoints import save_checkpoint
from autounet.progress import progress
from autounet.training.callbacks import EpochCallback
from autounet.training.distributed import DistributedContext, unwrap
from autounet.training.objectives import Objective
from autounet.training.optim import poly_lr, set_learning_rate
from autounet.training.recipe import TrainingRecipe

__all__ = ["Augment", "Trainer", "TrainingParts", "TrainingState"]

logger = logging.getLogger(__name__)

# The loop's own history entries; the objective adds its metrics (``Objective.metric_names``).
LOOP_METRICS = ("train_loss", "val_loss", "learning_rate", "epoch_seconds")


@dataclass
class TrainingParts:
    """Everything the loop needs, built by :func:`autounet.training.run.train_fold` (or a test).

    ``objective`` owns everything task-specific: inputs and targets of a batch, the loss, the validation
    metric and best-checkpoint score, and the final validation (see :mod:`autounet.training.objectives`).
    """

    network: nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    train_loader: BatchLoader
    val_loader: BatchLoader
    augment: Augment | None
    recipe: TrainingRecipe
    device: torch.device
    output: Path
    amp_dtype: torch.dtype | None = None
    callbacks: Sequence[EpochCallback] = ()
    show_progress: bool = True
    run_metadata: dict[str, Any] = field(default_factory=dict)
    distributed: DistributedContext = field(default_factory=DistributedContext)


@dataclass
class TrainingState:
    """What changes from epoch to epoch and must survive a restart."""

    epoch: int = 0
    history: dict[str, list[Any]] = field(default_factory=dict)
    best_score: float = -math.inf


class Trainer:
    """Epochs of SGD steps with poly learning rate, gradient clipping, optional AMP, per-epoch validation
    (the objective's metric and best-checkpoint score), checkpoints and callbacks."""

    def __init__(self, parts: TrainingParts, state: TrainingState | None = None) -> None:
        self.parts = parts
        self.state = state or TrainingState()
        self.metric_keys = (*LOOP_METRICS[:2], *parts.objective.metric_names, *LOOP_METRICS[2:])
        for key in self.metric_keys:
            self.state.history.setdefault(key, [])
        # Loss scaling guards float16 gradients against underflow; bfloat16 has float32's range and needs none.
        self.scaler = torch.amp.GradScaler(parts.device.type, enabled=parts.amp_dtype == torch.float16)

    def fit(self) -> TrainingState:
        """Train from ``state.epoch`` to the recipe's last epoch, then write ``checkpoint_final.pt``."""
        recipe = self.parts.recipe
        while self.state.epoch < recipe.epochs:
            epoch = self.state.epoch
            start = time.perf_counter()
            lr = poly_lr(epoch, recipe)
            set_learning_rate(self.parts.optimizer, lr)
            train_loss = self._train_epoch(epoch)
            val_loss = self._validate_epoch(epoch)
            self._record(epoch, train_loss, val_loss, lr, time.perf_counter() - start)
            self.state.epoch = epoch + 1
            last = self.state.epoch == recipe.epochs
            if last or self.state.epoch % recipe.checkpoint_every == 0:
                self.save(self.parts.output / "checkpoint_latest.pt")
            for callback in self.parts.callbacks if self.parts.distributed.is_main else ():
                callback.on_epoch_end(epoch, self.state.history)
        self.save(self.parts.output / "checkpoint_final.pt", weights_only_state=True)
        return self.state

    def _batch_to_device(self, image: np.ndarray, seg: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.parts.device
        non_blocking = device.type == "cuda"
        return (torch.from_numpy(image).to(device, non_blocking=non_blocking),
                torch.from_numpy(seg).to(device, non_blocking=non_blocking))

    def _train_epoch(self, epoch: int) -> float:
        parts, recipe = self.parts, self.parts.recipe
        parts.network.train()
        losses = []
        batches = parts.train_loader.epoch(epoch, recipe.iterations_per_epoch)
        if parts.show_progress:
            batches = progress(batches, f"epoch {epoch}", total=recipe.iterations_per_epoch, unit="it")
        if parts.augment is not None and parts.train_loader.augment is not None:
            raise ValueError("both the trainer and its training loader augment; set one of them to None")
        # Either the loader already augmented (CPU: in its worker threads) or the trainer does it here on the
        # device (GPU); both seed step i of epoch e alike, so the batches are the same either way.
        for iteration, (image_np, seg_np) in enumerate(batches):
            image, seg = self._batch_to_device(image_np, seg_np)
            if parts.augment is not None:
                seed = parts.distributed.rank_seed(recipe.seed)  # each rank augments differently
                generator = torch.Generator().manual_seed(step_seed(seed, epoch, iteration))
                image, seg = parts.augment(image, seg, generator)
            losses.append(self._step(*parts.objective.prepare(image, seg)))
        return parts.distributed.mean(float(np.mean(losses)))

    def _step(self, inputs: torch.Tensor, targets: Any) -> float:
        parts = self.parts
        parts.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            outputs = parts.network(inputs)
        loss = parts.objective.loss(_as_float(outputs), targets)  # the loss in float32
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(parts.optimizer)
        torch.nn.utils.clip_grad_norm_(parts.network.parameters(), parts.recipe.grad_clip_norm)
        self.scaler.step(parts.optimizer)
        self.scaler.update()
        return float(loss.detach())

    @torch.no_grad()
    def _validate_epoch(self, epoch: int) -> float:
        parts = self.parts
        parts.network.eval()
        parts.objective.reset_metric()
        losses = []
        for image_np, seg_np in parts.val_loader.epoch(epoch, parts.recipe.validation_iterations):
            inputs, targets = parts.objective.prepare(*self._batch_to_device(image_np, seg_np))
            with self._autocast():
                outputs = _as_float(parts.network(inputs))
            losses.append(float(parts.objective.loss(outputs, targets)))
            parts.objective.update_metric(outputs, targets)
        return parts.distributed.mean(float(np.mean(losses)) if losses else math.nan)

    def _autocast(self) -> torch.autocast:
        dtype = self.parts.amp_dtype
        return torch.autocast(self.parts.device.type, dtype=dtype, enabled=dtype is not None)

    def _sum_over_ranks(self, values: list[float]) -> list[float]:
        context = self.parts.distributed
        return context.sum(values) if context.is_distributed else values

    def _record(self, epoch: int, train_loss: float, val_loss: float, lr: float, seconds: float) -> None:
        history = self.state.history
        metric = self.parts.objective.epoch_metric(self._sum_over_ranks)
        values = {"train_loss": train_loss, "val_loss": val_loss, **metric.values, "learning_rate": lr,
                  "epoch_seconds": seconds}
        for key in self.metric_keys:
            history[key].append(values[key])
        logger.info("epoch %d: train loss %.4f, val loss %.4f, %s, lr %.5f, %.1f s", epoch, train_loss, val_loss,
                    metric.summary, lr, seconds)
        if metric.score is not None and metric.score > self.state.best_score:
            self.state.best_score = metric.score
            self.save(self.parts.output / "checkpoint_best.pt", weights_only_state=True)
            logger.info("new best score %.4f", metric.score)

    def save(self, path: Path, weights_only_state: bool = False) -> None:
        """Write a checkpoint; ``weights_only_state`` keeps only what inference needs.

        Only rank 0 writes: under data-parallel training every rank holds the same weights and state.
        """
        if not self.parts.distributed.is_main:
            return
        network = unwrap(self.parts.network)
        state: dict[str, Any] = {"network": network.state_dict(), "epoch": self.state.epoch,
                                 "metadata": self.parts.run_metadata}
        if not weights_only_state:
            # "tracker" and "best_ema" are the keys segmentation checkpoints always had: old runs still resume.
            state.update(optimizer=self.parts.optimizer.state_dict(), grad_scaler=self.scaler.state_dict(),
                         history=self.state.history, tracker=self.parts.objective.state_dict(),
                         best_ema=self.state.best_score)
        save_checkpoint(path, state)

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a ``checkpoint_latest.pt`` state: weights, optimizer, scaler, history, epoch."""
        unwrap(self.parts.network).load_state_dict(state["network"])
        self.parts.optimizer.load_state_dict(state["optimizer"])
        if state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        self.state.epoch = int(state["epoch"])
        self.state.history = {key: list(state["history"].get(key, [])) for key in self.metric_keys}
        self.parts.objective.load_state_dict(state["tracker"])
        self.state.best_score = float(state["best_ema"])


def _as_float(outputs: Any) -> Any:
    if isinstance(outputs, (list, tuple)):
        return [output.float() for output in outputs]
    # A tensor, or a structured output with its own float() (a detector's logits, deltas and anchors).
    return outputs.float()

