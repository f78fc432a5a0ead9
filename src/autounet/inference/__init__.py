"""Inference: sliding-window prediction with Gaussian blending and mirroring, and logits to labels.

Parts, each in its own module: window placement and the driver (``sliding_window``), merging window outputs
(``merger``: the :class:`WindowMerger` role and today's :class:`GaussianLogitMerger`), loading a model folder
(``model_folder``, ``nnunet_model``) into a :class:`LoadedModel` of patch callables, the prediction back to
the original geometry (``original_geometry``), and the :class:`Predictor` that ties them together.
"""

from __future__ import annotations

from autounet.inference.cpu_memory import tune_cpu_allocator
from autounet.inference.gaussian import gaussian_importance_map
from autounet.inference.loaded_model import LoadedModel
from autounet.inference.logits import logits_to_probabilities, logits_to_segmentation
from autounet.inference.merger import GaussianLogitMerger, Window, WindowGrid, WindowMerger
from autounet.inference.model_folder import load_model_folder
from autounet.inference.original_geometry import to_original_geometry
from autounet.inference.predictor import PredictionSettings, Predictor
from autounet.inference.sliding_window import (
    PatchModel,
    SlidingWindowSettings,
    iter_window_batches,
    merge_windows,
    predict_sliding_window,
    window_starts,
)
from autounet.inference.tta import mirror_dim_combinations, predict_mirrored

__all__ = [
    "GaussianLogitMerger",
    "LoadedModel",
    "PatchModel",
    "PredictionSettings",
    "Predictor",
    "SlidingWindowSettings",
    "Window",
    "WindowGrid",
    "WindowMerger",
    "gaussian_importance_map",
    "iter_window_batches",
    "load_model_folder",
    "logits_to_probabilities",
    "logits_to_segmentation",
    "merge_windows",
    "mirror_dim_combinations",
    "predict_mirrored",
    "predict_sliding_window",
    "to_original_geometry",
    "tune_cpu_allocator",
    "window_starts",
]
