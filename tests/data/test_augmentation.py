"""Batched augmentation: nnU-Net rules, exact geometry on toy volumes, reproducibility and replay."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from scipy.ndimage import gaussian_filter1d

from autounet.data import AugmentationConfig, BatchAugmenter, compute_sampling_patch_size, default_augmentation
from autounet.data.augmentation import AUGMENTATION_STEPS, sample_parameters
from autounet.data.augmentation.intensity import _odd_kernel_sizes, _resampling_indices
from autounet.data.augmentation.spatial import _affine_grid, centre_crop_slices, elastic_displacement
from autounet.errors import ConfigError
from autounet.io.serialization import from_dict, to_dict

CPU = torch.device("cpu")
HALF_PI = math.pi / 2


def only(config: AugmentationConfig, **switches: float) -> AugmentationConfig:
    """``config`` with every transform's probability 0 except the given ones (per-channel ones kept)."""
    zero = {f.name: 0.0 for f in dataclasses.fields(config)
            if f.name.startswith("p_") and not f.name.endswith("_per_channel")}
    return dataclasses.replace(config, **{**zero, **switches})


def small_config(ndim: int, **changes: object) -> AugmentationConfig:
    patch = (8, 12, 10) if ndim == 3 else (12, 10)
    sampling = (13, 17, 16) if ndim == 3 else (17, 16)
    rotation = ((-0.5, 0.5),) * (3 if ndim == 3 else 1)
    config = AugmentationConfig(patch_size=patch, sampling_patch_size=sampling, rotation_ranges=rotation,
                                mirror_axes=tuple(range(ndim)))
    return dataclasses.replace(config, **changes)


def batch(config: AugmentationConfig, batch_size: int = 2, channels: int = 2, seed: int = 0,
          labels: tuple[int, ...] = (0, 1, 2)) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    shape = (batch_size, 1, *config.sampling_patch_size)
    image = torch.from_numpy(rng.normal(size=(batch_size, channels, *config.sampling_patch_size))).float()
    seg = torch.from_numpy(rng.choice(labels, size=shape)).to(torch.int16)
    return image, seg


def centre_crop(tensor: torch.Tensor, config: AugmentationConfig) -> torch.Tensor:
    return tensor[(slice(None), slice(None), *centre_crop_slices(config.sampling_patch_size, config.patch_size))]


def run(config: AugmentationConfig, image: torch.Tensor, seg: torch.Tensor,
        seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return BatchAugmenter(config, CPU)(image, seg, torch.Generator().manual_seed(seed))


# --- nnU-Net's configuration rules ------------------------------------------------------------------------

@pytest.mark.parametrize(("patch", "expected"), [
    # values computed with nnU-Net's get_patch_size (nnunetv2 2.8.1)
    ((128, 128, 128), (205, 205, 205)),
    ((80, 192, 160), (194, 289, 210)),
    ((112, 112, 112), (179, 179, 179)),
    ((512, 512), (602, 602)),
    ((256, 128), (329, 150)),
    ((64, 48), (75, 75)),
    ((12, 256, 224), (12, 301, 301)),
    ((20, 320, 256), (20, 376, 376)),
])
def test_sampling_patch_size_matches_nnunet(patch: tuple[int, ...], expected: tuple[int, ...]) -> None:
    config = default_augmentation(patch, len(patch))
    assert config.sampling_patch_size == expected
    assert all(s >= p for s, p in zip(config.sampling_patch_size, patch, strict=True))


def test_default_rotation_and_dummy_2d_rules() -> None:
    elongated, square = default_augmentation((256, 128), 2), default_augmentation((512, 480), 2)
    assert elongated.rotation_ranges == ((-math.radians(15), math.radians(15)),)
    assert square.rotation_ranges == ((-math.pi, math.pi),)
    assert not elongated.dummy_2d and elongated.mirror_axes == (0, 1)
    iso = default_augmentation((128, 128, 128), 3)
    assert not iso.dummy_2d and iso.rotation_ranges == ((-math.radians(30), math.radians(30)),) * 3
    assert iso.mirror_axes == (0, 1, 2) and iso.low_resolution_ignore_axes == ()
    flat = default_augmentation((20, 320, 256), 3)  # 320 / 20 > 3
    assert flat.dummy_2d and flat.rotation_ranges == ((-math.pi, math.pi), (0.0, 0.0), (0.0, 0.0))
    assert flat.low_resolution_ignore_axes == (0,)
    assert not default_augmentation((40, 120, 120), 3).dummy_2d  # exactly 3 is not above the threshold
    assert compute_sampling_patch_size((64, 64), ((0.0, 0.0),)) == (75, 75)  # zoom margin only


def test_default_probabilities_are_nnunets() -> None:
    config = default_augmentation((64, 64, 64), 3)
    assert (config.p_rotation, config.p_scaling, config.p_elastic, config.scaling_range) == (0.2, 0.2, 0.0, (0.7, 1.4))
    assert (config.p_noise, config.p_blur, config.p_brightness, config.p_contrast) == (0.1, 0.2, 0.15, 0.15)
    assert (config.p_low_resolution, config.p_gamma_inverted, config.p_gamma) == (0.25, 0.1, 0.3)
    assert config.seg_padding_value == -1 and config.remove_padding_label


def test_config_json_round_trip_and_validation() -> None:
    config = default_augmentation((20, 320, 256), 3)
    data = json.loads(json.dumps(to_dict(config)))
    assert from_dict(AugmentationConfig, data) == config
    with pytest.raises(ConfigError, match="probability"):
        from_dict(AugmentationConfig, {**data, "p_noise": 1.5})
    with pytest.raises(ValueError, match="dummy_2d"):
        dataclasses.replace(config, rotation_ranges=((-1.0, 1.0),) * 3)
    with pytest.raises(ValueError, match="sampling_patch_size"):
        dataclasses.replace(config, sampling_patch_size=(20, 300, 376))
    with pytest.raises(ValueError):
        default_augmentation((64, 64), 3)


# --- reproducibility, replay, shapes ------------------------------------------------------------------------

def test_same_seed_same_batch_other_seed_other_batch() -> None:
    config = only(small_config(3), p_rotation=1.0, p_noise=1.0, p_blur=1.0, p_gamma=1.0, p_mirror_per_axis=0.5)
    image, seg = batch(config)
    first, second, other = run(config, image, seg, 7), run(config, image, seg, 7), run(config, image, seg, 8)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])


def test_replay_is_exact_and_inputs_are_untouched() -> None:
    config = dataclasses.replace(small_config(3), p_elastic=0.5)
    image, seg = batch(config, batch_size=4)
    image_copy, seg_copy = image.clone(), seg.clone()
    augmenter = BatchAugmenter(config, CPU)
    params = augmenter.sample(4, 2, torch.Generator().manual_seed(3))
    first, second = augmenter.apply(params, image, seg), augmenter.apply(params, image, seg)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert torch.equal(image, image_copy) and torch.equal(seg, seg_copy)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_output_shapes_and_dtypes(ndim: int, batch_size: int) -> None:
    config = dataclasses.replace(small_config(ndim), p_rotation=0.5, p_scaling=0.5, p_elastic=0.3)
    image, seg = batch(config, batch_size=batch_size, channels=3)
    out_image, out_seg = run(config, image, seg.to(torch.int64))
    assert out_image.shape == (batch_size, 3, *config.patch_size) and out_image.dtype == torch.float32
    assert out_seg.shape == (batch_size, 1, *config.patch_size) and out_seg.dtype == torch.int64
    assert torch.isfinite(out_image).all()


def test_no_op_config_gives_the_exact_centre_crop() -> None:
    config = only(small_config(3), p_mirror_per_axis=0.0)
    config = dataclasses.replace(config, remove_padding_label=False)
    image, seg = batch(config, batch_size=3, labels=(-1, 0, 4))
    out_image, out_seg = run(config, image, seg)
    assert torch.equal(out_image, centre_crop(image, config)) and torch.equal(out_seg, centre_crop(seg, config))


def test_untransformed_samples_of_a_mixed_batch_are_plain_crops() -> None:
    config = dataclasses.replace(only(small_config(3), p_rotation=0.5, p_scaling=0.5), remove_padding_label=False)
    image, seg = batch(config, batch_size=8)
    augmenter = BatchAugmenter(config, CPU)
    params = augmenter.sample(8, 2, torch.Generator().manual_seed(1))
    assert 0 < int(params.do_spatial.sum()) < 8
    out_image, out_seg = augmenter.apply(params, image, seg)
    crop_image, crop_seg = centre_crop(image, config), centre_crop(seg, config)
    for sample, moved in enumerate(params.do_spatial.tolist()):
        assert torch.equal(out_image[sample], crop_image[sample]) != moved
        assert moved or torch.equal(out_seg[sample], crop_seg[sample])


def test_inputs_must_fit_the_configuration() -> None:
    config = small_config(2)
    augmenter = BatchAugmenter(config, CPU)
    image, seg = batch(config)
    with pytest.raises(ValueError, match="sampling"):
        augmenter(image[..., :-1], seg, torch.Generator())
    with pytest.raises(ValueError, match="integer"):
        augmenter(image, seg.float(), torch.Generator())
    with pytest.raises(ValueError, match="parameters"):
        augmenter.apply(augmenter.sample(3, 2, torch.Generator()), image, seg)


# --- spatial geometry ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("axis", "k", "dims"), [(0, -1, (3, 4)), (1, 1, (2, 4)), (2, -1, (2, 3))])
def test_rotation_by_90_degrees_equals_rot90(axis: int, k: int, dims: tuple[int, int]) -> None:
    ranges = [(0.0, 0.0)] * 3
    ranges[axis] = (HALF_PI, HALF_PI)
    config = only(AugmentationConfig(patch_size=(7, 7, 7), sampling_patch_size=(7, 7, 7),
                                     rotation_ranges=tuple(ranges), mirror_axes=()), p_rotation=1.0)
    seg = torch.randint(0, 50, (2, 1, 7, 7, 7), generator=torch.Generator().manual_seed(0)).to(torch.int16)
    out_image, out_seg = run(config, seg.float(), seg)
    assert torch.equal(out_seg, torch.rot90(seg, k, dims))  # nearest sampling lands exactly on voxels
    torch.testing.assert_close(out_image, torch.rot90(seg.float(), k, dims), atol=1e-4, rtol=0)


def test_rotation_by_90_degrees_in_2d() -> None:
    config = only(AugmentationConfig(patch_size=(9, 9), sampling_patch_size=(11, 11),
                                     rotation_ranges=((HALF_PI, HALF_PI),), mirror_axes=()), p_rotation=1.0)
    seg = torch.randint(0, 9, (1, 1, 11, 11), generator=torch.Generator().manual_seed(0)).to(torch.int16)
    _, out_seg = run(config, seg.float(), seg)
    assert torch.equal(out_seg, torch.rot90(centre_crop(seg, config), -1, (2, 3)))


@pytest.mark.parametrize("factor", [0.5, 1.4])
def test_scaling_samples_a_region_of_factor_times_the_patch(factor: float) -> None:
    # A linear ramp is reproduced exactly by linear interpolation: out = centre + factor * offset.
    config = only(AugmentationConfig(patch_size=(9, 9, 9), sampling_patch_size=(15, 15, 15),
                                     rotation_ranges=((0.0, 0.0),) * 3, mirror_axes=(),
                                     scaling_range=(factor, factor)), p_scaling=1.0)
    ramp = torch.arange(15, dtype=torch.float32)
    image = torch.stack([ramp.view(-1, 1, 1).expand(15, 15, 15), ramp.view(1, 1, -1).expand(15, 15, 15)])[None]
    out_image, _ = run(config, image, torch.zeros(1, 1, 15, 15, 15, dtype=torch.int16))
    expected = 7 + factor * (torch.arange(9, dtype=torch.float32) - 4)
    torch.testing.assert_close(out_image[0, 0, :, 4, 4], expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(out_image[0, 1, 4, 4, :], expected, atol=1e-4, rtol=0)
    assert out_image[0, 0, 4, 4, 4] == pytest.approx(7.0, abs=1e-5)  # the centre voxel stays put


def test_segmentation_keeps_only_input_labels_and_padding() -> None:
    config = dataclasses.replace(small_config(3), p_rotation=1.0, p_scaling=1.0, p_elastic=0.5,
                                 scaling_range=(1.4, 1.4), remove_padding_label=False)
    image, seg = batch(config, batch_size=4, labels=(-1, 0, 3, 7))
    _, out_seg = run(config, image, seg)
    assert set(out_seg.unique().tolist()) <= {-1, 0, 3, 7}
    assert (out_seg == -1).any()
    _, removed = run(dataclasses.replace(config, remove_padding_label=True), image, seg)
    assert set(removed.unique().tolist()) <= {0, 3, 7}


def test_dummy_2d_never_mixes_slices() -> None:
    config = dataclasses.replace(default_augmentation((6, 40, 32), 3), p_rotation=1.0, p_scaling=1.0, p_elastic=1.0,
                                 scaling_range=(1.4, 1.4), remove_padding_label=False)
    assert config.dummy_2d
    depth = config.sampling_patch_size[0]
    values = torch.arange(1, depth + 1, dtype=torch.float32).view(1, 1, depth, 1, 1)
    image = values.expand(2, 1, *config.sampling_patch_size).contiguous()
    seg = (values.to(torch.int16) % 3).expand(2, 1, *config.sampling_patch_size).contiguous()
    out_image, out_seg = run(only(config, p_rotation=1.0, p_scaling=1.0, p_elastic=1.0), image, seg)
    coverage = out_image / values  # the in-plane weight of the image against the zero padding
    torch.testing.assert_close(coverage, coverage[:, :, :1].expand_as(coverage), atol=1e-5, rtol=0)
    assert (coverage < 0.999).any()  # padding was reached, so the test is not vacuous
    for z in range(depth):
        assert set(out_seg[:, :, z].unique().tolist()) <= {(z + 1) % 3, -1}


def test_affine_grid_matches_torch() -> None:
    theta = torch.randn(3, 3, 4, generator=torch.Generator().manual_seed(0))
    mine = _affine_grid(theta, [5, 6, 7])
    reference_theta = torch.cat([theta[:, :, :-1].flip(1, 2), theta[:, :, -1:].flip(1)], dim=2)
    torch.testing.assert_close(mine, F.affine_grid(reference_theta, [3, 1, 5, 6, 7], align_corners=False))


def test_elastic_field_has_zero_mean_and_the_drawn_peak() -> None:
    config = dataclasses.replace(small_config(3), p_elastic=1.0)
    params = sample_parameters(config, 2, 1, torch.Generator().manual_seed(0))
    field = elastic_displacement(params, torch.arange(2), list(config.patch_size), CPU, torch.float32)
    assert field.shape == (2, 3, *config.patch_size)
    torch.testing.assert_close(field.mean(dim=(2, 3, 4)), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(field.abs().amax(dim=(2, 3, 4)), params.elastic_alpha.float(), rtol=1e-5, atol=1e-6)


# --- mirroring, masking ----------------------------------------------------------------------------------------

def test_mirroring_flips_image_and_segmentation_together() -> None:
    config = dataclasses.replace(only(small_config(3), p_mirror_per_axis=0.5), mirror_axes=(0, 2))
    image, seg = batch(config, batch_size=6)
    augmenter = BatchAugmenter(config, CPU)
    params = augmenter.sample(6, 2, torch.Generator().manual_seed(5))
    assert not params.mirror[:, 1].any() and params.mirror.any()
    out_image, out_seg = augmenter.apply(params, image, seg)
    for sample in range(6):
        dims = [1 + axis for axis in range(3) if params.mirror[sample, axis]]
        assert torch.equal(out_image[sample], centre_crop(image, config)[sample].flip(dims))
        assert torch.equal(out_seg[sample], centre_crop(seg, config)[sample].flip(dims))


def test_masked_channels_are_zeroed_outside_the_image() -> None:
    config = dataclasses.replace(only(small_config(2)), masked_channels=(1,))
    image, seg = batch(config, labels=(-1, 1))
    out_image, out_seg = run(config, image + 5, seg)
    outside = centre_crop(seg, config)[:, 0] == -1
    assert (out_image[:, 1][outside] == 0).all() and (out_image[:, 1][~outside] != 0).all()
    assert (out_image[:, 0] != 0).all() and set(out_seg.unique().tolist()) == {0, 1}


# --- intensity transforms --------------------------------------------------------------------------------------

def augment_only(ndim: int = 3, channels: int = 2, **switches: float) -> tuple[torch.Tensor, torch.Tensor, object]:
    config = only(small_config(ndim), **switches)
    image, seg = batch(config, batch_size=3, channels=channels)
    image = image * 2 + 3
    augmenter = BatchAugmenter(config, CPU)
    params = augmenter.sample(3, channels, torch.Generator().manual_seed(2))
    return augmenter.apply(params, image, seg)[0], centre_crop(image, config), params


@pytest.mark.parametrize("switch", ["p_gamma", "p_gamma_inverted"])
def test_gamma_retains_mean_and_std(switch: str) -> None:
    out, before, _ = augment_only(**{switch: 1.0})
    assert not torch.allclose(out, before)
    torch.testing.assert_close(out.mean(dim=(2, 3, 4)), before.mean(dim=(2, 3, 4)), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.std(dim=(2, 3, 4)), before.std(dim=(2, 3, 4)), atol=1e-4, rtol=1e-4)


def test_contrast_preserves_range_and_brightness_multiplies() -> None:
    out, before, params = augment_only(p_contrast=1.0)
    flat_out, flat_before = out.flatten(2), before.flatten(2)
    low, high = flat_before.amin(2, keepdim=True), flat_before.amax(2, keepdim=True)
    assert (flat_out >= low).all() and (flat_out <= high).all()
    mean = flat_before.mean(2, keepdim=True)
    factor = params.contrast_factor.float()[..., None]
    expected = torch.clamp((flat_before - mean) * factor + mean, low, high)
    torch.testing.assert_close(flat_out, expected, atol=1e-5, rtol=1e-5)
    out, before, params = augment_only(p_brightness=1.0)
    torch.testing.assert_close(out, before * params.brightness_factor.float().view(3, 2, 1, 1, 1))


def test_noise_has_the_drawn_standard_deviation() -> None:
    config = only(AugmentationConfig(patch_size=(64, 64, 64), sampling_patch_size=(64, 64, 64),
                                     rotation_ranges=((0.0, 0.0),) * 3, mirror_axes=(),
                                     noise_std_range=(0.05, 0.1)), p_noise=1.0)
    image = torch.zeros(2, 1, 64, 64, 64)
    augmenter = BatchAugmenter(config, CPU)
    params = augmenter.sample(2, 1, torch.Generator().manual_seed(0))
    out, _ = augmenter.apply(params, image, torch.zeros(2, 1, 64, 64, 64, dtype=torch.int16))
    torch.testing.assert_close(out.std(dim=(1, 2, 3, 4)).double(), params.noise_std, rtol=0.02, atol=0)


def test_blur_matches_scipy_with_batchgenerators_kernel_size() -> None:
    out, before, params = augment_only(p_blur=1.0)
    assert params.blur_channels.any() and not params.blur_channels.all()
    for sample, channel in np.ndindex(3, 2):
        expected = before[sample, channel].double().numpy()
        if params.blur_channels[sample, channel]:
            for axis in range(3):
                sigma = params.blur_sigma[sample, channel, axis:axis + 1]
                radius = int(_odd_kernel_sizes(sigma)[0]) // 2
                # torch's reflect padding is scipy's mirror mode
                expected = gaussian_filter1d(expected, float(sigma[0]), axis=axis, mode="mirror", radius=radius)
        np.testing.assert_allclose(out[sample, channel].numpy(), expected, atol=1e-5)


def test_low_resolution_matches_interpolate() -> None:
    out, before, params = augment_only(ndim=2, channels=3, p_low_resolution=1.0)
    for sample, channel in np.ndindex(3, 3):
        x = before[sample, channel][None, None]
        if params.low_resolution_channels[sample, channel]:
            size = [round(s * float(params.low_resolution_zoom[sample, channel])) for s in x.shape[2:]]
            x = F.interpolate(F.interpolate(x, size=size, mode="nearest-exact"), size=x.shape[2:], mode="bilinear")
        torch.testing.assert_close(out[sample, channel], x[0, 0], atol=1e-4, rtol=0)


def test_low_resolution_indices_follow_interpolate_on_exact_ties() -> None:
    # (21 + 0.5) * 64 / 43 is exactly 32: float32 rounding decides, as inside interpolate
    first, _, _ = _resampling_indices(64, torch.tensor([43 / 64], dtype=torch.float64))
    reference = F.interpolate(torch.arange(64.0)[None, None], size=43, mode="nearest-exact")[0, 0]
    assert int(reference[21]) == 32 and 32 in first[0].tolist()


# --- every registered step -----------------------------------------------------------------------------------

@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("step", AUGMENTATION_STEPS, ids=lambda step: step.name)
def test_each_step_alone(step: object, ndim: int) -> None:
    config = only(small_config(ndim), **{switch: 1.0 for switch in step.switches})
    config = dataclasses.replace(config, p_blur_per_channel=1.0, p_low_resolution_per_channel=1.0)
    image, seg = batch(config, batch_size=2, channels=2, labels=(-1, 0, 1, 2))
    out_image, out_seg = run(config, image, seg)
    assert out_image.shape == (2, 2, *config.patch_size) and out_seg.shape == (2, 1, *config.patch_size)
    assert torch.isfinite(out_image).all()
    assert set(out_seg.unique().tolist()) <= {0, 1, 2}
    if step.switches:
        assert not torch.equal(out_image, centre_crop(image, config))


@pytest.mark.parametrize(("spatial", "out", "label_high", "block"), [
    ((17, 19), (12, 10), 4, 1), ((9, 11, 13), (6, 8, 7), 4, 1), ((9, 11, 13), (6, 8, 7), 300, 1),
    ((18, 21), (12, 10), 4, 3), ((9, 12, 15), (6, 8, 7), 4, 3)])
def test_linear_label_interpolation_equals_resampled_indicators(spatial: tuple[int, ...], out: tuple[int, ...],
                                                                label_high: int, block: int) -> None:
    """The neighbour-weight computation gives exactly grid_sample of each label's indicator, then argmax.

    Voxel-wise random labels make every voxel a boundary; ``block`` > 1 gives regions of one label, where
    voxels with agreeing neighbours take the shortcut.
    """
    from autounet.data.augmentation.spatial import _warp_labels_linear

    generator = torch.Generator().manual_seed(len(spatial) + label_high + block)
    coarse = torch.randint(-1, label_high, (3, 2, *(s // block for s in spatial)), generator=generator)
    seg = F.interpolate(coarse.float(), scale_factor=block, mode="nearest").to(torch.int16)
    # random affine maps, some reaching far outside the patch; 300 labels take the sorted-labels path
    theta = torch.randn(3, len(spatial), len(spatial) + 1, generator=generator) * 0.6
    grid = F.affine_grid(theta, [3, 1, *out], align_corners=False)
    labels = torch.unique(seg)
    indicators = (seg.unsqueeze(1) == labels.view(1, -1, *([1] * (seg.ndim - 1)))).float().flatten(1, 2)
    scores = F.grid_sample(indicators, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    best, index = scores.view(3, len(labels), 2, *out).max(dim=1)
    expected = labels[index].masked_fill_(best <= 0, -1)
    result = _warp_labels_linear(seg, grid, -1)
    assert result.dtype == seg.dtype
    assert torch.equal(result, expected)
    assert bool((expected == -1).any()) and bool((expected >= 0).any())


def test_linear_label_interpolation_keeps_labels_on_identity_and_pads_outside() -> None:
    """nnU-Net's label resampling: per-label linear indicators, argmax; outside the patch the padding label."""
    import torch.nn.functional as F  # noqa: N812

    from autounet.data.augmentation.spatial import _warp_labels_linear

    seg = torch.randint(-1, 4, (2, 2, 6, 7), generator=torch.Generator().manual_seed(0)).to(torch.int16)
    identity = F.affine_grid(torch.eye(2, 3).expand(2, 2, 3), [2, 1, 6, 7], align_corners=False)
    assert torch.equal(_warp_labels_linear(seg, identity, -1), seg)
    # Shift by a whole patch width: every voxel samples outside the patch.
    shifted = identity.clone()
    shifted[..., 0] += 3.0
    assert bool((_warp_labels_linear(seg, shifted, -1) == -1).all())
    # Half a voxel between a label-2 column and a label-1 column: a tie keeps the first (smaller) label.
    halves = torch.tensor([[[[1, 2]]]], dtype=torch.int16)
    between = torch.zeros(1, 1, 1, 2)
    assert _warp_labels_linear(halves, between, -1).item() == 1
