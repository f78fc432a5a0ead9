"""Calibration patches for post-training quantization, drawn as training draws them.

Activation ranges are calibrated on what the network saw while it was trained: patches of the preprocessed
training cases at the configuration's patch size, from :class:`autounet.data.sampler.PatchSampler` with the
same foreground oversampling (the last third of each batch centred on a foreground voxel). Without
oversampling, small structures would hardly appear in the calibration set and their activations would be
clipped. The draw is seeded, so a deployment is reproducible.

A model that comes without autounet's preprocessed data (an nnU-Net v2 model folder) is calibrated by
:func:`draw_raw_calibration_patches`: it preprocesses up to :data:`MAX_CALIBRATION_CASES` of the raw training
cases with the model's own plans into a temporary folder and draws from those the same way.

A cascade stage's patches carry the previous stage's one-hot label channels after the image's, cut from the
previous stage's cross-validation predictions of the same cases and one-hot encoded as training does.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from autounet.data.sampler import PatchSampler, SamplerSettings
from autounet.dataset.raw import RawDataset
from autounet.errors import ConfigError, DatasetError
from autounet.inference.cascade import previous_stage_one_hot
from autounet.planning.plans import Plans
from autounet.preprocessing.dataset import preprocess_dataset

__all__ = ["MAX_CALIBRATION_CASES", "draw_calibration_patches", "draw_raw_calibration_patches", "spread_cases"]

MAX_CALIBRATION_CASES = 16
"""Raw cases preprocessed for calibration at most: 16 cases give dozens of distinct patches (enough for
activation ranges) while preprocessing them takes seconds to a few minutes, not the hours of a whole dataset."""


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


def spread_cases(case_ids: Sequence[str], limit: int) -> tuple[str, ...]:
    """At most ``limit`` of the cases, spread evenly over their sorted order (deterministic, no seed).

    Raises:
        ConfigError: ``limit`` is not positive.
    """
    if limit < 1:
        raise ConfigError(f"the number of calibration cases must be at least 1, got {limit}")
    ids = sorted(set(case_ids))
    if len(ids) <= limit:
        return tuple(ids)
    # Evenly spaced picks: a sorted list often groups cases by site or scanner, so its head alone is biased.
    return tuple(ids[index * len(ids) // limit] for index in range(limit))


def draw_raw_calibration_patches(dataset: RawDataset, case_ids: Sequence[str], plans: Plans, configuration: str,
                                 count: int, max_cases: int = MAX_CALIBRATION_CASES, num_processes: int = 1,
                                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Preprocess raw training cases with the model's plans, then draw calibration patches from them.

    For a model without autounet's preprocessed data (an nnU-Net v2 model folder): the cases are preprocessed
    exactly as autounet's ``preprocess`` would with ``plans`` (the model's translated plans), into a temporary
    folder that is removed afterwards, and :func:`draw_calibration_patches` draws from them with the
    configuration's patch size, batch size and foreground oversampling.

    Args:
        dataset: The raw dataset the model was trained on.
        case_ids: Its labelled training cases (e.g. the deployed folds' training splits).
        plans: The model's plans, holding ``configuration``.
        configuration: The configuration's name.
        count: Number of patches.
        max_cases: At most this many cases are preprocessed, chosen by :func:`spread_cases`.
        num_processes: Preprocessing worker processes.
        seed: Seed of the draw.

    Returns:
        ``images`` and ``labels`` as :func:`draw_calibration_patches` returns them.

    Raises:
        DatasetError: No cases, a case not in the dataset, or a case without labels.
        ConfigError: Plans that do not fit the data, or ``count``/``max_cases`` not positive.
    """
    chosen = spread_cases(case_ids, max_cases)
    if not chosen:
        raise DatasetError("no training cases to calibrate on", dataset.root)
    by_id = {case.case_id: case for case in dataset.cases}
    unknown = [case_id for case_id in chosen if case_id not in by_id]
    if unknown:
        raise DatasetError(f"calibration case '{unknown[0]}' is not in the dataset", dataset.root)
    unlabelled = [case_id for case_id in chosen if by_id[case_id].label_file is None]
    if unlabelled:
        raise DatasetError(f"calibration case '{unlabelled[0]}' has no label file", dataset.root)
    plan = plans.configuration(configuration)
    subset = replace(dataset, cases=tuple(by_id[case_id] for case_id in chosen))
    with tempfile.TemporaryDirectory(prefix="autounet-calibration-") as temporary:
        report = preprocess_dataset(subset, plans, (configuration,), Path(temporary), num_processes)
        return draw_calibration_patches(report.folders[configuration], chosen, tuple(plan.patch_size), count,
                                        batch_size=plan.batch_size, seed=seed)
