"""Training data: preprocessed-case access, patch sampling, augmentation and loaders."""

from __future__ import annotations

from autounet.data.augmentation import (
    AugmentationConfig,
    AugmentationParameters,
    BatchAugmenter,
    compute_sampling_patch_size,
    default_augmentation,
)

__all__ = [
    "AugmentationConfig",
    "AugmentationParameters",
    "BatchAugmenter",
    "compute_sampling_patch_size",
    "default_augmentation",
]
