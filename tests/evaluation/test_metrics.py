"""Overlap scores and per-case metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autounet.evaluation.metrics import LabelMetrics, case_metrics, label_mask, label_overlaps
from autounet.evaluation.surface import image_diagonal_mm


def test_overlap_scores_hand_computed() -> None:
    reference = np.array([[1, 1, 1, 0], [0, 0, 0, 0]])
    prediction = np.array([[0, 1, 1, 1], [1, 0, 0, 0]])
    (overlap,) = label_overlaps(reference, prediction, [1])
    assert (overlap.tp, overlap.fp, overlap.fn) == (2, 2, 1)
    assert overlap.dice == pytest.approx(4 / 7)
    assert overlap.iou == pytest.approx(2 / 5)
    assert overlap.precision == pytest.approx(2 / 4)
    assert overlap.recall == pytest.approx(2 / 3)


def test_region_is_union_of_its_values() -> None:
    reference = np.array([[1, 2], [0, 0]])
    prediction = np.array([[2, 2], [0, 1]])
    region, single = label_overlaps(reference, prediction, [(1, 2), 1])
    assert (region.tp, region.fp, region.fn) == (2, 1, 0)
    assert region.dice == pytest.approx(4 / 5)
    assert (single.tp, single.fp, single.fn) == (0, 1, 1)
    assert single.dice == 0.0
    assert label_mask(reference, (1, 2)).tolist() == [[True, True], [False, False]]


def test_ignore_label_voxels_are_left_out_of_both_masks() -> None:
    reference = np.array([[1, 1, 3, 3]])
    prediction = np.array([[1, 0, 1, 1]])
    (overlap,) = label_overlaps(reference, prediction, [1], ignore_label=3)
    assert (overlap.tp, overlap.fp, overlap.fn) == (1, 0, 1)
    (metrics,) = case_metrics(reference, prediction, [1], (1.0, 1.0), ignore_label=3)
    assert metrics.overlap.dice == pytest.approx(2 / 3)


def test_both_empty_is_undefined() -> None:
    empty = np.zeros((4, 5, 6), dtype=np.uint8)
    (metrics,) = case_metrics(empty, empty, [1], (2.0, 1.0, 1.0))
    assert math.isnan(metrics.overlap.dice) and math.isnan(metrics.hd95_mm) and math.isnan(metrics.nsd)
    assert not metrics.hd95_is_penalty
    absent = LabelMetrics.absent().as_dict()
    assert absent["n_reference"] == absent["n_prediction"] == 0 and math.isnan(absent["dice"])


@pytest.mark.parametrize("missing", ["prediction", "reference"])
def test_one_empty_scores_zero_and_the_image_diagonal(missing: str) -> None:
    present = np.zeros((4, 5, 6), dtype=np.uint8)
    present[1, 2, 3] = 1
    empty = np.zeros_like(present)
    reference, prediction = (present, empty) if missing == "prediction" else (empty, present)
    (metrics,) = case_metrics(reference, prediction, [1], (2.0, 1.0, 3.0))
    assert metrics.overlap.dice == 0.0
    assert metrics.nsd == 0.0
    assert metrics.hd95_mm == pytest.approx(math.sqrt(8.0**2 + 5.0**2 + 18.0**2))
    assert metrics.hd95_mm == pytest.approx(image_diagonal_mm((4, 5, 6), (2.0, 1.0, 3.0)))
    assert metrics.hd95_is_penalty


def test_case_metrics_per_label_in_order() -> None:
    reference = np.zeros((3, 6, 6), dtype=np.uint8)
    reference[1, 1:3, 1:3] = 1
    reference[1, 4, 4] = 2
    (one, two, region) = case_metrics(reference, reference.copy(), [1, 2, (1, 2)], (1.0, 1.0, 1.0))
    for metrics in (one, two, region):
        assert metrics.overlap.dice == 1.0 and metrics.hd95_mm == 0.0 and metrics.nsd == 1.0
    assert region.overlap.tp == 5
    assert list(one.as_dict())[:6] == ["dice", "iou", "precision", "recall", "hd95_mm", "nsd"]


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        case_metrics(np.zeros((2, 2)), np.zeros((2, 3)), [1], (1.0, 1.0))
