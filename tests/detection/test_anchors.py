from __future__ import annotations

import numpy as np
import pytest
import torch

from autounet.detection.anchors import (
    AnchorGenerator,
    fit_anchor_sizes,
    mean_best_iou,
    shapes_from_sizes_and_scales,
)
from autounet.detection.boxes import box_centers, box_sizes


def test_level_anchors_hand_computed_2d() -> None:
    generator = AnchorGenerator([[(2.0, 4.0), (4.0, 4.0)]], [(2, 2)])
    anchors = generator([(2, 3)])[0]
    assert anchors.shape == (2 * 3 * 2, 4)
    # Position (0, 0) has centre (1, 1); its two shapes come first, then position (0, 1) with centre (1, 3).
    assert anchors[:3].tolist() == [[0.0, -1.0, 2.0, 3.0], [-1.0, -1.0, 3.0, 3.0], [0.0, 1.0, 2.0, 5.0]]
    assert generator.num_anchors_per_location() == [2]


def test_levels_3d_scale_with_stride() -> None:
    generator = AnchorGenerator.from_base_shapes([(2.0, 4.0, 4.0)], [(1, 2, 2), (2, 4, 4)])
    fine, coarse = generator([(4, 4, 4), (2, 2, 2)])
    assert fine.shape == (64, 6) and coarse.shape == (8, 6)
    assert torch.equal(box_sizes(coarse[0]), torch.tensor([4.0, 8.0, 8.0]))
    assert torch.equal(box_centers(coarse[-1]), torch.tensor([3.0, 6.0, 6.0]))
    with pytest.raises(ValueError, match="feature maps for 2 anchor levels"):
        generator([(4, 4, 4)])


def test_shapes_from_sizes_and_scales_keep_volume() -> None:
    shapes = shapes_from_sizes_and_scales([8.0], [(1.0, 1.0, 1.0), (1.0, 2.0, 2.0)])
    assert np.allclose(shapes[0], (8.0, 8.0, 8.0))
    assert np.isclose(np.prod(shapes[1]), 8.0**3) and np.isclose(shapes[1][1] / shapes[1][0], 2.0)


def test_fit_recovers_two_box_families() -> None:
    rng = np.random.default_rng(0)
    small = np.stack([rng.uniform(3, 4, 50), rng.uniform(6, 8, 50), rng.uniform(6, 8, 50)], axis=1)
    large = np.stack([rng.uniform(10, 12, 50), rng.uniform(20, 24, 50), rng.uniform(10, 12, 50)], axis=1)
    sizes = np.concatenate([small, large])
    fitted = fit_anchor_sizes(sizes, num_shapes=2)
    assert len(fitted) == 2 and fitted[0][0] < 5 < fitted[1][0]
    score = mean_best_iou(sizes, np.array(fitted))
    assert score > 0.8
    # Better than any single box family's mean shape and than a cube of the mean volume.
    assert score >= mean_best_iou(sizes, np.stack([small.mean(0), large.mean(0)])) - 1e-9
    assert score > mean_best_iou(sizes, np.array([[9.0, 9.0, 9.0], [14.0, 14.0, 14.0]]))


def test_fit_with_level_scales_uses_every_level() -> None:
    sizes = np.array([[4.0, 4.0], [8.0, 8.0], [16.0, 16.0], [32.0, 32.0]])
    fitted = fit_anchor_sizes(sizes, num_shapes=1, level_scales=(1, 2, 4, 8))
    assert np.allclose(fitted[0], (4.0, 4.0), rtol=0.02)
    assert mean_best_iou(sizes, np.array(fitted), (1, 2, 4, 8)) > 0.95


def test_fit_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="positive extents"):
        fit_anchor_sizes(np.zeros((0, 3)), 2)
