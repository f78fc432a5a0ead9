"""Calibration patches for post-training quantization, drawn as training draws them.

Activation ranges are calibrated on what the network saw while it was trained: patches of the preprocessed
training cases at the configuration's patch size, from :class:`autounet.data.sampler.PatchSampler` with the
same foreground oversampling (the last third of each batch centred on a foreground voxel). Without
oversampling, small structures would hardly appear in the calibration set and their activations would be
clipped. The draw is seeded, so a deployment is reproducible.

A cascade stage's patches carry the previous stage's one-hot label channels after the image's, cut from the
previous stage's cross-validation predictions of the same cases and one-hot encoded as training does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from autounet.data.sampler import PatchSampler, SamplerSettings
from autounet.errors import ConfigError
from autounet.inference.cascade import previous_stage_one_hot

__all__ = ["draw_calibration_patches"]


def draw_calibration_patches(data_folder: Path, case_ids: Sequence[str], patch_size: tuple[int, ...], count: int,
                             batch_size: int = 2, oversample_foreground: float = 0.33, seed: int = 0,
                             previous_stage_folder: Path | None = None,
                             foreground_labels: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``count`` patches from the preprocessed cases, batch by batch as the training loader does.

    Args:
        data_folder: The configuration's preprocessed-data folder (``<preprocessed>/<data identifier>``).
        case_ids: Training cases to draw from (e.g. a fold's training split).
        patch_size: The configuration's patch size (the network's input, not augmentation's larger one).
        count: Number of patches.
        batch_size: The configuration's batch size: oversampling forces the last
            ``batch_size - round(batch_size * (1 - oversample_foreground))`` patches of each batch to foreground.
        oversample_foreground: As in training.
        seed: Seed of the draw; the same seed gives the same patches.
        previous_stage_folder: For a cascade stage, the previous stage's predictions of the cases
            (``<case>.npy`` in this configuration's grid, as training reads them).
        foreground_labels: For a cascade stage, the labels one-hot encoded after the image channels.

    Returns:
        ``images`` float32 ``(count, C, *patch)`` (for a cascade ``C`` includes one channel per foreground label)
        and ``labels`` int16 ``(count, *patch)`` (``-1`` outside the image).

    Raises:
        ConfigError: ``count`` or ``batch_size`` is not positive.
        DatasetError: No cases, a case without labels, or (cascade) without a previous-stage prediction.
    """
    if count < 1 or batch_size < 1:
        raise ConfigError(f"calibration needs at least one patch and batch size >= 1, got {count} and {batch_size}")
    settings = SamplerSettings(tuple(patch_size), batch_size, oversample_foreground)
    sampler = PatchSampler(Path(data_folder), case_ids, settings, previous_stage_folder)
    rng = np.random.default_rng(seed)
    images, labels = [], []
    drawn = 0
    while drawn < count:
        batch_images, batch_segs = sampler.sample_batch(rng)
        if previous_stage_folder is not None:
            one_hot = previous_stage_one_hot(torch.from_numpy(batch_segs[:, -1]), foreground_labels, channel_axis=1)
            batch_images = np.concatenate([batch_images, one_hot.numpy()], axis=1)
        images.append(batch_images)
        labels.append(batch_segs[:, 0])
        drawn += batch_size
    return np.concatenate(images)[:count], np.concatenate(labels)[:count]
