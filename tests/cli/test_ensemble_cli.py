"""``autounet ensemble`` end to end on hand-written prediction folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autounet.cli.main import main
from autounet.io import read_segmentation
from autounet.postprocessing import PostprocessingPlan, save_postprocessing
from tests.ensembling import fake_results


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two prediction folders of cases case_0 and case_1, the first with dataset.json."""
    fp = fake_results.write_configuration(tmp_path, "cfg_fp", folds=(0,)) / "fold_0" / "validation"
    miss = fake_results.write_configuration(tmp_path, "cfg_miss", folds=(0,)) / "fold_0" / "validation"
    (fp / "dataset.json").write_text(json.dumps(fake_results.DATASET_JSON))
    return fp, miss


def test_ensemble_with_postprocessing(tmp_path: Path, folders: tuple[Path, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    plan_file = tmp_path / "postprocessing.json"
    save_postprocessing(plan_file, PostprocessingPlan(largest_component_foreground=True))
    # Alone, cfg_fp has a false-positive voxel; the postprocessing removes it.
    code = main(["ensemble", "-i", str(folders[0]), "-o", str(tmp_path / "single"), "--postprocessing",
                 str(plan_file)])
    assert code == 0
    seg, _ = read_segmentation(tmp_path / "single" / "case_0.nii.gz")
    assert np.array_equal(seg, fake_results.reference())
    code = main(["ensemble", "-i", *map(str, folders), "-o", str(tmp_path / "both"), "--save-probabilities"])
    assert code == 0 and "ensembled: 2 case(s) of 2 folder(s)" in capsys.readouterr().out
    seg, _ = read_segmentation(tmp_path / "both" / "case_1.nii.gz")
    assert np.array_equal(seg, fake_results.reference()) and (tmp_path / "both" / "case_1.npz").is_file()


@pytest.mark.parametrize("problem", ["missing_case", "no_dataset_json", "output_is_input", "bad_postprocessing"])
def test_bad_inputs_are_one_line_errors(tmp_path: Path, folders: tuple[Path, Path], problem: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    inputs, output, extra = list(folders), tmp_path / "out", []
    expected = ""
    if problem == "missing_case":
        (folders[1] / "case_0.npz").unlink()
        expected = f"{folders[1]}: no probabilities for case 'case_0'"
    elif problem == "no_dataset_json":
        inputs.reverse()
        expected = "give the models' dataset.json with -j"
    elif problem == "output_is_input":
        output = folders[1]
        expected = "must differ from every input folder"
    else:
        (tmp_path / "pp.json").write_text('{"schema_version": 1, "largest_component_labels": "1"}')
        extra = ["--postprocessing", str(tmp_path / "pp.json")]
        expected = "largest_component_labels"
    assert main(["ensemble", "-i", *map(str, inputs), "-o", str(output), *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("autounet ensemble: error:") and expected in err
