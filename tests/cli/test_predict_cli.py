"""``autounet predict``: postprocessing options and cascade configurations (random, untrained models)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from autounet.cli.main import main
from autounet.io import read_segmentation
from autounet.postprocessing import PostprocessingPlan, apply_postprocessing, save_postprocessing
from tests.inference.random_models import DATASET, write_random_models


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_models(tmp_path_factory.mktemp("predict_cli"))


@pytest.fixture
def inputs(data_root: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(data_root / "raw" / DATASET / "imagesTr" / "case_000_0000.nii.gz", folder / "a_0000.nii.gz")
    return folder


def _predict(data_root: Path, inputs: Path, output: Path, *extra: str, configuration: str = "3d_fullres") -> int:
    return main(["predict", "-i", str(inputs), "-o", str(output), "-d", "999", "-c", configuration, "-f", "0",
                 "--disable-tta", "--data-root", str(data_root), "-q", *extra])


def test_postprocessing_file_model_default_and_opt_out(data_root: Path, inputs: Path, tmp_path: Path) -> None:
    plan = PostprocessingPlan(largest_component_foreground=True, largest_component_labels=(1, 2))
    plan_file = tmp_path / "pp.json"
    save_postprocessing(plan_file, plan)
    assert _predict(data_root, inputs, tmp_path / "plain") == 0
    plain, _ = read_segmentation(tmp_path / "plain" / "a.nii.gz")
    expected = apply_postprocessing(plain, plan)
    assert not np.array_equal(plain, expected)  # the random model's output has stray components

    assert _predict(data_root, inputs, tmp_path / "file", "--postprocessing", str(plan_file)) == 0
    assert np.array_equal(read_segmentation(tmp_path / "file" / "a.nii.gz")[0], expected)

    model_folder = data_root / "results" / DATASET / "3d_fullres"
    save_postprocessing(model_folder / "postprocessing.json", plan)
    try:
        assert _predict(data_root, inputs, tmp_path / "default") == 0
        assert np.array_equal(read_segmentation(tmp_path / "default" / "a.nii.gz")[0], expected)
        assert _predict(data_root, inputs, tmp_path / "off", "--no-postprocessing") == 0
        assert np.array_equal(read_segmentation(tmp_path / "off" / "a.nii.gz")[0], plain)
    finally:
        (model_folder / "postprocessing.json").unlink()
    assert (tmp_path / "off" / "dataset.json").is_file() and (tmp_path / "off" / "plans.json").is_file()


def test_missing_postprocessing_file_is_one_line_error(data_root: Path, inputs: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    assert _predict(data_root, inputs, tmp_path / "out", "--postprocessing", str(tmp_path / "nope.json")) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.json" in err and "postprocessing file not found" in err


def test_cascade_configuration_runs_both_stages(data_root: Path, inputs: Path, tmp_path: Path) -> None:
    assert _predict(data_root, inputs, tmp_path / "out", configuration="3d_cascade_fullres") == 0
    seg, _ = read_segmentation(tmp_path / "out" / "a.nii.gz")
    reference, _ = read_segmentation(data_root / "raw" / DATASET / "labelsTr" / "case_000.nii.gz")
    assert seg.shape == reference.shape and set(np.unique(seg).tolist()) <= {0, 1, 2}
