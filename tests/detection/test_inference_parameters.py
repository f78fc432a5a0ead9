"""Swept inference parameters as a typed, versioned JSON file beside a fold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autounet.detection.inference_parameters import (
    INFERENCE_PARAMETERS_FILE,
    SweepTrial,
    SweptInference,
    load_swept_inference,
    save_swept_inference,
    swept_inference_of_folds,
)
from autounet.errors import ConfigError
from autounet.planning.plans import DetectionInference


def _swept(score_threshold: float) -> SweptInference:
    return SweptInference(parameters=DetectionInference(score_threshold=score_threshold, nms_iou=0.1),
                          ap_default=0.5, ap_swept=0.75, num_cases=3,
                          trials=(SweepTrial("score_threshold", score_threshold, 0.75),))


def test_round_trip(tmp_path: Path) -> None:
    save_swept_inference(tmp_path / INFERENCE_PARAMETERS_FILE, _swept(0.3))
    assert load_swept_inference(tmp_path / INFERENCE_PARAMETERS_FILE) == _swept(0.3)
    assert json.loads((tmp_path / INFERENCE_PARAMETERS_FILE).read_text())["schema_version"] == 1


@pytest.mark.parametrize(("field", "value", "message"), [
    ("cluster_iou", 1.5, "cluster_iou must lie in"),
    ("min_size", -1.0, "min_size must not be negative"),
    ("detections_per_image", 0, "at least 1"),
])
def test_values_out_of_range_are_one_line_errors(tmp_path: Path, field: str, value: float, message: str) -> None:
    path = tmp_path / INFERENCE_PARAMETERS_FILE
    save_swept_inference(path, _swept(0.3))
    data = json.loads(path.read_text())
    data["parameters"][field] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message) as error:
        load_swept_inference(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_other_schema_versions_and_missing_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / INFERENCE_PARAMETERS_FILE
    save_swept_inference(path, _swept(0.3))
    path.write_text(path.read_text().replace('"schema_version": 1', '"schema_version": 7'))
    with pytest.raises(ConfigError, match="version 7"):
        load_swept_inference(path)
    with pytest.raises(ConfigError, match="no detection inference parameters"):
        load_swept_inference(tmp_path / "absent.json")


def test_prediction_uses_the_first_listed_fold_that_has_them(tmp_path: Path) -> None:
    for fold, threshold in ((1, 0.2), (2, 0.4)):
        (tmp_path / f"fold_{fold}").mkdir()
        save_swept_inference(tmp_path / f"fold_{fold}" / INFERENCE_PARAMETERS_FILE, _swept(threshold))
    (tmp_path / "fold_0").mkdir()
    parameters, source = swept_inference_of_folds(tmp_path, [0, 2, 1])  # type: ignore[misc]
    assert parameters.score_threshold == 0.4 and source.endswith(f"fold_2/{INFERENCE_PARAMETERS_FILE}")
    assert swept_inference_of_folds(tmp_path, [0]) is None
