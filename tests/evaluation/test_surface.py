"""HD95 and normalised surface Dice against hand-computed values and a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from autounet.evaluation.surface import hd95, normalized_surface_dice, surface_distances, surface_metrics


def _mask(shape: tuple[int, ...], *voxels: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for voxel in voxels:
        mask[voxel] = True
    return mask


def test_identical_masks() -> None:
    cube = np.zeros((8, 9, 10), dtype=bool)
    cube[2:6, 3:7, 1:5] = True
    assert hd95(cube, cube, (3.0, 1.0, 0.5)) == 0.0
    assert normalized_surface_dice(cube, cube, (3.0, 1.0, 0.5), 0.0) == 1.0


def test_single_voxels_two_apart_along_an_anisotropic_axis() -> None:
    # A shift of 2 voxels along axis 0 with 3 mm spacing: 6 mm both ways.
    a, b = _mask((6, 5, 5), (1, 2, 2)), _mask((6, 5, 5), (3, 2, 2))
    assert hd95(a, b, (3.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert normalized_surface_dice(a, b, (3.0, 1.0, 1.0), 5.9) == 0.0
    assert normalized_surface_dice(a, b, (3.0, 1.0, 1.0), 6.0) == 1.0


def test_thick_slabs_shifted_by_two_voxels() -> None:
    # Slabs 2 voxels thick spanning the whole plane: every voxel is surface. The inner layers are 3 mm
    # apart, the outer ones 6 mm: half the pooled distances are 3, half 6, so the 95th percentile is 6.
    a, b = np.zeros((8, 4, 4), dtype=bool), np.zeros((8, 4, 4), dtype=bool)
    a[1:3], b[3:5] = True, True
    to_b, to_a = surface_distances(a, b, (3.0, 1.0, 1.0))
    assert sorted(to_b) == [3.0] * 16 + [6.0] * 16
    assert sorted(to_a) == [3.0] * 16 + [6.0] * 16
    assert hd95(a, b, (3.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert normalized_surface_dice(a, b, (3.0, 1.0, 1.0), 3.0) == pytest.approx(0.5)
    assert normalized_surface_dice(a, b, (3.0, 1.0, 1.0), 2.0) == 0.0


def test_percentile_interpolates_pooled_distances() -> None:
    # Pooled distances [0, 0, 10]: the 95th percentile is 0.9 * 10 = 9; 2 of 3 surface voxels lie within 1 mm.
    a = _mask((3, 3, 8), (1, 1, 0))
    b = _mask((3, 3, 8), (1, 1, 0), (1, 1, 5))
    hd, nsd = surface_metrics(a, b, (1.0, 1.0, 2.0), 1.0)
    assert hd == pytest.approx(9.0)
    assert nsd == pytest.approx(2 / 3)


def test_two_dimensional_masks() -> None:
    a, b = _mask((5, 5), (0, 0)), _mask((5, 5), (3, 4))
    assert hd95(a, b, (2.0, 1.5)) == pytest.approx(math.hypot(6.0, 6.0))


def test_empty_conventions() -> None:
    empty, one = np.zeros((4, 4), dtype=bool), _mask((4, 4), (1, 1))
    assert math.isnan(hd95(empty, empty, (1.0, 1.0)))
    assert math.isnan(normalized_surface_dice(empty, empty, (1.0, 1.0), 1.0))
    assert hd95(one, empty, (1.0, 2.0)) == pytest.approx(math.hypot(4.0, 8.0))
    assert normalized_surface_dice(empty, one, (1.0, 1.0), 100.0) == 0.0
    with pytest.raises(ValueError, match="non-empty"):
        surface_distances(one, empty, (1.0, 1.0))


def _brute_force(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    def surface(mask: np.ndarray) -> np.ndarray:
        padded = np.pad(mask, 1)
        points = []
        for index in zip(*np.nonzero(mask), strict=True):
            centre = tuple(i + 1 for i in index)
            neighbours = [tuple(c + (d if axis == k else 0) for k, c in enumerate(centre))
                          for axis in range(mask.ndim) for d in (-1, 1)]
            if not all(padded[n] for n in neighbours):
                points.append(index)
        return np.array(points, dtype=float) * np.array(spacing)

    sa, sb = surface(a), surface(b)
    distances = cdist(sa, sb)
    return distances.min(axis=1), distances.min(axis=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_on_random_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    spacing = (2.5, 1.0, 0.7)
    a, b = np.zeros((7, 8, 9), dtype=bool), np.zeros((7, 8, 9), dtype=bool)
    a[rng.random(a.shape) < 0.15] = True
    b[2:6, 1:8, 3:9] = rng.random((4, 7, 6)) < 0.6  # reaches the image border
    expected_ab, expected_ba = _brute_force(a, b, spacing)
    got_ab, got_ba = surface_distances(a, b, spacing)
    np.testing.assert_allclose(np.sort(got_ab), np.sort(expected_ab))
    np.testing.assert_allclose(np.sort(got_ba), np.sort(expected_ba))
    pooled = np.concatenate([expected_ab, expected_ba])
    assert hd95(a, b, spacing) == pytest.approx(np.percentile(pooled, 95))
    assert normalized_surface_dice(a, b, spacing, 1.5) == pytest.approx(np.mean(pooled <= 1.5))
