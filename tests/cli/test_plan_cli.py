from __future__ import annotations

import json
from pathlib import Path

import pytest

from autounet.cli.main import main
from autounet.planning import load_plans

REFERENCE = Path(__file__).parents[1] / "planning" / "data" / "nnunet_reference_plans.json"


def test_plan_from_nnunet_fingerprint_reads_no_image(tmp_path: Path) -> None:
    entry = json.loads(REFERENCE.read_text())["heart_like"]
    fingerprint = tmp_path / "dataset_fingerprint.json"
    fingerprint.write_text(json.dumps(entry["fingerprint"]))
    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(json.dumps(entry["dataset_json"]))
    out = tmp_path / "plans.json"
    code = main(["plan", "--fingerprint", str(fingerprint), "--dataset-json", str(dataset_json), "--out", str(out),
                 "--data-root", str(tmp_path / "nowhere")])
    assert code == 0
    plans = load_plans(out)
    expected = entry["nnunet_plans"]["ExperimentPlanner"]["configurations"]["3d_fullres"]
    assert list(plans.configuration("3d_fullres").patch_size) == expected["patch_size"]
    assert not (tmp_path / "nowhere").exists()


def test_plan_from_fingerprint_needs_its_companions(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["plan", "--fingerprint", str(tmp_path / "f.json"), "--data-root", str(tmp_path)]) == 1
    assert "--dataset-json" in capsys.readouterr().err


def test_plan_and_preprocess_end_to_end_then_resumes(tiny_dataset, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    tiny_dataset(num_cases=4, shape=(10, 20, 20))
    args = ["plan-and-preprocess", "-d", "999", "-np", "1", "--data-root", str(tmp_path)]
    assert main(args) == 0
    folder = tmp_path / "preprocessed" / "Dataset999_Tiny"
    assert (folder / "fingerprint.json").is_file() and (folder / "plans.json").is_file()
    assert (folder / "dataset.json").is_file()
    plans = load_plans(folder / "plans.json")
    data_folders = {c.data_identifier for c in plans.configurations.values()}
    for identifier in data_folders:
        assert len(list((folder / identifier).glob("*.json"))) == 4
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*.npy")}
    capsys.readouterr()
    assert main(args) == 0
    assert "0 case(s) preprocessed" in capsys.readouterr().err or all(
        p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.npy")} == stamps


def test_plan_stops_on_a_broken_dataset(tiny_dataset, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tiny_dataset(num_cases=3)
    (root / "labelsTr" / "case_001.nii.gz").unlink()
    assert main(["plan", "-d", "999", "--data-root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "case_001" in err and "Traceback" not in err
    assert not (tmp_path / "preprocessed").exists()
