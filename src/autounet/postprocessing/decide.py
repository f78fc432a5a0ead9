"""Deciding the postprocessing on cross-validation predictions, as nnU-Net v2 does.

The rule (facts from nnU-Net v2's ``determine_postprocessing``):

1. Keep only the largest connected component of all foreground together. Accepted when the mean foreground
   Dice (mean over labels/regions of the mean over cases) strictly improves *and* no single label/region's
   mean Dice gets worse.
2. With more than one label/region, then for each label (or region, in dataset.json order), on top of what
   was accepted so far: keep only its largest component; accepted when that label's mean Dice strictly
   improves.

Dice per case leaves out cases where a label is absent from both reference and prediction (undefined), as
:mod:`autounet.evaluation` does. Each case is read once per pass; the label maps are never written out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from autounet.dataset.description import DatasetDescription
from autounet.errors import DatasetError
from autounet.evaluation import Label, label_overlaps, labels_from_description
from autounet.io.images import read_segmentation
from autounet.postprocessing.plan import DecisionStep, PostprocessingPlan, apply_postprocessing
from autounet.progress import parallel_map

__all__ = ["CasePair", "determine_postprocessing", "mean_dice", "scored_labels"]

logger = logging.getLogger(__name__)

CasePair = tuple[Path, Path]
"""(reference label map, predicted label map) of one case."""


def scored_labels(description: DatasetDescription) -> dict[str, Label]:
    """The labels (softmax datasets) or regions (region-based datasets) that Dice is computed on, by name."""
    return labels_from_description(description, regions=description.is_region_based)


@dataclass(frozen=True)
class _ScoreJob:
    reference: Path
    prediction: Path
    plans: tuple[PostprocessingPlan, ...]
    labels: tuple[Label, ...]
    ignore_label: int | None


def _score_case(job: _ScoreJob) -> list[list[float]]:
    """Dice per plan and label of one case (module level: picklable for worker processes)."""
    reference, _ = read_segmentation(job.reference)
    prediction, _ = read_segmentation(job.prediction)
    if reference.shape != prediction.shape:
        raise DatasetError(f"shape {prediction.shape} differs from the reference's {reference.shape} "
                           f"({job.reference})", job.prediction)
    scores = []
    for plan in job.plans:
        processed = apply_postprocessing(prediction, plan)
        scores.append([o.dice for o in label_overlaps(reference, processed, job.labels, job.ignore_label)])
    return scores


def _nanmean(values: Sequence[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(sum(defined) / len(defined)) if defined else math.nan


def _mean_dice_per_plan(pairs: Sequence[CasePair], plans: Sequence[PostprocessingPlan], labels: Mapping[str, Label],
                        ignore_label: int | None, num_processes: int,
                        description: str) -> list[dict[str, float]]:
    jobs = [_ScoreJob(ref, pred, tuple(plans), tuple(labels.values()), ignore_label) for ref, pred in pairs]
    per_case = parallel_map(_score_case, jobs, num_processes, description)
    return [{name: _nanmean([case[p][i] for case in per_case]) for i, name in enumerate(labels)}
            for p in range(len(plans))]


def mean_dice(pairs: Sequence[CasePair], labels: Mapping[str, Label], ignore_label: int | None = None,
              num_processes: int = 1, plan: PostprocessingPlan | None = None) -> dict[str, float]:
    """Mean Dice over cases per label/region, NaN where undefined in every case.

    Args:
        pairs: (reference, prediction) label map files.
        labels: Label values or regions (tuples, scored as unions) by name.
        ignore_label: Reference value left out of every score.
        num_processes: Worker processes.
        plan: Postprocessing applied to each prediction before scoring.

    Raises:
        DatasetError: A file is unreadable or shapes differ.
    """
    return _mean_dice_per_plan(pairs, [plan or PostprocessingPlan()], labels, ignore_label, num_processes,
                               "Scoring")[0]


def _foreground(means: Mapping[str, float]) -> float:
    return _nanmean(list(means.values()))


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _with_target(plan: PostprocessingPlan, label: Label, region_based: bool) -> PostprocessingPlan:
    if region_based:
        region = label if isinstance(label, tuple) else (label,)
        return replace(plan, largest_component_regions=(*plan.largest_component_regions, region))
    return replace(plan, largest_component_labels=(*plan.largest_component_labels, int(label)))  # type: ignore[arg-type]


def determine_postprocessing(pairs: Sequence[CasePair], labels: Mapping[str, Label], region_based: bool = False,
                             ignore_label: int | None = None, num_processes: int = 1) -> PostprocessingPlan:
    """Decide which largest-component steps improve Dice on cross-validation predictions.

    Args:
        pairs: (reference, prediction) label map files of every cross-validation case.
        labels: Labels (softmax models) or regions (region-based models, tuples of values) by name, in
            dataset.json order; see :func:`scored_labels`.
        region_based: The labels are regions (stored in ``largest_component_regions``).
        ignore_label: Reference value left out of every score.
        num_processes: Worker processes.

    Returns:
        The plan, with the Dice before/after of each step tried in ``steps``.

    Raises:
        DatasetError: No pairs, a file is unreadable or shapes differ.
    """
    if not pairs:
        raise DatasetError("no cross-validation predictions to decide the postprocessing on")
    candidate = PostprocessingPlan(largest_component_foreground=True)
    base, after = _mean_dice_per_plan(pairs, [PostprocessingPlan(), candidate], labels, ignore_label,
                                      num_processes, "Postprocessing: foreground")
    accepted = _foreground(after) > _foreground(base) and not any(after[n] < base[n] for n in labels)
    steps = [DecisionStep("foreground", _none_if_nan(_foreground(base)), _none_if_nan(_foreground(after)), accepted,
                          {n: _none_if_nan(v) for n, v in base.items()},
                          {n: _none_if_nan(v) for n, v in after.items()})]
    logger.info("largest foreground component: mean Dice %.5f -> %.5f, %s", _foreground(base), _foreground(after),
                "applied" if accepted else "not applied")
    plan, current = (candidate, after) if accepted else (PostprocessingPlan(), base)
    if len(labels) > 1:
        for name, label in labels.items():
            trial = _with_target(plan, label, region_based)
            result = _mean_dice_per_plan(pairs, [trial], labels, ignore_label, num_processes,
                                         f"Postprocessing: {name}")[0]
            accepted = result[name] > current[name]
            steps.append(DecisionStep(name, _none_if_nan(current[name]), _none_if_nan(result[name]), accepted))
            logger.info("largest component of %s: mean Dice %.5f -> %.5f, %s", name, current[name], result[name],
                        "applied" if accepted else "not applied")
            if accepted:
                plan, current = trial, result
    return replace(plan, steps=tuple(steps), num_cases=len(pairs))


