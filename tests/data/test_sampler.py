from __future__ import annotations

import numpy as np
import pytest

from autounet.data.loader import BatchLoader
from autounet.data.sampler import PAD_LABEL, PatchSampler, SamplerSettings, _patch_start
from autounet.preprocessing import load_case


def _sampler(preprocessed_tiny: tuple, config: str, patch: tuple[int, ...], batch: int = 3,
             oversample: float = 0.33) -> PatchSampler:
    plans, folder = preprocessed_tiny
    configuration = plans.configuration(config)
    data_folder = folder / configuration.data_identifier
    cases = sorted(p.stem for p in data_folder.glob("*.json"))
    return PatchSampler(data_folder, cases, SamplerSettings(patch, batch, oversample))


def test_batch_shapes_and_dtypes_3d(preprocessed_tiny: tuple) -> None:
    sampler = _sampler(preprocessed_tiny, "3d_fullres", (8, 16, 16))
    image, seg = sampler.sample_batch(np.random.default_rng(0))
    assert image.shape == (3, 1, 8, 16, 16) and image.dtype == np.float32
    assert seg.shape == (3, 1, 8, 16, 16) and seg.dtype == np.int16


def test_2d_patches_from_3d_data_are_single_slices(preprocessed_tiny: tuple) -> None:
    sampler = _sampler(preprocessed_tiny, "2d", (16, 16))
    image, seg = sampler.sample_batch(np.random.default_rng(1))
    assert image.shape == (3, 1, 16, 16) and seg.shape == (3, 1, 16, 16)


def test_forced_samples_contain_foreground(preprocessed_tiny: tuple) -> None:
    sampler = _sampler(preprocessed_tiny, "3d_fullres", (4, 6, 6), batch=4, oversample=1.0)
    for seed in range(20):
        _, seg = sampler.sample_batch(np.random.default_rng(seed))
        assert all((s > 0).any() for s in seg)


def test_oversampling_rule_forces_the_last_third() -> None:
    # nnU-Net's rule: with batch 2, one random and one forced sample; with batch 3, one forced.
    assert [j >= round(2 * (1 - 0.33)) for j in range(2)] == [False, True]
    assert [j >= round(3 * (1 - 0.33)) for j in range(3)] == [False, False, True]


def test_patch_larger_than_case_is_padded(preprocessed_tiny: tuple) -> None:
    sampler = _sampler(preprocessed_tiny, "3d_fullres", (40, 64, 64), batch=1)
    image, seg = sampler.sample_batch(np.random.default_rng(2))
    data, _, _ = load_case(sampler.folder, sampler.case_ids[0])
    assert image.shape[2:] == (40, 64, 64)
    assert (seg == PAD_LABEL).any() and (image[seg == PAD_LABEL] == 0).all()
    assert int((seg[0, 0] != PAD_LABEL).sum()) <= int(np.prod(data.shape[1:]))


def test_patch_content_matches_the_stored_case(preprocessed_tiny: tuple) -> None:
    sampler = _sampler(preprocessed_tiny, "3d_fullres", (4, 8, 8), batch=1)
    case_id = sampler.case_ids[0]
    data, seg, _ = load_case(sampler.folder, case_id)
    image_patch, seg_patch = sampler.sample_patch(case_id, False, np.random.default_rng(3))
    # Find the patch in the case: exact equality at one offset.
    found = any(np.array_equal(image_patch, data[:, z:z + 4, y:y + 8, x:x + 8])
                and np.array_equal(seg_patch, seg[z:z + 4, y:y + 8, x:x + 8])
                for z in range(data.shape[1] - 3) for y in range(data.shape[2] - 7) for x in range(data.shape[3] - 7))
    assert found


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_loader_is_deterministic_whatever_the_workers(preprocessed_tiny: tuple, workers: int) -> None:
    sampler = _sampler(preprocessed_tiny, "3d_fullres", (4, 8, 8))
    reference = [b[0] for b in BatchLoader(sampler, seed=7, num_workers=0).epoch(3, 5)]
    loader = BatchLoader(sampler, seed=7, num_workers=workers, prefetch=2)
    batches = [b[0] for b in loader.epoch(3, 5)]
    loader.close()
    assert all(np.array_equal(a, b) for a, b in zip(reference, batches, strict=True))
    other_epoch = [b[0] for b in BatchLoader(sampler, seed=7, num_workers=0).epoch(4, 5)]
    assert not np.array_equal(reference[0], other_epoch[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_partly_padded_patch_equals_a_crop_of_the_padded_case(preprocessed_tiny: tuple, seed: int) -> None:
    # larger than the case along the first and last axis, smaller along the middle one
    sampler = _sampler(preprocessed_tiny, "3d_fullres", (14, 8, 30), batch=1)
    case_id = sampler.case_ids[0]
    data, seg, _ = load_case(sampler.folder, case_id)
    image_patch, seg_patch = sampler.sample_patch(case_id, False, np.random.default_rng(seed))
    starts = _patch_start(data.shape[1:], (14, 8, 30), None, np.random.default_rng(seed))  # the same draws
    margin = 30
    padded_image = np.pad(data, [(0, 0)] + [(margin, margin)] * 3, constant_values=0)
    padded_seg = np.pad(seg, [(margin, margin)] * 3, constant_values=PAD_LABEL)
    box = tuple(slice(s + margin, s + margin + p) for s, p in zip(starts, (14, 8, 30), strict=True))
    assert np.array_equal(image_patch, padded_image[(slice(None), *box)])
    assert np.array_equal(seg_patch, padded_seg[box])
    assert (seg_patch == PAD_LABEL).any()


def test_final_patch_reaches_the_image_border_like_nnunet() -> None:
    """With a sampling patch larger than the final patch, the sampled patch may start before the image by half
    the difference (nnU-Net's need_to_pad), so the final centre patch can cover every border voxel."""
    rng = np.random.default_rng(0)
    starts = {tuple(_patch_start((100,), (40,), None, rng, (20,))) for _ in range(2000)}
    assert min(s[0] for s in starts) == -10 and max(s[0] for s in starts) == 100 + 10 - 40
    # without a final patch the sampled patch stays inside the image
    starts = {tuple(_patch_start((100,), (40,), None, rng)) for _ in range(2000)}
    assert min(s[0] for s in starts) == 0 and max(s[0] for s in starts) == 60
    # a forced centre at the border is clamped to the padded range
    assert _patch_start((100,), (40,), np.array([0]), rng, (20,)) == [-10]


def test_windows_write_only_their_part_and_draw_the_same_patches(preprocessed_tiny: tuple) -> None:
    """A window (what augmentation will read) gets exactly the values of the full patch there."""
    sampler = _sampler(preprocessed_tiny, "3d_fullres", (14, 20, 30), batch=3)
    full_image, full_seg = sampler.sample_batch(np.random.default_rng(4))
    # one window partly outside the image, one full patch, one window in a corner
    windows = [(slice(3, 11), slice(5, 15), slice(7, 23)), None, (slice(0, 2), slice(0, 3), slice(26, 30))]
    image, seg = sampler.sample_batch(np.random.default_rng(4), windows)
    for index, window in enumerate(windows):
        part = (index, slice(None), *(window or ()))
        assert np.array_equal(image[part], full_image[part])
        assert np.array_equal(seg[part], full_seg[part])
    with pytest.raises(ValueError, match="one window per sample"):
        sampler.sample_batch(np.random.default_rng(4), windows[:2])


def _stacked_case(folder, case_id: str, front_row: int) -> None:
    from autounet.io import ImageGeometry
    from autounet.preprocessing.properties import CaseProperties
    from autounet.preprocessing.storage import write_case

    zones = np.zeros((32, 32), dtype=np.int16)
    zones[:, 16:] = 1
    front = np.zeros((32, 32), dtype=np.int16)
    front[front_row, 16] = 1  # one pixel: never hit by chance often
    data = np.random.default_rng(0).standard_normal((1, 32, 32)).astype(np.float32)
    properties = CaseProperties(
        schema_version=1, case_id=case_id, original_geometry=ImageGeometry.default(2, (1.0, 1.0)),
        shape_before_crop=(32, 32), bbox_used_for_cropping=((0, 32), (0, 32)), shape_after_crop=(32, 32),
        spacing_after_resampling=(1.0, 1.0), shape_after_resampling=(32, 32),
        class_locations={1: tuple((y, x) for y in range(32) for x in range(16, 32))},
        further_map_class_locations=({1: ((front_row, 16),)},))
    write_case(folder, data, np.stack([zones, front]), properties)


def test_stacked_label_maps_come_as_channels_and_rare_classes_of_every_map_are_oversampled(tmp_path) -> None:
    _stacked_case(tmp_path, "a", front_row=3)
    sampler = PatchSampler(tmp_path, ["a"], SamplerSettings((8, 8), 1, oversample_foreground=1.0))
    assert sampler.num_label_channels == 2
    hits = 0
    for seed in range(40):
        image, seg = sampler.sample_batch(np.random.default_rng(seed))
        assert seg.shape == (1, 2, 8, 8)
        hits += int((seg[0, 1] == 1).any())
    # Forced samples choose among (map, class) pairs: the one front pixel is centred about half the time.
    assert 10 <= hits <= 35
