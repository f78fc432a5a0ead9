"""seg-to-boxes turns saved probabilities into box files; evaluate scores box files against instances."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autounet.cli import evaluate as evaluate_cli
from autounet.cli.main import main
from autounet.detection.box_files import BOX_FILE_SUFFIX
from autounet.inference.original_geometry import save_probabilities
from autounet.io import ImageGeometry
from autounet.io.images import write_segmentation


def test_the_cli_knows_the_box_file_suffix_without_importing_detection() -> None:
    assert evaluate_cli._BOX_FILE_SUFFIX == BOX_FILE_SUFFIX


def test_segmentation_probabilities_become_boxes_that_evaluate_scores(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    geometry = ImageGeometry.default(3, (2.0, 1.0, 1.0))
    reference, prediction = tmp_path / "labelsTs", tmp_path / "pred"
    instances = np.zeros((12, 16, 16), dtype=np.uint8)
    instances[1:5, 2:8, 2:8] = 1
    instances[6:10, 9:14, 9:14] = 2
    write_segmentation(instances, geometry, reference / "c1.nii.gz")
    (reference / "c1.json").write_text(json.dumps({"instances": {"1": 0, "2": 1}}))
    # A segmentation model's output: label 1 for the first object, label 2 for the second.
    semantic = np.where(instances == 1, 1, np.where(instances == 2, 2, 0)).astype(np.uint8)
    probabilities = np.stack([(semantic == k).astype(np.float32) * 0.8 + 0.1 for k in range(3)])
    write_segmentation(semantic, geometry, prediction / "c1.nii.gz")
    save_probabilities(prediction / "c1.npz", probabilities)
    assert main(["seg-to-boxes", str(prediction)]) == 0
    boxes = json.loads((prediction / "c1_boxes.json").read_text())["boxes"]
    assert sorted(b["voxel_box"] for b in boxes) == [[1, 2, 2, 5, 8, 8], [6, 9, 9, 10, 14, 14]]
    assert main(["evaluate", str(reference), str(prediction), "--boxes", "-o", str(tmp_path / "scores")]) == 0
    out = capsys.readouterr().out
    assert "AP@0.1" in out and (tmp_path / "scores" / "detection_summary.json").is_file()
    summary = json.loads((tmp_path / "scores" / "detection_summary.json").read_text())
    assert summary["AP_IoU_0.10_MaxDet_100"] == pytest.approx(1.0)


def test_seg_to_boxes_without_probabilities_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["seg-to-boxes", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no <case>.npz" in err[0] and "Traceback" not in err[0]
