"""Training on several label maps per image (multi-task): one loss per task, summed with weights.

The network predicts every task's channels at once (the :class:`~autounet.dataset.labels.OutputLayout` says
which channels belong to which task): late branching is the plain U-Net with every task's heads, early
branching (``unet_early_branching``) a decoder per task. The loader's label batch holds one map per task, in
task order, moved together by augmentation. Each task gets the loss of its kind (Dice + CE for classes,
Dice + BCE for regions, with deep supervision), and the total is ``sum(weight_task * loss_task)`` with the
recipe's ``task_weights`` (equal weights summing to 1 by default, 0.5 each for two tasks as in the glacier
calving-front work). Line tasks are trained on lines dilated to the recipe's ``line_width`` and predicted
lines are thinned back to one voxel before they are scored by the mean distance error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from autounet.dataset.labels import OutputLayout, OutputTask
from autounet.errors import ConfigError
from autounet.evaluation.lines import LineDistance, line_distance, summarise_line_distances
from autounet.evaluation.metrics import label_overlaps
from autounet.inference.original_geometry import to_original_geometry
from autounet.inference.sliding_window import SlidingWindowSettings, predict_sliding_window
from autounet.io.images import write_segmentation
from autounet.io.jsonio import nan_to_none, write_json
from autounet.postprocessing.lines import thin_to_line
from autounet.preprocessing.dataset import case_label_maps
from autounet.preprocessing.storage import load_case
from autounet.progress import progress
from autounet.training.losses import build_loss
from autounet.training.metrics import PseudoDiceTracker, tp_fp_fn
from autounet.training.objectives import (
    EpochMetric,
    NetworkOutputs,
    ObjectiveContext,
    SumOverRanks,
    register_objective,
)
from autounet.training.validation import summarise

__all__ = ["MultiTaskLoss", "MultiTaskObjective", "dilate_lines", "task_weights"]

logger = logging.getLogger(__name__)


def task_weights(layout: OutputLayout, weights: dict[str, float]) -> tuple[float, ...]:
    """Each task's loss weight: the recipe's value by task name, ``1 / number of tasks`` for the rest.

    Raises:
        ConfigError: A weight names a task the dataset does not have.
    """
    names = [task.name for task in layout.tasks]
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ConfigError(f"the recipe's task_weights name '{unknown[0]}', but the dataset's tasks are "
                          f"{', '.join(names)}")
    return tuple(float(weights.get(name, 1.0 / len(names))) for name in names)


def dilate_lines(seg: Tensor, label: int, width: int) -> Tensor:
    """Widen the voxels of ``label`` in an integer map ``(B, 1, *spatial)`` to ``width`` voxels (a square or
    cube neighbourhood), over background only; other labels stay as they are. ``width`` 1 returns ``seg``."""
    if width <= 1:
        return seg
    ndim = seg.ndim - 2
    pool = functional.max_pool3d if ndim == 3 else functional.max_pool2d
    line = (seg == label).to(torch.float32)
    widened = pool(line, kernel_size=width, stride=1, padding=width // 2)
    widened = widened[(slice(None), slice(None), *(slice(0, n) for n in seg.shape[2:]))]  # even widths
    return torch.where((widened > 0) & (seg == 0), torch.full_like(seg, label), seg)


class MultiTaskLoss(nn.Module):
    """``sum(weight_task * loss_task)``: each task's loss on its channels of the outputs and its label map.

    Args:
        layout: The tasks and their channels.
        losses: One loss per task, called as ``loss(outputs, seg)`` (see :func:`~autounet.training.losses.build_loss`).
        weights: One weight per task.
    """

    def __init__(self, layout: OutputLayout, losses: Sequence[nn.Module], weights: Sequence[float]) -> None:
        super().__init__()
        if not len(layout.tasks) == len(losses) == len(weights):
            raise ValueError("a multi-task loss needs one loss and one weight per task")
        self.layout = layout
        self.losses = nn.ModuleList(losses)
        self.weights = tuple(float(w) for w in weights)

    def forward(self, outputs: NetworkOutputs, seg: Tensor) -> Tensor:
        """Loss of the outputs (a tensor, or the deep-supervision list) against ``seg`` ``(B, tasks, ...)``."""
        total: Tensor | None = None
        for index, (task, loss, weight) in enumerate(zip(self.layout.tasks, self.losses, self.weights, strict=True)):
            if weight == 0:
                continue
            term = weight * loss(_task_outputs(outputs, task), seg[:, index:index + 1])
            total = term if total is None else total + term
        if total is None:
            raise ValueError("every task weighs 0: nothing to train")
        return total


def _task_outputs(outputs: NetworkOutputs, task: OutputTask) -> NetworkOutputs:
    if isinstance(outputs, Tensor):
        return outputs[:, task.channels]
    return [output[:, task.channels] for output in outputs]


def _full_resolution(outputs: NetworkOutputs) -> Tensor:
    return outputs if isinstance(outputs, Tensor) else outputs[0]


@register_objective("multitask")
class MultiTaskObjective:
    """Several label maps per image (see the module docstring); the best checkpoint by the moving average of
    the tasks' mean pseudo-Dice; the final validation writes and scores every task's map.

    Args:
        context: The run; ``context.layout`` gives the tasks (a one-task layout trains like segmentation).

    Raises:
        ConfigError: A cascade stage (not supported with several label maps), or task weights naming
            unknown tasks.
    """

    metric_names = ("pseudo_dice", "pseudo_dice_ema", "pseudo_dice_per_task")
    plotted_metrics = (("pseudo_dice", "pseudo Dice (mean of tasks)"), ("pseudo_dice_ema", "pseudo Dice (EMA)"))

    def __init__(self, context: ObjectiveContext) -> None:
        if context.previous_stage_folder is not None:
            raise ConfigError("cascades are not available for datasets with several label maps; train "
                              "3d_fullres or 2d", context.previous_stage_folder)
        self.context = context
        self.layout = context.layout if context.layout is not None else OutputLayout.of_schemes(
            {"default": context.labels})
        recipe, configuration = context.recipe, context.configuration
        levels = configuration.network.num_stages - 1 if recipe.deep_supervision else None
        self.criterion = MultiTaskLoss(
            self.layout, [build_loss(task.scheme, configuration.batch_dice, levels, recipe.loss_weights)
                          for task in self.layout.tasks], task_weights(self.layout, recipe.task_weights))
        self.line_width = recipe.line_width
        self.trackers = [PseudoDiceTracker() for _ in self.layout.tasks]
        self.average = PseudoDiceTracker()  # holds only the moving average of the tasks' mean

    @property
    def extra_input_channels(self) -> int:
        """No inputs besides the image."""
        return 0

    @property
    def num_outputs(self) -> int:
        """Every task's channels."""
        return self.layout.num_outputs

    def to(self, device: torch.device) -> MultiTaskObjective:
        """Move the losses to ``device``."""
        self.criterion.to(device)
        return self

    def prepare(self, image: Tensor, seg: Tensor) -> tuple[Tensor, Tensor]:
        """The image, and the label maps ``(B, tasks, *spatial)`` as int64 (padding counted as background),
        line tasks widened to the recipe's ``line_width``."""
        if seg.shape[1] != len(self.layout.tasks):
            raise ConfigError(f"the preprocessed data hold {seg.shape[1]} label map(s) but the dataset has "
                              f"{len(self.layout.tasks)} tasks; run plan-and-preprocess again")
        seg = seg.long().clamp_(min=0)
        maps = [dilate_lines(seg[:, i:i + 1], task.scheme.foreground_labels[0], self.line_width)
                if task.kind == "line" else seg[:, i:i + 1] for i, task in enumerate(self.layout.tasks)]
        return image, torch.cat(maps, dim=1)

    def loss(self, outputs: NetworkOutputs, targets: Tensor) -> Tensor:
        """The weighted sum of the tasks' losses."""
        return self.criterion(outputs, targets)

    def reset_metric(self) -> None:
        """Forget the previous epoch's counts (the moving average stays)."""
        for tracker in self.trackers:
            tracker.reset()

    def update_metric(self, outputs: NetworkOutputs, targets: Tensor) -> None:
        """Count each task's TP/FP/FN of the full-resolution output's hard prediction."""
        full_resolution = _full_resolution(outputs).float()
        for index, (task, tracker) in enumerate(zip(self.layout.tasks, self.trackers, strict=True)):
            tracker.update(*tp_fp_fn(full_resolution[:, task.channels], targets[:, index:index + 1], task.scheme))

    def epoch_metric(self, sum_over_ranks: SumOverRanks) -> EpochMetric:
        """Each task's pseudo-Dice over all ranks; their mean's moving average is the score."""
        per_task: dict[str, list[float]] = {}
        means = []
        for task, tracker in zip(self.layout.tasks, self.trackers, strict=True):
            tracker.sum_over_ranks(sum_over_ranks)
            per_task[task.name] = tracker.dice_per_class()
            means.append(tracker.mean_dice())
        finite = [m for m in means if not math.isnan(m)]
        dice = float(np.mean(finite)) if finite else math.nan
        ema = self.average.update_ema(dice)
        text = ", ".join(f"{name} {[round(d, 4) for d in values]}" for name, values in per_task.items())
        return EpochMetric(values={"pseudo_dice": dice, "pseudo_dice_ema": ema, "pseudo_dice_per_task": per_task},
                           score=ema, summary=f"pseudo Dice {text} (EMA {ema or 0.0:.4f})")

    def state_dict(self) -> dict[str, Any]:
        """Every task's counts and the moving average."""
        return {"tasks": [tracker.state_dict() for tracker in self.trackers], "average": self.average.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s state."""
        for tracker, saved in zip(self.trackers, state["tasks"], strict=True):
            tracker.load_state_dict(saved)
        self.average.load_state_dict(state["average"])

    def validate(self, network: nn.Module, device: torch.device) -> dict[str, Any]:
        """Sliding-window prediction of the validation cases; every task's map written in the original
        geometry under ``validation/<task>/`` and scored (Dice per class; line tasks by the mean distance
        error in the spacing's units); ``validation/summary.json``."""
        context = self.context
        return run_multitask_validation(network, MultiTaskValidation(
            context, self.layout, context.output / "validation"), device)


@dataclass(frozen=True)
class MultiTaskValidation:
    """What the multi-task final validation predicts and where it writes."""

    context: ObjectiveContext
    layout: OutputLayout
    output: Path


def run_multitask_validation(network: nn.Module, job: MultiTaskValidation, device: torch.device) -> dict[str, Any]:
    """Predict every validation case once, write each task's map, and score it against the raw labels.

    Returns:
        ``{"tasks": {name: summary}, "foreground_mean_dice": ...}``: area tasks summarised as in
        single-task validation, line tasks with their mean distance error (``mde``: mean, median, and how
        many images had no predicted or no reference line).
    """
    context, layout = job.context, job.layout
    network.eval()
    settings = SlidingWindowSettings(patch_size=context.configuration.patch_size, mirror_axes=context.mirror_axes)
    ending = context.dataset.description.file_ending
    rows: dict[str, list[dict[str, Any]]] = {task.name: [] for task in layout.tasks}
    for case_id in progress(context.validation_cases, "Final validation", total=len(context.validation_cases)):
        data, _, properties = load_case(context.data_folder, case_id, mmap=False)
        logits = predict_sliding_window(network, torch.from_numpy(data), layout.num_outputs, settings, device)
        references = case_label_maps(context.dataset.case(case_id), context.dataset.description,
                                     derivation=context.configuration.label_derivation)
        spacing = properties.original_geometry.spacing
        for index, task in enumerate(layout.tasks):
            seg, _ = to_original_geometry(logits[task.channels], properties, context.plans, context.configuration,
                                          task.scheme.regions_class_order)
            if task.kind == "line":
                seg = (thin_to_line(seg == task.scheme.foreground_labels[0]) * task.scheme.foreground_labels[0]
                       ).astype(seg.dtype)
            write_segmentation(seg, properties.original_geometry, job.output / task.name / f"{case_id}{ending}")
            reference = references[index] if len(layout.tasks) > 1 else references
            rows[task.name].append(_score(task, case_id, reference, seg, spacing))
    summary = {"tasks": {task.name: _summarise_task(task, rows[task.name]) for task in layout.tasks}}
    area = [s["foreground_mean_dice"] for t, s in zip(layout.tasks, summary["tasks"].values(), strict=True)
            if t.kind == "area" and not math.isnan(s["foreground_mean_dice"])]
    summary["foreground_mean_dice"] = float(np.mean(area)) if area else math.nan
    write_json(job.output / "summary.json", nan_to_none(summary))
    logger.info("final validation: %s", ", ".join(_log_text(t, summary["tasks"][t.name]) for t in layout.tasks))
    return summary


def _score(task: OutputTask, case_id: str, reference: np.ndarray, seg: np.ndarray,
           spacing: Sequence[float]) -> dict[str, Any]:
    scored = task.scheme.scored_labels
    overlaps = label_overlaps(reference, seg, scored, task.scheme.ignore_label)
    row: dict[str, Any] = {"case": case_id, "metrics": {
        (str(label) if isinstance(label, int) else "region_" + "_".join(map(str, label))):
            {"dice": o.dice, "iou": o.iou, "tp": o.tp, "fp": o.fp, "fn": o.fn}
        for label, o in zip(scored, overlaps, strict=True)}}
    if task.kind == "line":
        label = task.scheme.foreground_labels[0]
        distance = line_distance(reference == label, seg == label, spacing)
        row["line"] = {"mde": distance.mde, "status": distance.status,
                       "reference_pixels": distance.reference_pixels, "predicted_pixels": distance.predicted_pixels}
    return row


def _summarise_task(task: OutputTask, rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary = summarise(rows)
    if task.kind == "line":
        mde = summarise_line_distances([LineDistance(r["line"]["mde"], r["line"]["status"],
                                                     r["line"]["reference_pixels"], r["line"]["predicted_pixels"])
                                        for r in rows])
        summary["mde"] = {"mean": mde.mean, "median": mde.median, "scored": mde.scored,
                          "no_prediction": mde.no_prediction, "no_reference": mde.no_reference,
                          "both_empty": mde.both_empty}
    return summary


def _log_text(task: OutputTask, summary: dict[str, Any]) -> str:
    if task.kind == "line":
        return f"{task.name} MDE {summary['mde']['mean']:.2f} ({summary['mde']['no_prediction']} without a line)"
    return f"{task.name} Dice {summary['foreground_mean_dice']:.4f}"
