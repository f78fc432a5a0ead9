"""Loader-side augmentation: same batches for any number of workers and as when the trainer augments."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch

from autounet.data import AugmentationConfig, BatchAugmenter
from autounet.data.loader import BatchLoader, step_seed
from autounet.data.sampler import PatchSampler, SamplerSettings

PATCH = (4, 8, 8)
SAMPLING_PATCH = (6, 12, 11)


def _config() -> AugmentationConfig:
    # every transform likely, so that a few batches exercise all of them
    config = AugmentationConfig(patch_size=PATCH, sampling_patch_size=SAMPLING_PATCH,
                                rotation_ranges=((-0.5, 0.5),) * 3, mirror_axes=(0, 1, 2))
    probabilities = {f.name: 0.5 for f in dataclasses.fields(config) if f.name.startswith("p_")}
    return dataclasses.replace(config, **probabilities, masked_channels=(0,))


def _sampler(preprocessed_tiny: tuple) -> PatchSampler:
    plans, folder = preprocessed_tiny
    data_folder = folder / plans.configuration("3d_fullres").data_identifier
    cases = sorted(p.stem for p in data_folder.glob("*.json"))
    return PatchSampler(data_folder, cases, SamplerSettings(SAMPLING_PATCH, 3, 0.33))


def _epoch(loader: BatchLoader, epoch: int = 2, iterations: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    try:
        return [(image.copy(), seg.copy()) for image, seg in loader.epoch(epoch, iterations)]
    finally:
        loader.close()


def _equal(first: list[tuple[np.ndarray, np.ndarray]], second: list[tuple[np.ndarray, np.ndarray]]) -> bool:
    return all(np.array_equal(a, c) and np.array_equal(b, d) for (a, b), (c, d) in zip(first, second, strict=True))


@pytest.mark.parametrize("workers", [1, 2])
def test_augmented_batches_do_not_depend_on_the_workers(preprocessed_tiny: tuple, workers: int) -> None:
    augmenter = BatchAugmenter(_config(), torch.device("cpu"))
    reference = _epoch(BatchLoader(_sampler(preprocessed_tiny), 5, num_workers=0, augment=augmenter))
    batches = _epoch(BatchLoader(_sampler(preprocessed_tiny), 5, num_workers=workers, prefetch=2, augment=augmenter))
    assert _equal(reference, batches)
    image, seg = batches[0]
    assert image.shape == (3, 1, *PATCH) and image.dtype == np.float32
    assert seg.shape == (3, 1, *PATCH) and seg.dtype == np.int16 and seg.min() >= 0  # padding label removed


def test_loader_augmentation_equals_trainer_augmentation(preprocessed_tiny: tuple) -> None:
    augmenter = BatchAugmenter(_config(), torch.device("cpu"))
    in_loader = _epoch(BatchLoader(_sampler(preprocessed_tiny), 5, num_workers=2, augment=augmenter))
    # what Trainer._train_epoch does with an augmenting trainer and a plain loader, on one thread like the
    # loader's workers (torch's FFT, used by the elastic deformation, rounds differently on more threads)
    in_trainer = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for iteration, (image, seg) in enumerate(_epoch(BatchLoader(_sampler(preprocessed_tiny), 5, num_workers=0))):
            generator = torch.Generator().manual_seed(step_seed(5, 2, iteration))
            out = augmenter(torch.from_numpy(image), torch.from_numpy(seg), generator)
            in_trainer.append((out[0].numpy(), out[1].numpy()))
    finally:
        torch.set_num_threads(threads)
    assert _equal(in_loader, in_trainer)
    other_epoch = _epoch(BatchLoader(_sampler(preprocessed_tiny), 5, num_workers=0, augment=augmenter), epoch=3)
    assert not np.array_equal(in_loader[0][0], other_epoch[0][0])


def test_workers_augment_single_threaded_and_leave_thread_counts_alone(preprocessed_tiny: tuple) -> None:
    seen: list[int] = []
    augmenter = BatchAugmenter(_config(), torch.device("cpu"))

    def augment(image: torch.Tensor, seg: torch.Tensor,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(torch.get_num_threads())
        return augmenter(image, seg, generator)

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        _epoch(BatchLoader(_sampler(preprocessed_tiny), 5, num_workers=2, augment=augment))
        _epoch(BatchLoader(_sampler(preprocessed_tiny), 5, num_workers=0, augment=augment))
        assert torch.get_num_threads() == 2
        later: list[int] = []
        thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert later == [2]  # threads started afterwards still get the process default
    finally:
        torch.set_num_threads(before)
    assert seen == [1] * 8


def test_the_augmentation_must_stay_on_the_cpu(preprocessed_tiny: tuple) -> None:
    def to_meta(image: torch.Tensor, seg: torch.Tensor,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return image.to("meta"), seg.to("meta")

    with pytest.raises(ValueError, match="on the CPU"):
        _epoch(BatchLoader(_sampler(preprocessed_tiny), 5, num_workers=0, augment=to_meta), iterations=1)
