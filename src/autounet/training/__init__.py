"""Training: one fold of one configuration, from the recipe to checkpoints and the final validation.

Entry point: :func:`train_fold` with a :class:`FoldJob`, a :class:`TrainingRecipe` (:func:`load_recipe` for named
recipes) and :class:`RunOptions`. Parts: the :class:`Trainer` loop, the task-specific :class:`Objective`
(:class:`SegmentationObjective`; :func:`register_objective` adds others), losses, online metrics, splits.

The names load lazily, so the CLI and the preprocessing workers import only what they use (torch costs
seconds).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    # losses
    "DeepSupervisionLoss",
    "DiceBCELoss",
    "DiceCELoss",
    "SegmentationLoss",
    "SoftDiceLoss",
    "build_loss",
    "deep_supervision_scales",
    "deep_supervision_weights",
    "downsample_targets",
    # metrics
    "PseudoDiceTracker",
    "tp_fp_fn",
    # objectives
    "EpochMetric",
    "Objective",
    "ObjectiveContext",
    "SegmentationObjective",
    "build_objective",
    "objective_names",
    "register_objective",
    # multitask
    "MultiTaskObjective",
    # recipe
    "BUILTIN_RECIPES",
    "RunOptions",
    "TrainingRecipe",
    "load_recipe",
    # run
    "FoldJob",
    "train_fold",
    # splits
    "Fold",
    "fold_cases",
    "load_or_create_splits",
    "make_splits",
    # trainer
    "Trainer",
    "TrainingParts",
    "TrainingState",
]

_LAZY = {
    "DeepSupervisionLoss": "losses",
    "DiceBCELoss": "losses",
    "DiceCELoss": "losses",
    "SegmentationLoss": "losses",
    "SoftDiceLoss": "losses",
    "build_loss": "losses",
    "deep_supervision_scales": "losses",
    "deep_supervision_weights": "losses",
    "downsample_targets": "losses",
    "PseudoDiceTracker": "metrics",
    "tp_fp_fn": "metrics",
    "EpochMetric": "objectives",
    "Objective": "objectives",
    "ObjectiveContext": "objectives",
    "SegmentationObjective": "objectives",
    "build_objective": "objectives",
    "objective_names": "objectives",
    "register_objective": "objectives",
    "MultiTaskObjective": "multitask",
    "BUILTIN_RECIPES": "recipe",
    "RunOptions": "recipe",
    "TrainingRecipe": "recipe",
    "load_recipe": "recipe",
    "FoldJob": "run",
    "train_fold": "run",
    "Fold": "splits",
    "fold_cases": "splits",
    "load_or_create_splits": "splits",
    "make_splits": "splits",
    "Trainer": "trainer",
    "TrainingParts": "trainer",
    "TrainingState": "trainer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"autounet.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'autounet.training' has no attribute {name!r}")
