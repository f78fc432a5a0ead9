from __future__ import annotations

import itertools
import platform
import sys

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from autounet.inference import (
    SlidingWindowSettings,
    gaussian_importance_map,
    logits_to_probabilities,
    logits_to_segmentation,
    predict_sliding_window,
    tune_cpu_allocator,
    window_starts,
)
from autounet.networks import UNetSpec, build_network

# Fixed 1x1 "convolution" from 2 input channels to 3 outputs: a pointwise model, exactly translation- and
# flip-equivariant, so any correct blending of windows reproduces it on the whole image.
WEIGHT = torch.tensor([[1.0, -2.0], [0.5, 0.25], [-1.0, 3.0]])
BIAS = torch.tensor([0.1, -0.2, 0.3])


def pointwise(x: torch.Tensor) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return torch.einsum("kc,bc...->bk...", WEIGHT, x) + BIAS.reshape(shape)


def ramp(patch: tuple[int, ...]) -> torch.Tensor:
    """A position-in-patch signal that no flip or shift leaves unchanged."""
    return torch.arange(int(np.prod(patch)), dtype=torch.float32).reshape(patch) / 7.0


def positional(x: torch.Tensor) -> torch.Tensor:
    """Not translation-equivariant: adds the voxel's position inside the patch to every channel."""
    return pointwise(x) + ramp(tuple(x.shape[2:]))


def scipy_importance_map(patch: tuple[int, ...], sigma_scale: float = 1 / 8) -> np.ndarray:
    impulse = np.zeros(patch)
    impulse[tuple(p // 2 for p in patch)] = 1
    weights = gaussian_filter(impulse, [p * sigma_scale for p in patch], 0, mode="constant", cval=0)
    weights = weights / weights.max() * 10
    weights[weights == 0] = weights[weights > 0].min()
    return weights


def reference_blend(model, image: torch.Tensor, num_outputs: int, patch: tuple[int, ...],
                    step: float) -> torch.Tensor:
    """Slow, obviously-correct Gaussian blending: one window at a time, explicit weight sum (no padding)."""
    weights = torch.from_numpy(scipy_importance_map(patch)).float()
    total = torch.zeros((num_outputs, *image.shape[1:]))
    norm = torch.zeros(image.shape[1:])
    for start in itertools.product(*window_starts(image.shape[1:], patch, step)):
        region = tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
        total[(slice(None), *region)] += model(image[(slice(None), *region)][None])[0] * weights
        norm[region] += weights
    return total / norm


# --- Gaussian ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("patch", "sigma_scale"), [((48, 96, 96), 1 / 8), ((7, 5, 3), 1 / 8), ((1, 4), 1 / 8),
                                                    ((20, 33), 1 / 16), ((28, 56, 48), 1 / 8), ((64,), 0.25)])
def test_gaussian_matches_scipy_filtered_impulse(patch: tuple[int, ...], sigma_scale: float) -> None:
    expected = scipy_importance_map(patch, sigma_scale)
    actual = gaussian_importance_map(patch, sigma_scale=sigma_scale).numpy()
    assert actual.shape == patch and actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=0)
    assert actual[tuple(p // 2 for p in patch)] == pytest.approx(10.0)


def test_gaussian_truncation_zeros_are_replaced_by_the_smallest_weight() -> None:
    weights = gaussian_importance_map((40,), sigma_scale=1 / 16)  # radius 10 around voxel 20
    assert bool((weights > 0).all())
    assert torch.equal(weights[:10], torch.full((10,), float(weights[10])))


def test_gaussian_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        gaussian_importance_map((0, 4))
    with pytest.raises(ValueError):
        gaussian_importance_map((4, 4), sigma_scale=0.0)


# --- Window placement ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("image", "patch", "step", "expected"), [
    (100, 40, 0.5, [0, 20, 40, 60]),
    (40, 40, 0.5, [0]),
    (110, 64, 0.5, [0, 23, 46]),  # the actual step (23) is below the target step (32)
    (7, 4, 0.5, [0, 2, 3]),  # 1.5 rounds half to even
    (10, 4, 1.0, [0, 3, 6]),
    (5, 2, 0.5, [0, 1, 2, 3]),
])
def test_window_starts_hand_computed(image: int, patch: int, step: float, expected: list[int]) -> None:
    assert window_starts([image], [patch], step) == [expected]


def test_window_starts_per_axis() -> None:
    assert window_starts((64, 192, 192), (48, 96, 96)) == [[0, 16], [0, 48, 96], [0, 48, 96]]


@pytest.mark.parametrize(("image", "patch", "step"), [((30,), (40,), 0.5), ((50,), (40,), 0.0),
                                                      ((50,), (40,), 1.5), ((50, 50), (40,), 0.5)])
def test_window_starts_rejects_bad_arguments(image, patch, step) -> None:
    with pytest.raises(ValueError):
        window_starts(image, patch, step)


# --- Sliding window ------------------------------------------------------------------------------------------

CASES = {
    "3d": ((2, 13, 21, 17), (8, 12, 10)),
    "3d-padded": ((2, 5, 21, 9), (8, 12, 10)),  # smaller than the patch on two axes
    "2d": ((2, 30, 23), (16, 16)),
    "2d-on-3d": ((2, 4, 30, 23), (16, 16)),
    "2d-on-3d-padded": ((2, 3, 11, 23), (16, 16)),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize("use_gaussian", [True, False])
def test_pointwise_model_is_reproduced_exactly(case: str, mirror: bool, use_gaussian: bool) -> None:
    shape, patch = CASES[case]
    image = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    settings = SlidingWindowSettings(patch, use_gaussian=use_gaussian,
                                     mirror_axes=tuple(range(len(patch))) if mirror else (), batch_size=3)
    logits = predict_sliding_window(pointwise, image, 3, settings)
    assert logits.shape == (3, *shape[1:]) and logits.dtype == torch.float32 and logits.device.type == "cpu"
    torch.testing.assert_close(logits, pointwise(image[None])[0], rtol=1e-5, atol=1e-5)


def test_gaussian_blending_matches_a_naive_reference() -> None:
    image = torch.randn((2, 13, 21, 17), generator=torch.Generator().manual_seed(1))
    patch = (8, 12, 10)
    logits = predict_sliding_window(positional, image, 3, SlidingWindowSettings(patch, batch_size=2))
    torch.testing.assert_close(logits, reference_blend(positional, image, 3, patch, 0.5), rtol=1e-5, atol=1e-5)


def test_mirroring_averages_flipped_back_predictions() -> None:
    patch = (4, 6)
    image = torch.randn((2, *patch), generator=torch.Generator().manual_seed(2))
    logits = predict_sliding_window(positional, image, 3, SlidingWindowSettings(patch, mirror_axes=(0, 1)))
    r = ramp(patch)
    expected_ramp = (r + r.flip(0) + r.flip(1) + r.flip(0, 1)) / 4
    torch.testing.assert_close(logits, pointwise(image[None])[0] + expected_ramp)


def test_padding_is_split_evenly_with_the_extra_voxel_after_the_content() -> None:
    image = torch.zeros((2, 5))
    logits = predict_sliding_window(positional, image, 3, SlidingWindowSettings((8,)))  # pad 1 before, 2 after
    torch.testing.assert_close(logits, BIAS[:, None] + ramp((8,))[1:6])


def test_model_returning_its_input_is_not_corrupted_by_in_place_accumulation() -> None:
    image = torch.randn((2, 9, 10), generator=torch.Generator().manual_seed(3))
    settings = SlidingWindowSettings((6, 6), mirror_axes=(0, 1), batch_size=2)
    torch.testing.assert_close(predict_sliding_window(lambda x: x, image, 2, settings), image)


def test_deep_supervision_list_uses_the_full_resolution_output() -> None:
    def deep_supervised(x: torch.Tensor) -> list[torch.Tensor]:
        full = pointwise(x)
        return [full, full[:, :, ::2, ::2] * 100]

    image = torch.randn((2, 20, 18), generator=torch.Generator().manual_seed(4))
    settings = SlidingWindowSettings((12, 12), mirror_axes=(1,))
    torch.testing.assert_close(predict_sliding_window(deep_supervised, image, 3, settings),
                               predict_sliding_window(pointwise, image, 3, settings))


def small_unet(ndim: int) -> torch.nn.Module:
    spec = UNetSpec(ndim=ndim, encoder="plain", features_per_stage=(4, 8), kernel_sizes=((3,) * ndim,) * 2,
                    strides=((1,) * ndim, (2,) * ndim), blocks_per_stage=(1, 1), convs_per_decoder_stage=(1,))
    torch.manual_seed(0)
    return build_network(spec, 1, 2, deep_supervision=True).eval()


@pytest.mark.parametrize(("shape", "patch"), [((1, 10, 20, 14), (8, 8, 8)), ((1, 3, 20, 14), (8, 8)),
                                              ((1, 6, 5), (8, 8))])
def test_real_network_shape_and_batch_size_independence(shape: tuple[int, ...], patch: tuple[int, ...]) -> None:
    network = small_unet(len(patch))
    image = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    one = predict_sliding_window(network, image, 2, SlidingWindowSettings(patch, mirror_axes=(0,), batch_size=1))
    three = predict_sliding_window(network, image, 2, SlidingWindowSettings(patch, mirror_axes=(0,), batch_size=3))
    assert one.shape == (2, *shape[1:])
    assert bool(torch.isfinite(one).all())
    torch.testing.assert_close(one, three, rtol=1e-4, atol=1e-5)


def test_result_is_an_ordinary_tensor_and_progress_bar_runs() -> None:
    settings = SlidingWindowSettings((4, 4), show_progress=True, batch_size=4)
    logits = predict_sliding_window(pointwise, torch.randn(2, 10, 9), 3, settings)
    assert not logits.is_inference() and logits.is_contiguous()
    logits /= 2  # in-place updates outside inference mode must work


def test_wrong_output_shape_and_wrong_image_rank_raise() -> None:
    settings = SlidingWindowSettings((4, 4))
    with pytest.raises(ValueError, match="expected"):
        predict_sliding_window(pointwise, torch.randn(2, 8, 8), 4, settings)
    with pytest.raises(ValueError, match="does not fit"):
        predict_sliding_window(pointwise, torch.randn(2, 8), 3, settings)
    with pytest.raises(ValueError, match="floating"):
        predict_sliding_window(pointwise, torch.ones(2, 8, 8, dtype=torch.int64), 3, settings)


def test_settings_validation() -> None:
    with pytest.raises(ValueError):
        SlidingWindowSettings((4, 4), step_size=0)
    with pytest.raises(ValueError):
        SlidingWindowSettings((4, 4), mirror_axes=(2,))
    with pytest.raises(ValueError):
        SlidingWindowSettings((4, 4), batch_size=0)


# --- Logits to labels ----------------------------------------------------------------------------------------

def test_softmax_segmentation_is_argmax_with_first_channel_on_ties() -> None:
    logits = torch.tensor([[[0.0, 1.0, 2.0, 5.0]], [[1.0, 0.0, 2.0, -1.0]], [[3.0, -1.0, 0.0, 5.0]]])
    segmentation = logits_to_segmentation(logits)
    assert segmentation.dtype == torch.uint8
    assert segmentation.tolist() == [[2, 0, 0, 0]]
    random = torch.randn(5, 6, 7, 8)
    assert torch.equal(logits_to_segmentation(random).long(), random.argmax(0))


def test_region_segmentation_paints_in_order() -> None:
    # Regions: whole (labels 1+2+3), core (2+3), enhancing (3), as in BraTS; sigmoid > 0.5 <=> logit > 0.
    logits = torch.tensor([[[-1.0, 2.0, 2.0, 2.0, -3.0]],
                           [[-1.0, -2.0, 1.0, 1.0, 4.0]],
                           [[-1.0, -2.0, -1.0, 0.5, -1.0]]])
    segmentation = logits_to_segmentation(logits, region_class_order=[1, 2, 3])
    assert segmentation.tolist() == [[0, 1, 2, 3, 2]]
    with pytest.raises(ValueError):
        logits_to_segmentation(logits, region_class_order=[1, 2])


def test_probabilities() -> None:
    logits = torch.randn(4, 3, 5)
    torch.testing.assert_close(logits_to_probabilities(logits, region_based=False).sum(0), torch.ones(3, 5))
    torch.testing.assert_close(logits_to_probabilities(logits, region_based=True), torch.sigmoid(logits))


def test_2d_patch_on_3d_image_equals_predicting_each_slice() -> None:
    image = torch.randn((2, 5, 19, 11), generator=torch.Generator().manual_seed(6))
    settings = SlidingWindowSettings((8, 8), mirror_axes=(0, 1), batch_size=4)
    volume = predict_sliding_window(positional, image, 3, settings)
    slices = torch.stack([predict_sliding_window(positional, image[:, z], 3, settings) for z in range(5)], dim=1)
    torch.testing.assert_close(volume, slices)


def test_tune_cpu_allocator_applies_on_glibc_and_is_idempotent() -> None:
    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert tune_cpu_allocator() is expected
    assert tune_cpu_allocator() is expected
    torch.testing.assert_close(torch.ones(2**22).sum(), torch.tensor(float(2**22)))  # allocation still works


def test_slab_normalisation_equals_whole_volume_weight_sum() -> None:
    from autounet.inference.merger import _normalise_in_slabs, _weight_sum
    from autounet.inference.sliding_window import _windows

    shape, patch = (13, 9, 10), (4, 5, 6)
    windows = _windows(window_starts(shape, patch, 0.5), patch)
    weights = gaussian_importance_map(patch)
    logits = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    expected = logits / _weight_sum(shape, windows, weights, torch.device("cpu"))
    for rows, scale in ((1, weights), (3, weights), (patch[0], weights), (100, weights), (3, None)):
        result = logits.clone()
        _normalise_in_slabs(result, windows, scale, rows)
        reference = expected if scale is not None else logits / _weight_sum(shape, windows, None, torch.device("cpu"))
        assert torch.equal(result, reference)
