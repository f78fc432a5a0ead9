"""Inference: sliding-window prediction with Gaussian blending and mirroring, and logits to labels."""

from __future__ import annotations

from autounet.inference.cpu_memory import tune_cpu_allocator
from autounet.inference.gaussian import gaussian_importance_map
from autounet.inference.logits import logits_to_probabilities, logits_to_segmentation
from autounet.inference.predictor import LoadedModel, PredictionSettings, Predictor
from autounet.inference.sliding_window import (
    PatchModel,
    SlidingWindowSettings,
    predict_sliding_window,
    window_starts,
)
from autounet.inference.tta import mirror_dim_combinations, predict_mirrored

__all__ = [
    "LoadedModel",
    "PatchModel",
    "PredictionSettings",
    "Predictor",
    "SlidingWindowSettings",
    "gaussian_importance_map",
    "logits_to_probabilities",
    "logits_to_segmentation",
    "mirror_dim_combinations",
    "predict_mirrored",
    "predict_sliding_window",
    "tune_cpu_allocator",
    "window_starts",
]
