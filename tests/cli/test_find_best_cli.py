"""``autounet find-best`` end to end on hand-written cross-validation results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autounet.cli.main import main
from autounet.ensembling import FindBestChoice
from autounet.io.serialization import load_dataclass
from autounet.postprocessing import load_postprocessing
from tests.ensembling import fake_results


def _run(root: Path, *extra: str) -> int:
    return main(["find-best", "-d", "501", "--data-root", str(root), "-np", "1", *extra])


def test_ensemble_wins_and_commands_are_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_results.write_raw(tmp_path)
    results = tmp_path / "results"
    for kind in ("cfg_fp", "cfg_miss"):
        fake_results.write_configuration(results, kind)
    fake_results.write_configuration(results, "cfg_unfinished", folds=(0,))
    assert _run(tmp_path, "-f", "0", "1") == 0
    out = tmp_path / "results" / fake_results.DATASET / "find_best"
    choice = load_dataclass(FindBestChoice, out / "choice.json")
    assert choice.configurations == ("cfg_fp", "cfg_miss") and choice.ensemble and choice.folds == (0, 1)
    assert choice.cv_dice == pytest.approx(1.0)
    assert choice.postprocessing_file == "find_best/postprocessing.json"  # relative: the folder can move
    assert load_postprocessing(choice.postprocessing_path(out.parent)).is_identity  # already perfect: nothing to gain
    summary = json.loads((out / "summary.json").read_text())
    by_name = {c["name"]: c for c in summary["candidates"]}
    assert by_name["cfg_unfinished"]["skipped"].startswith("fold 1 has no finished validation")
    assert by_name["cfg_fp"]["foreground_dice"] == pytest.approx(54 / 55)
    assert by_name["cfg_fp+cfg_miss"]["num_cases"] == 4
    assert sorted(p.name for p in (out / "ensembles" / "cfg_fp+cfg_miss").iterdir()) == [
        f"case_{i}.nii.gz" for i in range(4)]
    commands = (out / "predict_commands.txt").read_text().splitlines()
    assert commands[0].startswith(f"autounet --data-root {tmp_path} predict -i INPUT -o OUTPUT/cfg_fp -d "
                                  f"{fake_results.DATASET} -c cfg_fp -f 0 1 --save-probabilities")
    assert commands[2].endswith(f"-o OUTPUT/ensemble -j {results / fake_results.DATASET / 'cfg_fp' / 'dataset.json'}"
                                f" --postprocessing {out / 'postprocessing.json'}")
    assert commands[2] in capsys.readouterr().out


def test_single_configuration_with_postprocessing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_results.write_raw(tmp_path)
    results = tmp_path / "results"
    fake_results.write_configuration(results, "cfg_fp")
    fake_results.write_configuration(results, "cfg_miss", with_npz=False)
    assert _run(tmp_path) != 0  # folds 0-4 by default: none finished
    assert "no configuration has finished folds 0, 1, 2, 3, 4" in capsys.readouterr().err
    assert _run(tmp_path, "-f", "0", "1") == 0
    printed = capsys.readouterr().out
    assert "cfg_fp+cfg_miss  skipped  (no probabilities for case 'case_0' of cfg_miss" in printed
    dataset_results = tmp_path / "results" / fake_results.DATASET
    choice = load_dataclass(FindBestChoice, dataset_results / "find_best" / "choice.json")
    assert choice.configurations == ("cfg_fp",) and not choice.ensemble
    assert choice.cv_dice_postprocessed == pytest.approx(1.0)  # the false-positive voxel is removed
    plan = load_postprocessing(choice.postprocessing_path(dataset_results))
    assert plan.largest_component_foreground
    assert f"-c cfg_fp -f 0 1 --postprocessing {choice.postprocessing_path(dataset_results)}" in printed


def test_missing_reference_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = fake_results.write_raw(tmp_path)
    fake_results.write_configuration(tmp_path / "results", "cfg_fp")
    (raw / "labelsTr" / "case_3.nii.gz").unlink()
    assert _run(tmp_path, "-f", "0", "1") == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "case_3" in err and err.startswith("autounet find-best: error:")
