"""Postprocessing: keep the largest connected component (of the foreground, of labels or regions), decided
on cross-validation predictions and saved as ``postprocessing.json``."""

from __future__ import annotations

from autounet.postprocessing.decide import CasePair, determine_postprocessing, mean_dice, scored_labels
from autounet.postprocessing.plan import (
    POSTPROCESSING_FILE,
    DecisionStep,
    PostprocessingPlan,
    apply_postprocessing,
    keep_largest_component,
    load_postprocessing,
    save_postprocessing,
)
from autounet.postprocessing.tasks import (
    TaskPostprocessing,
    determine_task_postprocessing,
    load_any_postprocessing,
    save_task_postprocessing,
)

__all__ = [
    "POSTPROCESSING_FILE",
    "CasePair",
    "DecisionStep",
    "PostprocessingPlan",
    "TaskPostprocessing",
    "apply_postprocessing",
    "determine_postprocessing",
    "determine_task_postprocessing",
    "keep_largest_component",
    "load_any_postprocessing",
    "load_postprocessing",
    "mean_dice",
    "save_postprocessing",
    "save_task_postprocessing",
    "scored_labels",
]
