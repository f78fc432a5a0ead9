"""Training objectives: what the loop may know about the task it trains.

The :class:`~autounet.training.trainer.Trainer` runs epochs of steps and nothing else. Everything that depends
on what the network predicts lives in an objective: turning a loader batch into network inputs and loss
targets, the loss, the per-epoch validation metric and the score that picks the best checkpoint, and the final
validation after training. Segmentation (plain labels, regions, cascade stages) is the first objective; other
tasks (several label maps, boxes) are further objectives registered by name, never branches in the loop.

A recipe names its objective (``TrainingRecipe.objective``); :func:`build_objective` looks it up.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from autounet.dataset.labels import LabelScheme, OutputLayout
from autounet.dataset.raw import RawDataset
from autounet.inference.cascade import previous_stage_one_hot
from autounet.planning.plans import ConfigurationPlan, Plans
from autounet.registry import Registry
from autounet.training.losses import build_loss
from autounet.training.metrics import PseudoDiceTracker, tp_fp_fn
from autounet.training.recipe import TrainingRecipe
from autounet.training.validation import ValidationJob, next_stage_folder, run_final_validation

__all__ = ["EpochMetric", "Objective", "ObjectiveContext", "SegmentationObjective", "build_objective",
           "objective_names", "register_objective"]

logger = logging.getLogger(__name__)

NetworkOutputs = Tensor | Sequence[Tensor]
"""A network's output: one tensor, or (deep supervision) a list of tensors, full resolution first."""

SumOverRanks = Callable[[list[float]], list[float]]
"""Element-wise sum of a list of numbers over the data-parallel ranks (identity without data parallelism)."""


@dataclass(frozen=True)
class EpochMetric:
    """What an objective reports after a validation epoch.

    Attributes:
        values: Entries for the training history (``metrics.json``), one per name in
            :attr:`Objective.metric_names`.
        score: Higher is better; the trainer keeps ``checkpoint_best.pt`` at the highest score so far.
            ``None``: no score this epoch (nothing validated), never a new best.
        summary: Short text for the epoch's log line.
    """

    values: dict[str, Any]
    score: float | None
    summary: str


class Objective(Protocol):
    """The task-specific half of training; the :class:`~autounet.training.trainer.Trainer` is the other.

    Attributes:
        metric_names: History keys that :meth:`epoch_metric` fills, in addition to the loop's own
            (``train_loss``, ``val_loss``, ``learning_rate``, ``epoch_seconds``).
        plotted_metrics: ``(history key, label)`` of the scalar metrics ``progress.png`` shows.
    """

    metric_names: tuple[str, ...]
    plotted_metrics: tuple[tuple[str, str], ...]

    @property
    def extra_input_channels(self) -> int:
        """Network input channels besides the image's (e.g. a cascade's previous-stage channels)."""
        ...

    @property
    def num_outputs(self) -> int:
        """Output channels the network needs."""
        ...

    def to(self, device: torch.device) -> Objective:
        """Move any tensors or modules (the loss) to ``device``; returns ``self``."""
        ...

    def prepare(self, image: Tensor, seg: Tensor) -> tuple[Tensor, Any]:
        """Turn a loader batch (on the device, augmented) into network inputs and loss targets."""
        ...

    def loss(self, outputs: NetworkOutputs, targets: Any) -> Tensor:
        """The scalar training loss of the network's float32 outputs."""
        ...

    def reset_metric(self) -> None:
        """Start a validation epoch."""
        ...

    def update_metric(self, outputs: NetworkOutputs, targets: Any) -> None:
        """Add one validation batch to the epoch's metric."""
        ...

    def epoch_metric(self, sum_over_ranks: SumOverRanks) -> EpochMetric:
        """Close the validation epoch: combine the batches (over all ranks) and report."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The metric state a resumed run needs (plain values only: it goes into checkpoints)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state."""
        ...

    def validate(self, network: nn.Module, device: torch.device) -> dict[str, Any]:
        """The final validation after training (rank 0 only); returns its summary."""
        ...


@dataclass(frozen=True)
class ObjectiveContext:
    """What an objective may need to know about the run it is built for.

    Attributes:
        plans: The dataset's plans.
        configuration: The configuration being trained.
        labels: Label handling of the dataset.
        dataset: The raw dataset (final validation scores against its labels).
        data_folder: Preprocessed data of the configuration.
        validation_cases: The fold's validation cases.
        output: The fold folder (final validation writes to ``output/validation``).
        recipe: The training recipe (loss weights, deep supervision).
        mirror_axes: Axes the network was trained to be mirror-invariant on (test-time augmentation).
        previous_stage_folder: For a cascade stage, the previous stage's cross-validation predictions.
        save_probabilities: Keep the final validation's probabilities.
        show_progress: Progress bars.
        layout: The dataset's label maps and the output channels of each (``None``: the one map ``labels``
            describes).
    """

    plans: Plans
    configuration: ConfigurationPlan
    labels: LabelScheme
    dataset: RawDataset
    data_folder: Path
    validation_cases: tuple[str, ...]
    output: Path
    recipe: TrainingRecipe
    mirror_axes: tuple[int, ...] = ()
    previous_stage_folder: Path | None = None
    save_probabilities: bool = False
    show_progress: bool = True
    layout: OutputLayout | None = None


ObjectiveFactory = Callable[[ObjectiveContext], Objective]
_OBJECTIVES: Registry[ObjectiveFactory] = Registry("training objective")
# Modules whose import registers further built-in objectives; they import this module, so they load on lookup.
_BUILT_IN_MODULES = ("autounet.training.multitask", "autounet.training.detection_objective")


def register_objective(name: str) -> Callable[[ObjectiveFactory], ObjectiveFactory]:
    """Decorator registering an objective factory (a class or function taking an :class:`ObjectiveContext`).

    Raises:
        ValueError: ``name`` is already registered.
    """
    return _OBJECTIVES.register(name)


def objective_names() -> tuple[str, ...]:
    """Names of the registered objectives, sorted."""
    _load_built_ins()
    return _OBJECTIVES.names()


def build_objective(name: str, context: ObjectiveContext) -> Objective:
    """Build the objective a recipe names.

    Raises:
        ConfigError: No objective of that name ("did you mean" the closest one).
    """
    _load_built_ins()
    return _OBJECTIVES.get(name)(context)


def _load_built_ins() -> None:
    for module in _BUILT_IN_MODULES:
        importlib.import_module(module)


@register_objective("segmentation")
class SegmentationObjective:
    """Semantic segmentation as nnU-Net trains it: Dice + CE (or BCE over regions) with deep supervision,
    pseudo-Dice on the validation batches and its moving average as the best-checkpoint score, then a
    sliding-window validation in the original geometry.

    A cascade stage's batches carry the previous stage's labels as a second label channel (so augmentation
    moved them like the labels); :meth:`prepare` appends them one-hot after the image channels.

    Args:
        context: The run; ``context.previous_stage_folder`` set means a cascade stage.
    """

    metric_names = ("pseudo_dice", "pseudo_dice_ema", "pseudo_dice_per_class")
    plotted_metrics = (("pseudo_dice", "pseudo Dice"), ("pseudo_dice_ema", "pseudo Dice (EMA)"))

    def __init__(self, context: ObjectiveContext) -> None:
        self.context = context
        self.labels = context.labels
        recipe, configuration = context.recipe, context.configuration
        levels = configuration.network.num_stages - 1 if recipe.deep_supervision else None
        self.criterion = build_loss(self.labels, configuration.batch_dice, levels, recipe.loss_weights)
        self.previous_stage_labels = self.labels.foreground_labels if context.previous_stage_folder else ()
        self.tracker = PseudoDiceTracker()

    @property
    def extra_input_channels(self) -> int:
        """Input channels besides the image's: one per foreground label for a cascade stage."""
        return len(self.previous_stage_labels)

    @property
    def num_outputs(self) -> int:
        """One channel per class incl. background, or per region."""
        return self.labels.num_outputs

    def to(self, device: torch.device) -> SegmentationObjective:
        """Move the loss to ``device``."""
        self.criterion.to(device)
        return self

    def prepare(self, image: Tensor, seg: Tensor) -> tuple[Tensor, Tensor]:
        """Network inputs (image, plus the previous stage's one-hot channels for a cascade) and the label map
        ``(B, 1, *spatial)`` as int64 with padding (-1) counted as background, as in nnU-Net."""
        if self.previous_stage_labels:
            one_hot = previous_stage_one_hot(seg[:, 1], self.previous_stage_labels, channel_axis=1)
            image, seg = torch.cat([image, one_hot.to(image.dtype)], dim=1), seg[:, :1]
        return image, seg.long().clamp_(min=0)

    def loss(self, outputs: NetworkOutputs, targets: Tensor) -> Tensor:
        """Dice + CE (or BCE) of the outputs, summed over the deep-supervision levels with their weights."""
        return self.criterion(outputs, targets)

    def reset_metric(self) -> None:
        """Forget the previous epoch's counts (the moving average stays)."""
        self.tracker.reset()

    def update_metric(self, outputs: NetworkOutputs, targets: Tensor) -> None:
        """Count TP/FP/FN of the full-resolution output's hard prediction."""
        full_resolution = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        self.tracker.update(*tp_fp_fn(full_resolution.float(), targets, self.labels))

    def epoch_metric(self, sum_over_ranks: SumOverRanks) -> EpochMetric:
        """Pseudo-Dice of the epoch's counts summed over ranks, and its moving average as the score."""
        tracker = self.tracker
        tracker.sum_over_ranks(sum_over_ranks)
        dice = tracker.mean_dice()
        ema = tracker.update_ema(dice)
        per_class = tracker.dice_per_class()
        return EpochMetric(
            values={"pseudo_dice": dice, "pseudo_dice_ema": ema, "pseudo_dice_per_class": per_class},
            score=ema, summary=f"pseudo Dice {[round(d, 4) for d in per_class]} (EMA {ema or 0.0:.4f})")

    def state_dict(self) -> dict[str, Any]:
        """The tracker's counts and moving average."""
        return self.tracker.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the tracker."""
        self.tracker.load_state_dict(state)

    def validate(self, network: nn.Module, device: torch.device) -> dict[str, Any]:
        """Sliding-window prediction of the validation cases in their original geometry, scored against the
        raw labels (``validation/summary.json``); a lower cascade stage also writes its predictions for the
        next stage."""
        context = self.context
        plans, configuration = context.plans, context.configuration
        next_stage = plans.configurations.get(configuration.next_stage) if configuration.next_stage else None
        job = ValidationJob(
            plans, configuration, self.labels, context.dataset, context.data_folder, context.validation_cases,
            context.output / "validation", context.mirror_axes, context.save_probabilities, context.show_progress,
            next_stage=next_stage,
            next_stage_output=next_stage_folder(context.output.parent, next_stage.name) if next_stage else None,
            previous_stage_folder=context.previous_stage_folder)
        return run_final_validation(network, job, device)
