"""Detection through the CLI: the toy dataset planned, trained (3d_det, detection recipe), predicted as box
files with whole-case sliding windows, and scored by AP/FROC; the same folds as segmentation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autounet.cli.main import main
from autounet.dataset._synthetic_detection import DetectionToyOptions, generate_detection_toy
from autounet.detection.inference_parameters import INFERENCE_PARAMETERS_FILE, load_swept_inference
from autounet.io import read_image


def test_toy_detection_trains_predicts_boxes_and_evaluates(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = ["--data-root", str(tmp_path)]
    options = DetectionToyOptions(num_cases=5, num_test_cases=2, shape=(24, 24, 24), edge=(5, 8), wall=1)
    generate_detection_toy(tmp_path / "raw", options)
    assert main(["plan-and-preprocess", "-d", "505", "-np", "1", *root]) == 0
    assert main(["train", "-d", "505", "-c", "3d_det", "-f", "0", "--recipe", "detection", "--epochs", "1",
                 "--iterations-per-epoch", "2", "--validation-iterations", "1", "--num-workers", "0", *root]) == 0
    fold = tmp_path / "results" / "Dataset505_ExampleDetection" / "3d_det__detection__plans" / "fold_0"
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert summary["evaluated_on"] == "validation cases (sliding window)"
    assert sorted(p.name for p in (fold / "validation").glob("*_boxes.json"))
    # The final validation swept the inference parameters on the same cases and stored them with the fold.
    swept = load_swept_inference(fold / INFERENCE_PARAMETERS_FILE)
    assert swept.num_cases == len(summary["validation_cases"])
    assert summary["swept_inference"]["AP_IoU_0.10_swept"] == swept.ap_swept
    raw = next((tmp_path / "raw").glob("Dataset505_*"))
    out = tmp_path / "boxes"
    # -c 3d_det finds the configuration's one run (trained with the detection recipe).
    assert main(["predict", "-d", "505", "-c", "3d_det", "-f", "0", "-i", str(raw / "imagesTs"), "-o", str(out),
                 "--disable-tta", *root]) == 0
    assert f"inference parameters: {fold / INFERENCE_PARAMETERS_FILE}" in capsys.readouterr().out
    files = sorted(p.name for p in out.glob("*_boxes.json"))
    assert len(files) == 2
    boxes = json.loads((out / files[0]).read_text())
    assert boxes["schema_version"] == 1 and all(len(b["voxel_box"]) == 6 for b in boxes["boxes"])
    capsys.readouterr()
    assert main(["evaluate", str(raw / "labelsTs"), str(out)]) == 0  # box files only: scored as boxes
    assert "AP@0.1" in capsys.readouterr().out
    # Command-line values override the swept parameters; values outside their range are usage errors.
    limited = tmp_path / "limited"
    assert main(["predict", "-d", "505", "-c", "3d_det", "-f", "0", "-i", str(raw / "imagesTs"), "-o", str(limited),
                 "--disable-tta", "--boxes-per-image", "1", "--save-box-map", "0", *root]) == 0
    assert "with detections_per_image=1" in capsys.readouterr().out
    assert all(len(json.loads(f.read_text())["boxes"]) <= 1 for f in limited.glob("*_boxes.json"))
    # --save-box-map: the kept box as a label map in the input's geometry beside each box file.
    for box_file in limited.glob("*_boxes.json"):
        case = box_file.name.removesuffix("_boxes.json")
        painted, geometry = read_image([limited / f"{case}_boxes.nii.gz"])
        image, image_geometry = read_image([raw / "imagesTs" / f"{case}_0000.nii.gz"])
        assert painted.shape == image.shape and geometry == image_geometry
        (box,) = json.loads(box_file.read_text())["boxes"]
        assert set(np.unique(painted)) <= {0, box["class"] + 1}
        lower, upper = np.ceil(np.asarray(box["voxel_box"][:3]) - 0.5), np.ceil(np.asarray(box["voxel_box"][3:]) - 0.5)
        assert (painted > 0).sum() == np.prod(np.clip(upper, 0, None) - np.clip(lower, 0, None))
    # A rerun predicts again the cases whose requested box map is missing (finished ones are skipped).
    missing = next(limited.glob("*_boxes.nii.gz"))
    missing.unlink()
    assert main(["predict", "-d", "505", "-c", "3d_det", "-f", "0", "-i", str(raw / "imagesTs"), "-o", str(limited),
                 "--disable-tta", "--boxes-per-image", "1", "--save-box-map", "0", *root]) == 0
    assert missing.is_file()
    capsys.readouterr()
    assert main(["evaluate", str(raw / "labelsTs"), str(limited)]) == 0  # the box maps beside do not count
    assert "AP@0.1" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        main(["predict", "-d", "505", "-c", "3d_det", "-i", str(raw / "imagesTs"), "-o", str(limited), "--nms-iou",
              "1.5", *root])
    assert usage.value.code == 2
    # Boxes are not written among the images.
    images = sorted(path.name for path in (raw / "imagesTs").iterdir())
    capsys.readouterr()
    assert main(["predict", "-d", "505", "-c", "3d_det", "-f", "0", "-i", str(raw / "imagesTs"), "-o",
                 str(raw / "imagesTs"), "--save-box-map", "0", *root]) == 1
    assert "the output folder is the input folder" in capsys.readouterr().err
    assert sorted(path.name for path in (raw / "imagesTs").iterdir()) == images
    # A damaged checkpoint is one line naming it, as for a segmentation model: NaN weights, foreign mirror axes.
    checkpoint = fold / "checkpoint_final.pt"
    original = torch.load(checkpoint, weights_only=True)
    first = next(iter(original["network"]))
    nan_weights = {**original, "network": {**original["network"], first: torch.full_like(original["network"][first],
                                                                                        float("nan"))}}
    bad_axes = {**original, "metadata": {**original["metadata"], "mirror_axes": [0, 9]}}
    for state, message in ((nan_weights, "NaN or infinite"), (bad_axes, "mirror_axes must be distinct axis indices")):
        torch.save(state, checkpoint)
        capsys.readouterr()
        assert main(["predict", "-d", "505", "-c", "3d_det", "-f", "0", "-i", str(raw / "imagesTs"), "-o",
                     str(tmp_path / "boxes_again"), "--disable-tta", *root]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and str(checkpoint) in err and message in err, err
