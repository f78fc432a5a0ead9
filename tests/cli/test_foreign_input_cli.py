"""Bad input from outside, one class per test (issue #14 items 4 and 13): each builds the bad input, runs the
CLI, and expects a non-zero exit, one line naming the file and the problem, no traceback, inputs unchanged."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from autounet.cli.main import main
from autounet.planning.api import plan_dataset
from autounet.planning.plans import load_plans
from tests.conftest import write_tiny_dataset
from tests.inference.random_models import DATASET, write_model_folder, write_random_models

_PROGRESS = re.compile(r"\d+%\|")


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(argv)
    # Progress bars (tqdm on stderr) are not messages.
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not _PROGRESS.search(line)]
    assert not any("Traceback" in line for line in err), err
    return code, err


def _one_error_line(err: list[str], *needles: str) -> str:
    """The single stderr line holding every needle (other lines may only be verify's closing count)."""
    hits = [line for line in err if all(needle in line for needle in needles)]
    assert len(hits) == 1, err
    assert all(line == hits[0] or "problem(s) found" in line for line in err), err
    return hits[0]


def _write_2d_nifti(path: Path, array: np.ndarray) -> None:
    """A NIfTI file with two dimensions (dim[0] == 2), as 2D tools write it."""
    nib.save(nib.Nifti1Image(np.ascontiguousarray(array.T), np.eye(4)), str(path))


# -- item 4: one dimensionality per dataset, and per model ---------------------------------------------------


@pytest.fixture
def mixed_dimensionality_root(tmp_path: Path) -> Path:
    """A 3D NIfTI dataset whose case_002 is a 2D NIfTI image (with a 2D label)."""
    raw = write_tiny_dataset(tmp_path / "raw", num_cases=3, num_channels=1, shape=(6, 12, 12))
    rng = np.random.default_rng(0)
    label = np.zeros((12, 12), np.uint8)
    label[4:8, 4:8] = 1
    _write_2d_nifti(raw / "imagesTr" / "case_002_0000.nii.gz", rng.normal(100, 10, (12, 12)).astype(np.float32))
    _write_2d_nifti(raw / "labelsTr" / "case_002.nii.gz", label)
    return tmp_path


@pytest.mark.parametrize("command", [["verify"], ["plan-and-preprocess"], ["plan-and-preprocess", "--no-verify"]],
                         ids=["verify", "plan-and-preprocess", "plan-and-preprocess-no-verify"])
def test_mixed_dimensionality_names_the_odd_case(mixed_dimensionality_root: Path, command: list[str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    root = mixed_dimensionality_root
    before = _snapshot(root / "raw")
    code, err = _run([*command, "-d", "999", "-np", "1", "-q", "--data-root", str(root)], capsys)
    assert code != 0
    line = _one_error_line(err, "case_002_0000.nii.gz")
    assert "case 'case_002'" in line and "2D" in line and "3D" in line
    assert _snapshot(root / "raw") == before


@pytest.fixture(scope="module")
def models_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_models(tmp_path_factory.mktemp("models_3d"))


@pytest.fixture(scope="module")
def models_2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with a single-slice (2D) NIfTI dataset and a random ``2d`` model trained on it."""
    root = tmp_path_factory.mktemp("models_2d")
    raw = write_tiny_dataset(root / "raw", num_cases=3, num_channels=1, shape=(1, 20, 20))
    plans, _ = plan_dataset(raw, root / "preprocessed", num_processes=1)
    write_model_folder(root / "results", plans, raw, "2d", 1)
    return root


def _predict(root: Path, inputs: Path, output: Path, configuration: str,
             capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    return _run(["predict", "-i", str(inputs), "-o", str(output), "-d", "999", "-c", configuration, "-f", "0",
                 "--disable-tta", "--data-root", str(root), "-q"], capsys)


def test_2d_image_with_3d_model_is_refused(models_3d: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    _write_2d_nifti(inputs / "flat_0000.nii.gz", np.ones((20, 20), np.float32))
    before = _snapshot(inputs)
    code, err = _predict(models_3d, inputs, tmp_path / "out", "3d_fullres", capsys)
    assert code != 0
    line = _one_error_line(err, "flat_0000.nii.gz")
    assert "image is 2D" in line and "trained on 3D images" in line
    assert _snapshot(inputs) == before
    assert not (tmp_path / "out" / "flat.nii.gz").exists()


def test_3d_image_with_2d_model_is_refused(models_2d: Path, models_3d: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(models_3d / "raw" / DATASET / "imagesTr" / "case_000_0000.nii.gz", inputs / "vol_0000.nii.gz")
    before = _snapshot(inputs)
    code, err = _predict(models_2d, inputs, tmp_path / "out", "2d", capsys)
    assert code != 0
    line = _one_error_line(err, "vol_0000.nii.gz")
    assert "image is 3D" in line and "trained on 2D" in line
    assert _snapshot(inputs) == before
    # A 2d configuration of a 3D dataset predicts 3D images slice by slice: the dataset decides, not the
    # configuration.
    plans = load_plans(models_3d / "results" / DATASET / "3d_fullres" / "plans.json")
    folder = write_model_folder(tmp_path / "results", plans, models_3d / "raw" / DATASET, "2d", 1)
    code, err = _run(["predict", "-i", str(inputs), "-o", str(tmp_path / "slices"), "-m", str(folder), "-f", "0",
                      "--disable-tta", "-q"], capsys)
    assert code == 0 and (tmp_path / "slices" / "vol.nii.gz").is_file()
