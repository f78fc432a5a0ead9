"""Training: one fold of one configuration, from the recipe to checkpoints and the final validation.

Entry point: :func:`train_fold` with a :class:`FoldJob`, a :class:`TrainingRecipe` (:func:`load_recipe` for named
recipes) and :class:`RunOptions`. Parts: the :class:`Trainer` loop, the task-specific :class:`Objective`
(:class:`SegmentationObjective`; :func:`register_objective` adds others), losses, online metrics, splits.
"""

from __future__ import annotations

from autounet.training.losses import (
    DeepSupervisionLoss,
    DiceBCELoss,
    DiceCELoss,
    SegmentationLoss,
    SoftDiceLoss,
    build_loss,
    deep_supervision_scales,
    deep_supervision_weights,
    downsample_targets,
)
from autounet.training.metrics import PseudoDiceTracker, tp_fp_fn
from autounet.training.objectives import (
    EpochMetric,
    Objective,
    ObjectiveContext,
    SegmentationObjective,
    build_objective,
    objective_names,
    register_objective,
)
from autounet.training.recipe import BUILTIN_RECIPES, RunOptions, TrainingRecipe, load_recipe
from autounet.training.run import FoldJob, train_fold
from autounet.training.splits import Fold, fold_cases, load_or_create_splits, make_splits
from autounet.training.trainer import Trainer, TrainingParts, TrainingState

# One name per line, grouped by module, so other modules' exports can be appended without conflicts.
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
