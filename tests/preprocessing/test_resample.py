"""Resampling: shapes, anisotropy rule, agreement with scipy's zoom (skimage semantics), labels."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from autounet.planning.plans import ResamplingPlan
from autounet.preprocessing import (
    anisotropic_axis,
    compute_new_shape,
    resample_data,
    resample_segmentation,
    resample_to_shape,
)
from autounet.preprocessing._taps import resample_axis

PLAN = ResamplingPlan()


def _smooth(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return (ndi.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 1.5) * 100).astype(np.float32)


def _blobs(shape: tuple[int, ...], labels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    seg = np.zeros(shape, dtype=np.int8)
    for label in range(1, labels + 1):
        seg[ndi.gaussian_filter(rng.normal(size=shape), 2.0) > 0.1] = label
    return seg


def test_compute_new_shape() -> None:
    assert compute_new_shape((40, 80, 80), (3.0, 0.8, 0.8), (1.5, 0.8, 0.8)) == (80, 80, 80)
    assert compute_new_shape((10, 11), (1.0, 1.0), (0.7, 1.3)) == (14, 8)
    assert compute_new_shape((1, 11), (1.0, 1.0), (3.0, 1.0)) == (1, 11)  # never empty
    with pytest.raises(ValueError):
        compute_new_shape((10, 11), (1.0,), (1.0, 1.0))


@pytest.mark.parametrize(("spacing", "target", "expected"), [
    ((3.0, 0.8, 0.8), (1.5, 0.8, 0.8), 0),  # anisotropic source
    ((1.0, 1.0, 1.0), (1.0, 4.0, 1.0), 1),  # anisotropic target
    ((2.0, 1.0, 1.0), (2.0, 1.0, 1.0), None),  # ratio 2 <= 3
    ((4.0, 4.0, 1.0), (4.0, 4.0, 1.0), None),  # two low-resolution axes
    ((5.0, 1.0), (5.0, 1.0), None),  # 2D data: never separate
])
def test_anisotropic_axis(spacing: tuple[float, ...], target: tuple[float, ...], expected: int | None) -> None:
    assert anisotropic_axis(spacing, target, 3.0) == expected


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize(("n_in", "n_out"), [(7, 13), (20, 9), (33, 34), (5, 5)])
def test_axis_pass_equals_scipy_zoom(order: int, n_in: int, n_out: int) -> None:
    data = np.random.default_rng(n_in).normal(size=(3, n_in)).astype(np.float32)
    expected = ndi.zoom(data.astype(np.float64), (1, n_out / n_in), order=order, mode="nearest", grid_mode=True)
    np.testing.assert_allclose(resample_axis(data, 1, n_out, order), expected, atol=1e-5)


def test_image_resampling_equals_zoom_then_clip() -> None:
    data = _smooth((2, 14, 17, 15))
    spacing, target = (1.0, 1.1, 0.9), (1.3, 0.8, 1.0)
    new_shape = compute_new_shape(data.shape[1:], spacing, target)
    out = resample_data(data, spacing, target, PLAN)
    assert out.shape == (2, *new_shape) and out.dtype == np.float32
    for channel in range(2):
        zoom = np.divide(new_shape, data.shape[1:])
        expected = ndi.zoom(data[channel].astype(np.float64), zoom, order=3, mode="nearest", grid_mode=True)
        expected = np.clip(expected, data[channel].min(), data[channel].max())
        np.testing.assert_allclose(out[channel], expected, atol=1e-3)


def test_unchanged_shape_returns_the_input() -> None:
    data = _smooth((1, 5, 6, 7))
    assert resample_data(data, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), PLAN) is data


def test_round_trip_restores_shape_and_keeps_every_label() -> None:
    seg = _blobs((12, 40, 40))[None]
    image = _smooth((1, 12, 40, 40))
    spacing, target = (3.0, 0.8, 0.8), (1.5, 1.1, 0.9)
    there = resample_data(seg, spacing, target, PLAN, is_seg=True)
    back = resample_to_shape(there, seg.shape[1:], target, spacing, PLAN, is_seg=True)
    assert back.shape == seg.shape and back.dtype == seg.dtype
    assert set(np.unique(there)) == set(np.unique(seg)) == set(np.unique(back))
    assert np.mean(back == seg) > 0.9
    image_back = resample_to_shape(resample_data(image, spacing, target, PLAN), image.shape[1:], target, spacing,
                                   PLAN)
    assert image_back.shape == image.shape


def test_anisotropic_axis_uses_nearest_neighbour() -> None:
    data = _smooth((1, 6, 20, 20))
    # 3.0 / 0.8 > 3: slices are copied, never blended, when doubling their number.
    out = resample_data(data, (3.0, 0.8, 0.8), (1.5, 0.8, 0.8), PLAN)
    assert out.shape == (1, 12, 20, 20)
    for index in range(6):
        np.testing.assert_array_equal(out[0, 2 * index], out[0, 2 * index + 1])
    np.testing.assert_allclose(out[0, ::2], data[0], atol=1e-5)
    # Below the threshold the same zoom interpolates: neighbouring output slices differ.
    iso = resample_data(data, (1.6, 0.8, 0.8), (0.8, 0.8, 0.8), PLAN)
    assert not np.allclose(iso[0, 0::2], iso[0, 1::2])


def test_labels_take_the_highest_interpolated_score() -> None:
    seg = _blobs((10, 16, 18), labels=3, seed=4)
    seg[:, :2] = -1  # the outside marker is resampled like any label
    new_shape = (13, 11, 25)
    out = resample_segmentation(seg, new_shape, None, PLAN)
    labels = np.unique(seg)
    zoom = np.divide(new_shape, seg.shape)
    scores = np.stack([ndi.zoom((seg == v).astype(np.float64), zoom, order=1, mode="nearest", grid_mode=True)
                       for v in labels])
    ordered = np.sort(scores, axis=0)
    clear = ordered[-1] - ordered[-2] > 1e-4  # away from ties, which follow the nearest neighbour
    np.testing.assert_array_equal(out[clear], labels[np.argmax(scores, axis=0)][clear])
    assert out.dtype == np.int8


def test_label_ties_go_to_the_nearest_neighbour() -> None:
    seg = np.array([[0, 1, 1, 0], [0, 1, 1, 0]], dtype=np.int8)
    # Halving: each output pixel sits midway between two labels, a tie in the linear scores.
    out = resample_segmentation(seg, (1, 2), None, PLAN)
    nearest = resample_axis(resample_axis(seg, 0, 1, 0), 1, 2, 0)
    np.testing.assert_array_equal(out, nearest)
