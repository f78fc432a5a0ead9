"""Thinning predicted bands to lines, and lines as the boundary between two labels."""

from __future__ import annotations

import numpy as np

from autounet.postprocessing.lines import boundary_between, thin_to_line


def test_a_band_thins_to_its_centre_line() -> None:
    band = np.zeros((20, 30), dtype=bool)
    band[8:13, 3:27] = True  # five pixels wide
    line = thin_to_line(band)
    assert line.dtype == bool and line.shape == band.shape
    assert line[10, 6:24].all()  # the centre row, away from the ends
    assert line.sum(axis=0).max() == 1  # one pixel wide everywhere
    assert not line[band == 0].any()


def test_a_2d_band_stored_as_one_slice_is_thinned_in_2d() -> None:
    band = np.zeros((1, 20, 30), dtype=bool)
    band[0, 8:13, 3:27] = True
    np.testing.assert_array_equal(thin_to_line(band)[0], thin_to_line(band[0]))


def test_an_empty_mask_stays_empty() -> None:
    assert not thin_to_line(np.zeros((8, 8), dtype=np.uint8)).any()


def test_boundary_is_the_inside_label_touching_the_outside_one() -> None:
    zones = np.array([[2, 2, 3, 3],
                      [2, 2, 2, 3],
                      [1, 2, 2, 3]])
    expected = np.array([[0, 1, 0, 0],
                         [0, 0, 1, 0],
                         [0, 0, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(boundary_between(zones, inside=2, outside=3), expected)
