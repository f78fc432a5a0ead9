"""Folder evaluation: pairing, unmatched cases, summary.json and metrics.csv, the ``evaluate`` command."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from autounet.cli import _commands, evaluate
from autounet.cli._common import common_parent
from autounet.cli.main import main
from autounet.errors import DatasetError
from autounet.evaluation.summary import evaluate_folders
from autounet.io import ImageGeometry, write_segmentation

SPACING = (2.0, 1.0, 1.0)
SHAPE = (4, 6, 6)


def _write(folder: Path, name: str, array: np.ndarray, spacing: tuple[float, ...] = SPACING) -> None:
    write_segmentation(array.astype(np.uint8), ImageGeometry.default(len(spacing), spacing), folder / name)


def _blank() -> np.ndarray:
    return np.zeros(SHAPE, dtype=np.uint8)


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """case_a: label 1 perfect. case_b: label 1 perfect, label 2 missed, a stray 3 predicted.
    case_c: reference only. case_d: prediction only."""
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    a = _blank()
    a[1:3, 1:3, 1:3] = 1
    _write(ref, "case_a.nii.gz", a)
    _write(pred, "case_a.nii.gz", a)
    b_ref, b_pred = _blank(), _blank()
    b_ref[0:2, 0:2, 0:2] = 1
    b_pred[0:2, 0:2, 0:2] = 1
    b_ref[3, 5, 5] = 2
    b_pred[3, 0, 5] = 3
    _write(ref, "case_b.nii.gz", b_ref)
    _write(pred, "case_b.nii.gz", b_pred)
    _write(ref, "case_c.nii.gz", a)
    _write(pred, "case_d.nii.gz", a)
    (pred / "notes.txt").write_text("not a case")
    return ref, pred


def test_folder_evaluation_writes_json_and_csv(folders: tuple[Path, Path], tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    ref, pred = folders
    summary = evaluate_folders(ref, pred, output_dir=tmp_path / "out", tolerance_mm=2.0)
    assert list(summary.labels) == ["1", "2"]  # from the references; the predicted-only 3 is not a label
    assert summary.missing_predictions == ("case_c",) and summary.missing_references == ("case_d",)
    assert "case_c" in caplog.text and "case_d" in caplog.text
    assert [c.case_id for c in summary.cases] == ["case_a", "case_b"]
    assert summary.mean["1"]["dice"] == 1.0 and summary.mean["1"]["hd95_mm"] == 0.0
    # Label 2: absent from case_a (undefined, left out), missed in case_b (Dice 0, HD95 = image diagonal).
    assert summary.mean["2"]["dice"] == 0.0 and summary.mean["2"]["nsd"] == 0.0
    assert summary.mean["2"]["hd95_mm"] == pytest.approx(math.sqrt(8.0**2 + 6.0**2 + 6.0**2))
    assert summary.foreground_mean["dice"] == pytest.approx(0.5)

    data = json.loads(summary.summary_file.read_text(),
                      parse_constant=lambda c: pytest.fail(f"{c} in summary.json"))
    assert summary.summary_file == tmp_path / "out" / "summary.json"
    assert data["tolerance_mm"] == 2.0
    assert data["unmatched"] == {"missing_predictions": ["case_c"], "missing_references": ["case_d"]}
    case_a = data["metric_per_case"][0]
    assert case_a["case"] == "case_a" and case_a["metrics"]["2"]["dice"] is None
    assert case_a["metrics"]["2"]["hd95_mm"] is None and case_a["metrics"]["1"]["nsd"] == 1.0
    assert data["mean"]["2"]["dice"] == 0.0 and data["foreground_mean"]["dice"] == 0.5

    with summary.csv_file.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["case"], r["label"]) for r in rows] == [("case_a", "1"), ("case_a", "2"), ("case_b", "1"),
                                                      ("case_b", "2")]
    assert rows[1]["dice"] == "" and rows[1]["n_reference"] == "0"
    assert float(rows[3]["dice"]) == 0.0 and rows[3]["fn"] == "1"


def test_default_output_is_the_prediction_folder_and_parallel_matches(folders: tuple[Path, Path]) -> None:
    ref, pred = folders
    serial = evaluate_folders(ref, pred, labels=[1, (1, 2)])
    parallel = evaluate_folders(ref, pred, labels=[1, (1, 2)], num_processes=2)
    assert serial.summary_file == pred / "summary.json" and (pred / "metrics.csv").is_file()
    assert list(serial.labels) == ["1", "1+2"]
    assert serial.mean == parallel.mean
    # Region 1+2 in case_b: 8 voxels of 1 found, the voxel of 2 missed.
    assert serial.cases[1].metrics["1+2"].overlap.dice == pytest.approx(16 / 17)


def test_ignore_label_excluded(tmp_path: Path) -> None:
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    reference, prediction = _blank(), _blank()
    reference[0, 0, 0:2] = 1
    reference[1, :, :] = 2  # ignore
    prediction[0, 0, 0:2] = 1
    prediction[1, :, :] = 1
    _write(ref, "x.nii.gz", reference)
    _write(pred, "x.nii.gz", prediction)
    summary = evaluate_folders(ref, pred, ignore_label=2)
    assert list(summary.labels) == ["1"]
    assert summary.mean["1"]["dice"] == 1.0


def test_no_matching_names_names_both_folders(tmp_path: Path) -> None:
    _write(tmp_path / "ref", "a.nii.gz", _blank())
    _write(tmp_path / "pred", "b.nii.gz", _blank())
    with pytest.raises(DatasetError) as error:
        evaluate_folders(tmp_path / "ref", tmp_path / "pred")
    assert str(tmp_path / "ref") in str(error.value) and str(tmp_path / "pred") in str(error.value)


def test_shape_mismatch_names_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "ref", "a.nii.gz", _blank())
    _write(tmp_path / "pred", "a.nii.gz", np.zeros((4, 6, 5)))
    with pytest.raises(DatasetError, match="shape") as error:
        evaluate_folders(tmp_path / "ref", tmp_path / "pred")
    assert "\n" not in str(error.value) and str(tmp_path / "pred" / "a.nii.gz") in str(error.value)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="autounet")
    evaluate.register(parser.add_subparsers(dest="command"), common_parent())
    return parser.parse_args(argv)


def test_cli_regions_from_dataset_json(folders: tuple[Path, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    ref, pred = folders
    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "whole": [1, 2], "core": [2]},
        "regions_class_order": [1, 2], "numTraining": 2, "file_ending": ".nii.gz"}))
    args = _parse(["evaluate", str(ref), str(pred), "-j", str(dataset_json), "--regions", "--tolerance", "0.5",
                   "-np", "1", "-o", str(tmp_path / "out")])
    assert args.handler(args, None) == 0
    output = capsys.readouterr().out
    assert "whole" in output and "core" in output and "NSD@0.5mm" in output
    assert str(tmp_path / "out" / "summary.json") in output
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert data["labels"] == {"whole": [1, 2], "core": [2]}
    assert data["mean"]["core"]["dice"] == 0.0


@pytest.fixture()
def wired(monkeypatch: pytest.MonkeyPatch) -> None:
    """``autounet evaluate`` in the real entry point, until the registrar is added to _commands."""
    if evaluate.register not in _commands.REGISTRARS:
        monkeypatch.setattr(_commands, "REGISTRARS", (*_commands.REGISTRARS, evaluate.register))


@pytest.mark.usefixtures("wired")
def test_main_exit_codes(folders: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref, pred = folders
    assert main(["evaluate", str(ref), str(pred), "-np", "1"]) == 0
    assert "foreground" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "missing"), str(pred)]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"autounet evaluate: error: {tmp_path / 'missing'}: folder not found"]
    assert main(["evaluate", str(ref), str(pred), "--regions"]) == 1
    assert "-j/--dataset-json" in capsys.readouterr().err


def test_csv_cells_are_plain_numbers(folders: tuple[Path, Path], tmp_path: Path) -> None:
    ref, pred = folders
    summary = evaluate_folders(ref, pred, output_dir=tmp_path / "out", tolerance_mm=2.0)
    with summary.csv_file.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    cells = [value for row in rows for key, value in row.items() if key not in ("case", "label") and value]
    assert cells and all(float(cell) == float(cell) for cell in cells)  # raises on "np.float64(...)"
    assert not any("np." in cell for cell in cells)
