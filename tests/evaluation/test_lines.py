"""Mean distance error of line labels against hand-computed cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from autounet.evaluation.lines import LineDistance, line_distance, summarise_line_distances


def _mask(shape: tuple[int, ...], pixels: list[tuple[int, ...]]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for pixel in pixels:
        mask[pixel] = True
    return mask


def test_parallel_lines_two_pixels_apart() -> None:
    reference = _mask((5, 5), [(0, 0), (1, 0), (2, 0)])
    prediction = _mask((5, 5), [(0, 2), (1, 2), (2, 2)])
    result = line_distance(reference, prediction, (1.0, 1.0))
    assert result == LineDistance(2.0, "scored", 3, 3)
    # Anisotropic pixels: 3 m along the second axis, so 2 pixels are 6 m.
    assert line_distance(reference, prediction, (1.0, 3.0)).mde == pytest.approx(6.0)


def test_both_directions_are_pooled() -> None:
    reference = _mask((3, 6), [(0, 0)])
    prediction = _mask((3, 6), [(0, 0), (0, 4)])
    # Reference -> prediction: [0]; prediction -> reference: [0, 4]; pooled mean 4 / 3.
    assert line_distance(reference, prediction, (1.0, 1.0)).mde == pytest.approx(4 / 3)
    diagonal = _mask((3, 6), [(2, 3)])
    # sqrt(2^2 + 3^2) in both directions.
    assert line_distance(reference, diagonal, (1.0, 1.0)).mde == pytest.approx(math.sqrt(13))


def test_empty_masks_are_counted_not_averaged() -> None:
    line = _mask((4, 4), [(1, 1), (1, 2)])
    empty = np.zeros((4, 4), dtype=bool)
    missed = line_distance(line, empty, (1.0, 1.0))
    assert missed.status == "no_prediction" and math.isnan(missed.mde)
    assert line_distance(empty, line, (1.0, 1.0)).status == "no_reference"
    assert line_distance(empty, empty, (1.0, 1.0)).status == "both_empty"
    scored = [line_distance(line, line, (1.0, 1.0)), LineDistance(4.0, "scored", 1, 1),
              LineDistance(5.0, "scored", 1, 1)]
    summary = summarise_line_distances([*scored, missed, missed])
    assert summary.mean == pytest.approx(3.0) and summary.median == pytest.approx(4.0)
    assert (summary.scored, summary.no_prediction, summary.no_reference, summary.both_empty) == (3, 2, 0, 0)
    assert math.isnan(summarise_line_distances([missed]).mean)


def test_3d_and_bad_inputs() -> None:
    reference = _mask((2, 3, 3), [(0, 0, 0)])
    prediction = _mask((2, 3, 3), [(1, 0, 0)])
    assert line_distance(reference, prediction, (5.0, 1.0, 1.0)).mde == pytest.approx(5.0)
    with pytest.raises(ValueError, match="shape"):
        line_distance(reference, prediction[0], (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        line_distance(reference, prediction, (1.0, 1.0))


def test_line_folders_are_scored_in_the_references_spacing(tmp_path) -> None:
    from autounet.evaluation.lines import evaluate_line_folders
    from autounet.io import ImageGeometry
    from autounet.io.images import write_segmentation

    reference_dir, prediction_dir = tmp_path / "ref", tmp_path / "pred"
    geometry = ImageGeometry.default(3, (5.0, 1.0, 20.0))  # a 2D image as one NIfTI slice, 20 m along x
    line = np.zeros((1, 8, 8), dtype=np.uint8)
    line[0, :, 2] = 1
    shifted = np.zeros_like(line)
    shifted[0, :, 3] = 1
    write_segmentation(line, geometry, reference_dir / "a.nii.gz")
    write_segmentation(shifted, geometry, prediction_dir / "a.nii.gz")
    write_segmentation(line, geometry, reference_dir / "b.nii.gz")
    write_segmentation(np.zeros_like(line), geometry, prediction_dir / "b.nii.gz")
    evaluation = evaluate_line_folders(reference_dir, prediction_dir)
    assert [case for case, _ in evaluation.cases] == ["a", "b"]
    assert evaluation.cases[0][1].mde == pytest.approx(20.0)
    assert evaluation.summary.mean == pytest.approx(20.0) and evaluation.summary.no_prediction == 1
    saved = json.loads(evaluation.summary_file.read_text())
    assert saved["per_case"][1] == {"case": "b", "mde": None, "status": "no_prediction", "reference_pixels": 8,
                                    "predicted_pixels": 0}
