"""Cropping to the non-zero region and the -1 convention."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

from autounet.preprocessing import OUTSIDE_LABEL, crop_to_nonzero, fill_holes


def _image_with_hole() -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((2, 8, 10, 12), dtype=np.float32)
    image[0, 2:6, 3:8, 4:10] = 1.0
    image[0, 3:5, 5:6, 6:8] = 0.0  # an enclosed hole: filled, so inside the mask
    image[1, 1, 4, 5] = 2.0  # the second channel extends the region by one slice
    seg = np.zeros((8, 10, 12), dtype=np.uint8)
    seg[3, 4, 5] = 1
    seg[2, 3, 4] = 2
    seg[0, 0, 0] = 1  # labelled but outside the box: cropped away
    return image, seg


def test_bbox_and_minus_one_convention() -> None:
    image, seg = _image_with_hole()
    cropped, seg_crop, bbox = crop_to_nonzero(image, seg)
    assert bbox == ((1, 6), (3, 8), (4, 10))
    assert cropped.shape == (2, 5, 5, 6)
    assert np.shares_memory(cropped, image)
    assert seg_crop.dtype == np.int8
    # Background outside the filled mask is -1; the hole and the labels are not.
    assert seg_crop[0, 0, 0] == OUTSIDE_LABEL  # slice 1 holds only the single voxel of channel 1
    assert seg_crop[0, 1, 1] == 0
    assert seg_crop[3 - 1, 5 - 3, 6 - 4] == 0  # in the hole
    assert seg_crop[3 - 1, 4 - 3, 5 - 4] == 1
    assert seg_crop[2 - 1, 3 - 3, 4 - 4] == 2
    assert set(np.unique(seg_crop)) == {-1, 0, 1, 2}
    assert seg[0, 0, 0] == 1  # the input is untouched


def test_labels_outside_the_mask_are_kept() -> None:
    image = np.zeros((1, 4, 4), dtype=np.float32)
    image[0, 0, :] = 1.0
    image[0, 3, :] = 1.0
    seg = np.zeros((4, 4), dtype=np.int16)
    seg[1, 1] = 3  # inside the box, outside the mask (the middle rows touch the border: no hole)
    _, seg_crop, bbox = crop_to_nonzero(image, seg)
    assert bbox == ((0, 4), (0, 4))
    assert seg_crop[1, 1] == 3
    assert seg_crop[1, 2] == OUTSIDE_LABEL


def test_without_segmentation_returns_the_mask_as_labels() -> None:
    image, _ = _image_with_hole()
    _, seg_crop, _ = crop_to_nonzero(image)
    assert seg_crop.dtype == np.int8
    assert set(np.unique(seg_crop)) == {-1, 0}


def test_large_labels_get_a_wider_dtype() -> None:
    image = np.ones((1, 3, 3), dtype=np.float32)
    seg = np.full((3, 3), 200, dtype=np.uint8)
    assert crop_to_nonzero(image, seg)[1].dtype == np.int16


def test_all_zero_image_is_kept_whole() -> None:
    _, seg_crop, bbox = crop_to_nonzero(np.zeros((1, 3, 4, 5)), np.zeros((3, 4, 5), dtype=np.uint8))
    assert bbox == ((0, 3), (0, 4), (0, 5))
    assert np.all(seg_crop == OUTSIDE_LABEL)


@pytest.mark.parametrize("shape", [(30, 40), (12, 15, 18)])
def test_fill_holes_matches_scipy(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    for threshold in (0.3, 0.5, 0.7):
        mask = ndi.gaussian_filter(rng.random(shape), 1.0) > threshold * 0.5 + 0.25
        np.testing.assert_array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))
