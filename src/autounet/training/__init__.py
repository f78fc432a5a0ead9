"""Training: losses, label handling, online metrics, cross-validation splits (the loop comes later)."""

from __future__ import annotations

from autounet.training.labels import LabelScheme
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
from autounet.training.splits import Fold, fold_cases, load_or_create_splits, make_splits

# One name per line, grouped by module, so other modules' exports can be appended without conflicts.
__all__ = [
    # labels
    "LabelScheme",
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
    # splits
    "Fold",
    "fold_cases",
    "load_or_create_splits",
    "make_splits",
]
