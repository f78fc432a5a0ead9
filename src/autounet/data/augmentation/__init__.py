"""Batched, device-side data augmentation with nnU-Net v2's transforms, parameters and order."""

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
