"""Batched data augmentation (GPU: in the trainer; CPU: in the loader's workers) with nnU-Net v2's transforms."""

from __future__ import annotations

from autounet.data.augmentation.config import AugmentationConfig, compute_sampling_patch_size, default_augmentation
from autounet.data.augmentation.params import AugmentationParameters, sample_parameters
from autounet.data.augmentation.pipeline import AUGMENTATION_STEPS, AugmentationStep, BatchAugmenter

__all__ = [
    "AUGMENTATION_STEPS",
    "AugmentationConfig",
    "AugmentationParameters",
    "AugmentationStep",
    "BatchAugmenter",
    "compute_sampling_patch_size",
    "default_augmentation",
    "sample_parameters",
]
