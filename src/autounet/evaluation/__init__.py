"""Evaluation: overlap and distance metrics, summaries over cases."""

from __future__ import annotations

from autounet.evaluation.metrics import (
    METRIC_NAMES,
    Label,
    LabelMetrics,
    LabelOverlap,
    case_metrics,
    label_mask,
    label_overlaps,
)
from autounet.evaluation.summary import (
    CaseEvaluation,
    EvaluationSummary,
    evaluate_folders,
    label_name,
    labels_from_description,
)
from autounet.evaluation.surface import hd95, image_diagonal_mm, normalized_surface_dice, surface_distances

__all__ = [
    "METRIC_NAMES",
    "CaseEvaluation",
    "EvaluationSummary",
    "Label",
    "LabelMetrics",
    "LabelOverlap",
    "case_metrics",
    "evaluate_folders",
    "hd95",
    "image_diagonal_mm",
    "label_mask",
    "label_name",
    "label_overlaps",
    "labels_from_description",
    "normalized_surface_dice",
    "surface_distances",
]
