from __future__ import annotations

import numpy as np
import pytest
import torch

from autounet.detection.from_segmentation import segmentation_to_boxes


def _probabilities() -> np.ndarray:
    probabilities = np.zeros((3, 6, 10, 12), dtype=np.float32)
    probabilities[0] = 1.0
    for label, block, value in [(1, (slice(0, 2), slice(0, 3), slice(0, 4)), 0.9),
                                (1, (slice(3, 6), slice(5, 10), slice(6, 9)), 0.7),
                                (2, (slice(1, 4), slice(1, 3), slice(8, 12)), 0.6)]:
        probabilities[(slice(None),) + block] = (1 - value) / 2
        probabilities[(label,) + block] = value
    probabilities[1, 4, 6, 7] = 0.95  # one hotter voxel in the second component
    probabilities[0, 4, 6, 7] = 0.03
    probabilities[2, 4, 6, 7] = 0.02
    return probabilities


def test_components_become_scored_boxes() -> None:
    boxes, scores, classes = segmentation_to_boxes(_probabilities())
    assert classes.tolist() == [0, 0, 1]
    assert torch.allclose(scores, torch.tensor([0.95, 0.9, 0.6]))
    assert boxes.tolist() == [[3, 5, 6, 6, 10, 9], [0, 0, 0, 2, 3, 4], [1, 1, 8, 4, 3, 12]]


def test_mean_score_min_size_and_2d() -> None:
    probabilities = _probabilities()
    boxes, scores, _ = segmentation_to_boxes(probabilities, score="mean")
    assert scores[0].item() == pytest.approx(0.9)
    assert scores[1].item() == pytest.approx((0.7 * 44 + 0.95) / 45)
    assert len(segmentation_to_boxes(probabilities, min_voxels=25)[0]) == 1  # both 24-voxel blocks dropped
    boxes2d, _, classes2d = segmentation_to_boxes(probabilities[:, 1])  # slice 1 cuts the first and third block
    assert boxes2d.tolist() == [[0, 0, 3, 4], [1, 8, 3, 12]] and classes2d.tolist() == [0, 1]
    empty = segmentation_to_boxes(np.stack([np.ones((4, 4)), np.zeros((4, 4))]))
    assert empty[0].shape == (0, 4)
