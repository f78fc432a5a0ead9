"""The trainer knows no task: a toy second objective runs through the unchanged loop; the objective registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from autounet.errors import ConfigError
from autounet.io.checkpoints import load_checkpoint
from autounet.training.callbacks import ProgressPlot
from autounet.training.objectives import (
    EpochMetric,
    ObjectiveContext,
    build_objective,
    objective_names,
    register_objective,
)
from autounet.training.recipe import TrainingRecipe
from autounet.training.trainer import Trainer, TrainingParts


class _FixedBatches:
    """A loader stand-in: the same few (image, seg) batches every epoch."""

    augment = None

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.batches = []
        for _ in range(3):
            seg = (rng.random((2, 1, 8, 8)) > 0.7).astype(np.int16)
            image = (seg + 0.1 * rng.standard_normal(seg.shape)).astype(np.float32)
            self.batches.append((image, seg))

    def epoch(self, epoch: int, iterations: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for index in range(iterations):
            yield self.batches[index % len(self.batches)]

    def close(self) -> None:
        pass


class ForegroundFractionObjective:
    """Toy task: regress the fraction of foreground voxels of each sample (nothing of segmentation)."""

    metric_names = ("fraction_error",)
    plotted_metrics = (("fraction_error", "foreground fraction error"),)
    extra_input_channels = 0
    num_outputs = 1

    def __init__(self) -> None:
        self.errors: list[float] = []
        self.validated = False

    def to(self, device: torch.device) -> ForegroundFractionObjective:
        return self

    def prepare(self, image: Tensor, seg: Tensor) -> tuple[Tensor, Tensor]:
        return image, (seg > 0).float().mean(dim=(1, 2, 3))

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return nn.functional.mse_loss(outputs.mean(dim=(1, 2, 3)), targets)

    def reset_metric(self) -> None:
        self.errors = []

    def update_metric(self, outputs: Tensor, targets: Tensor) -> None:
        self.errors.append(float((outputs.mean(dim=(1, 2, 3)) - targets).abs().mean()))

    def epoch_metric(self, sum_over_ranks: Any) -> EpochMetric:
        error = float(np.mean(self.errors))
        return EpochMetric({"fraction_error": error}, score=-error, summary=f"fraction error {error:.4f}")

    def state_dict(self) -> dict[str, Any]:
        return {"errors": list(self.errors)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.errors = list(state["errors"])

    def validate(self, network: nn.Module, device: torch.device) -> dict[str, Any]:
        self.validated = True
        return {}


def test_toy_objective_trains_through_the_unchanged_trainer(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = nn.Conv2d(1, 1, 3, padding=1)
    recipe = TrainingRecipe(epochs=4, iterations_per_epoch=3, validation_iterations=2, checkpoint_every=2,
                            initial_lr=0.05, momentum=0.9)
    objective = ForegroundFractionObjective()
    parts = TrainingParts(network=network, objective=objective,
                          optimizer=torch.optim.SGD(network.parameters(), lr=recipe.initial_lr, momentum=0.9),
                          train_loader=_FixedBatches(0), val_loader=_FixedBatches(1),  # type: ignore[arg-type]
                          augment=None, recipe=recipe, device=torch.device("cpu"), output=tmp_path,
                          callbacks=(ProgressPlot(tmp_path / "progress.png", objective.plotted_metrics),),
                          show_progress=False)
    state = Trainer(parts).fit()
    assert (tmp_path / "progress.png").stat().st_size > 0
    assert state.epoch == 4
    assert set(state.history) == {"train_loss", "val_loss", "fraction_error", "learning_rate", "epoch_seconds"}
    errors = state.history["fraction_error"]
    assert len(errors) == 4 and all(np.isfinite(errors))
    # The objective's score picks the best checkpoint: the epoch with the smallest error.
    assert state.best_score == max(-e for e in errors)
    assert load_checkpoint(tmp_path / "checkpoint_best.pt")["epoch"] == int(np.argmin(errors))
    for name in ("checkpoint_latest.pt", "checkpoint_best.pt", "checkpoint_final.pt"):
        assert (tmp_path / name).is_file()
    latest = load_checkpoint(tmp_path / "checkpoint_latest.pt")
    assert latest["tracker"] == objective.state_dict() and latest["best_ema"] == state.best_score

    # Resuming restores the objective's state and the history through the same keys.
    resumed = ForegroundFractionObjective()
    trainer = Trainer(TrainingParts(network=nn.Conv2d(1, 1, 3, padding=1), objective=resumed,
                                    optimizer=torch.optim.SGD(network.parameters(), lr=0.05, momentum=0.9),
                                    train_loader=_FixedBatches(0), val_loader=_FixedBatches(1),  # type: ignore[arg-type]
                                    augment=None, recipe=recipe, device=torch.device("cpu"), output=tmp_path,
                                    show_progress=False))
    trainer.restore(latest)
    assert trainer.state.history["fraction_error"] == errors and resumed.errors == objective.errors


def test_objective_registry_rejects_duplicates_and_suggests_names() -> None:
    assert "segmentation" in objective_names()
    with pytest.raises(ValueError, match="already registered"):
        register_objective("segmentation")(ForegroundFractionObjective)  # type: ignore[arg-type]
    context = ObjectiveContext(plans=None, configuration=None, labels=None, dataset=None,  # type: ignore[arg-type]
                               data_folder=Path("."), validation_cases=(), output=Path("."), recipe=TrainingRecipe())
    with pytest.raises(ConfigError, match="did you mean 'segmentation'"):
        build_objective("segmentaton", context)
