"""Box files scored against instance references: every reference case counts, boxes exact from instances."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autounet.detection.box_files import OriginalBox, write_boxes_json
from autounet.errors import DatasetError
from autounet.evaluation.box_folders import evaluate_box_folders
from autounet.io import ImageGeometry
from autounet.io.images import write_segmentation


def _reference(folder: Path, case: str, boxes: list[tuple[int, ...]], classes: list[int]) -> None:
    instances = np.zeros((16, 16, 16), dtype=np.uint8)
    for index, (z1, y1, x1, z2, y2, x2) in enumerate(boxes, start=1):
        instances[z1:z2, y1:y2, x1:x2] = index
    write_segmentation(instances, ImageGeometry.default(3), folder / f"{case}.nii.gz")
    (folder / f"{case}.json").write_text(json.dumps({"instances": {str(i + 1): c for i, c in enumerate(classes)}}))


def _prediction(folder: Path, case: str, boxes: list[tuple[float, ...]], classes: list[int],
                scores: list[float]) -> None:
    write_boxes_json(folder / f"{case}_boxes.json",
                     [OriginalBox(tuple(map(float, b)), (0.0,) * 3, (1.0,) * 3, c, s)
                      for b, c, s in zip(boxes, classes, scores, strict=True)], {})


def test_perfect_boxes_score_one_and_missing_files_count_as_no_detections(tmp_path: Path) -> None:
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir()
    pred.mkdir()
    _reference(ref, "a", [(1, 1, 1, 5, 5, 5), (8, 8, 8, 12, 14, 12)], [0, 1])
    _reference(ref, "b", [(2, 2, 2, 6, 6, 6)], [0])
    _prediction(pred, "a", [(1, 1, 1, 5, 5, 5), (8, 8, 8, 12, 14, 12)], [0, 1], [0.9, 0.8])
    _prediction(pred, "b", [(2, 2, 2, 6, 6, 6)], [0], [0.7])
    perfect = evaluate_box_folders(ref, pred)
    assert perfect.metrics.ap_at_0_1 == pytest.approx(1.0) and perfect.metrics.froc_score == pytest.approx(1.0)
    assert json.loads(perfect.summary_file.read_text())["cases"] == 2

    (pred / "b_boxes.json").unlink()
    partial = evaluate_box_folders(ref, pred, output_dir=tmp_path / "out")
    assert partial.without_predictions == ("b",)
    # one of the two class-0 objects found: precision 1 up to recall 0.5, 51 of COCO's 101 recall points
    assert partial.metrics.ap_per_class[0] == pytest.approx(51 / 101)
    assert partial.metrics.ap_per_class[1] == pytest.approx(1.0)


def test_boxes_of_another_dimensionality_are_refused(tmp_path: Path) -> None:
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir()
    pred.mkdir()
    _reference(ref, "a", [(1, 1, 1, 5, 5, 5)], [0])
    write_boxes_json(pred / "a_boxes.json", [OriginalBox((1.0, 1.0, 5.0, 5.0), (0.0, 0.0), (1.0, 1.0), 0, 0.5)], {})
    with pytest.raises(DatasetError, match="2D boxes for a 3D reference"):
        evaluate_box_folders(ref, pred)
