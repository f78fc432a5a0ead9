"""Bad input from outside, one class per test (issue #14 items 4 and 13): each builds the bad input, runs the
CLI, and expects a non-zero exit, one line naming the file and the problem, no traceback, inputs unchanged."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch

from autounet.cli.main import main
from autounet.io.checkpoints import save_checkpoint
from autounet.planning.api import plan_dataset
from autounet.planning.plans import load_plans
from tests.conftest import write_tiny_dataset
from tests.inference.random_models import DATASET, write_model_folder, write_random_models
from tests.inference.test_nnunet_model import RESIDUAL_3D, _nnunet_weights, write_nnunet_folder

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
    _with_2d_mirror_axes(write_model_folder(root / "results", plans, raw, "2d", 1))
    return root


def _with_2d_mirror_axes(folder: Path) -> Path:
    """The helper records 3D mirror axes; a 2d model mirrors its two patch axes."""
    state = torch.load(folder / "fold_0" / "checkpoint_final.pt", weights_only=True)
    state["metadata"]["mirror_axes"] = [0, 1]
    save_checkpoint(folder / "fold_0" / "checkpoint_final.pt", {k: v for k, v in state.items() if k != "format"})
    return folder


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
    folder = _with_2d_mirror_axes(write_model_folder(tmp_path / "results", plans, models_3d / "raw" / DATASET, "2d", 1))
    code, err = _run(["predict", "-i", str(inputs), "-o", str(tmp_path / "slices"), "-m", str(folder), "-f", "0",
                      "--disable-tta", "-q"], capsys)
    assert code == 0 and (tmp_path / "slices" / "vol.nii.gz").is_file()


# -- item 13: foreign files validated before use -------------------------------------------------------------


def _nnunet_configuration(plans: dict[str, Any]) -> dict[str, Any]:
    return plans["configurations"]["3d_fullres"]


def _arch_kwargs(plans: dict[str, Any]) -> dict[str, Any]:
    return _nnunet_configuration(plans)["architecture"]["arch_kwargs"]


NNUNET_PLANS_BREAKS: list[tuple[str, Callable[[dict[str, Any], dict[str, Any]], object], str, str]] = [
    ("no-configurations", lambda plans, _: plans.pop("configurations"), "plans.json", "configurations"),
    ("no-patch-size", lambda plans, _: _nnunet_configuration(plans).pop("patch_size"), "plans.json",
     "configurations.3d_fullres.patch_size"),
    ("no-architecture", lambda plans, _: _nnunet_configuration(plans).pop("architecture"), "plans.json",
     "configurations.3d_fullres.architecture"),
    ("no-spacing", lambda plans, _: _nnunet_configuration(plans).pop("spacing"), "plans.json",
     "configurations.3d_fullres.spacing"),
    ("no-normalization", lambda plans, _: _nnunet_configuration(plans).pop("normalization_schemes"), "plans.json",
     "normalization_schemes"),
    ("no-stages", lambda plans, _: _arch_kwargs(plans).pop("n_stages"), "plans.json", "arch_kwargs.n_stages"),
    ("stages-not-a-number", lambda plans, _: _arch_kwargs(plans).update(n_stages="three"), "plans.json",
     "arch_kwargs.n_stages"),
    ("features-per-stage-too-short", lambda plans, _: _arch_kwargs(plans).update(features_per_stage=[4, 8]),
     "plans.json", "arch_kwargs"),
    ("patch-size-a-string", lambda plans, _: _nnunet_configuration(plans).update(patch_size="big"), "plans.json",
     "patch_size"),
    ("architecture-a-list", lambda plans, _: _nnunet_configuration(plans).update(architecture=[]), "plans.json",
     "architecture"),
    ("resampling-order-a-string",
     lambda plans, _: _nnunet_configuration(plans)["resampling_fn_data_kwargs"].update(order="cubic"),
     "plans.json", "resampling_fn_data_kwargs.order"),
    ("ct-statistics-a-string",
     lambda plans, _: plans["foreground_intensity_properties_per_channel"]["0"].update(mean="high"),
     "plans.json", "foreground_intensity_properties_per_channel.0.mean"),
    ("inherits-from-a-list", lambda plans, _: _nnunet_configuration(plans).update(inherits_from=["2d"]),
     "plans.json", "inherits_from"),
    ("transpose-not-a-permutation", lambda plans, _: plans.update(transpose_forward=[0, 0, 1]), "plans.json",
     "transpose_forward"),
    # Absurd sizes (item 13, "absurd size limits"): refused at plan load, named.
    ("negative-spacing", lambda plans, _: _nnunet_configuration(plans).update(spacing=[3.0, -1.0, 1.0]),
     "plans.json", "spacing[1]"),
    ("nan-spacing", lambda plans, _: _nnunet_configuration(plans).update(spacing=[float("nan"), 1.0, 1.0]),
     "plans.json", "spacing[0]"),
    ("huge-patch", lambda plans, _: _nnunet_configuration(plans).update(patch_size=[8, 2**40, 16]), "plans.json",
     "patch_size[1]"),
    ("zero-batch-size", lambda plans, _: _nnunet_configuration(plans).update(batch_size=0), "plans.json",
     "batch_size"),
    ("no-labels", lambda _, dataset: dataset.pop("labels"), "dataset.json", "labels"),
]


@pytest.fixture
def nnunet_case(tmp_path: Path) -> tuple[Path, Path]:
    """An nnU-Net v2 model folder (3D, two channels) and a folder of matching images to predict."""
    dataset = write_tiny_dataset(tmp_path / "raw", num_cases=1, num_channels=2)
    return write_nnunet_folder(tmp_path / "results", RESIDUAL_3D), dataset / "imagesTr"


def _predict_folder(model: Path, inputs: Path, output: Path,
                    capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    return _run(["predict", "-m", str(model), "-i", str(inputs), "-o", str(output), "-f", "0", "--disable-tta",
                 "-q"], capsys)


def _edit_json(path: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(("edit", "filename", "field"), [entry[1:] for entry in NNUNET_PLANS_BREAKS],
                         ids=[entry[0] for entry in NNUNET_PLANS_BREAKS])
def test_nnunet_plans_lacking_or_mistyping_a_field(nnunet_case: tuple[Path, Path], tmp_path: Path,
                                                   edit: Callable[[dict[str, Any], dict[str, Any]], object],
                                                   filename: str, field: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder, inputs = nnunet_case
    plans, dataset = json.loads((folder / "plans.json").read_text()), json.loads((folder / "dataset.json").read_text())
    edit(plans, dataset)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset))
    before = _snapshot(folder), _snapshot(inputs)
    code, err = _predict_folder(folder, inputs, tmp_path / "out", capsys)
    assert code == 1
    line = _one_error_line(err, filename)
    assert field in line and "error:" in line and "unexpected" not in line
    assert (_snapshot(folder), _snapshot(inputs)) == before


def _autounet_checkpoint_edit(state: dict[str, Any], change: str) -> None:
    weights = state["network"]
    # The full-resolution head (the last one); deep-supervision heads are dropped for prediction.
    head = max((key for key in weights if re.fullmatch(r"heads\.levels\.\d+\.weight", key)),
               key=lambda key: int(key.split(".")[2]))
    if change == "non-tensor":
        weights[head] = weights[head].tolist()
    elif change == "no-weights":
        del state["network"]
    elif change == "head-shape":
        weights[head] = torch.zeros(())
    elif change == "nan":
        weights[head] = torch.full_like(weights[head], float("nan"))
    elif change == "mirror-axes":
        state["metadata"]["mirror_axes"] = [0, 7]
    elif change == "metadata-a-list":
        state["metadata"] = ["3d_fullres"]


@pytest.mark.parametrize(("change", "message"), [
    ("non-tensor", "not a tensor"), ("no-weights", "no 'network' weights"), ("head-shape", "shape ()"),
    ("nan", "NaN"), ("mirror-axes", "mirror_axes"), ("metadata-a-list", "metadata"),
])
def test_autounet_checkpoint_with_foreign_content(models_3d: Path, tmp_path: Path, change: str, message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "model"
    shutil.copytree(models_3d / "results" / DATASET / "3d_fullres", folder)
    checkpoint = folder / "fold_0" / "checkpoint_final.pt"
    state = torch.load(checkpoint, weights_only=True)
    state.pop("format")
    _autounet_checkpoint_edit(state, change)
    save_checkpoint(checkpoint, state)
    inputs = models_3d / "raw" / DATASET / "imagesTr"
    before = _snapshot(folder), _snapshot(inputs)
    code, err = _predict_folder(folder, inputs, tmp_path / "out", capsys)
    assert code == 1
    line = _one_error_line(err, "checkpoint_final.pt")
    assert message in line and "unexpected" not in line
    assert (_snapshot(folder), _snapshot(inputs)) == before


@pytest.mark.parametrize(("change", "message"), [
    ("non-tensor", "not a tensor"), ("no-weights", "no 'network_weights'"), ("wrong-shape", "has shape"),
    ("mirror-axes", "inference_allowed_mirroring_axes"),
])
def test_nnunet_checkpoint_with_foreign_content(nnunet_case: tuple[Path, Path], tmp_path: Path, change: str,
                                                message: str, capsys: pytest.CaptureFixture[str]) -> None:
    folder, inputs = nnunet_case
    checkpoint = folder / "fold_0" / "checkpoint_final.pth"
    weights = dict(_nnunet_weights(RESIDUAL_3D))
    state: dict[str, Any] = {"network_weights": weights, "trainer_name": "nnUNetTrainer",
                             "init_args": {"configuration": "3d_fullres"}}
    first = "encoder.stem.convs.0.conv.weight"
    assert first in weights
    if change == "non-tensor":
        weights[first] = "weights"
    elif change == "no-weights":
        del state["network_weights"]
    elif change == "wrong-shape":
        weights[first] = torch.zeros(2, 2)
    else:
        state["inference_allowed_mirroring_axes"] = ["x"]
    torch.save(state, checkpoint)
    before = _snapshot(folder), _snapshot(inputs)
    code, err = _predict_folder(folder, inputs, tmp_path / "out", capsys)
    assert code == 1
    line = _one_error_line(err, "checkpoint_final.pth")
    assert message in line and "unexpected" not in line
    assert (_snapshot(folder), _snapshot(inputs)) == before


AUTOUNET_PLANS_BREAKS: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("zero-batch-size", lambda config: config.update(batch_size=0), "configurations.3d_fullres.batch_size"),
    ("huge-patch", lambda config: config.update(patch_size=[8, 10**12, 16]), "configurations.3d_fullres.patch_size"),
    ("huge-patch-volume", lambda config: config.update(patch_size=[4096, 4096, 4096]),
     "configurations.3d_fullres.patch_size"),
    ("negative-spacing", lambda config: config.update(spacing=[3.0, -1.0, 1.0]),
     "configurations.3d_fullres.spacing[1]"),
    ("infinite-spacing", lambda config: config.update(spacing=[float("inf"), 1.0, 1.0]),
     "configurations.3d_fullres.spacing[0]"),
    ("spacing-of-another-dimensionality", lambda config: config.update(spacing=[1.0, 1.0]),
     "configurations.3d_fullres.spacing"),
]


@pytest.mark.parametrize(("edit", "field"), [entry[1:] for entry in AUTOUNET_PLANS_BREAKS],
                         ids=[entry[0] for entry in AUTOUNET_PLANS_BREAKS])
def test_autounet_plans_with_absurd_sizes(models_3d: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], object],
                                          field: str, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "model"
    shutil.copytree(models_3d / "results" / DATASET / "3d_fullres", folder)
    _edit_json(folder / "plans.json", lambda plans: edit(plans["configurations"]["3d_fullres"]))
    inputs = models_3d / "raw" / DATASET / "imagesTr"
    before = _snapshot(folder), _snapshot(inputs)
    code, err = _predict_folder(folder, inputs, tmp_path / "out", capsys)
    assert code == 1
    line = _one_error_line(err, "plans.json")
    assert f"field '{field}" in line and "unexpected" not in line
    assert (_snapshot(folder), _snapshot(inputs)) == before


@pytest.mark.parametrize(("argv", "flag"), [
    (["plan", "-d", "1", "--gpu-memory", "1e30"], "--gpu-memory"),
    (["plan", "-d", "1", "--gpu-memory", "inf"], "--gpu-memory"),
    (["plan", "-d", "1", "--gpu-memory", "-8"], "--gpu-memory"),
    (["train", "-d", "1", "-c", "2d", "-f", "0", "--seed", str(10**30)], "--seed"),
    (["train", "-d", "1", "-c", "2d", "-f", "0", "--seed", "-1"], "--seed"),
    (["train", "-d", "1", "-c", "2d", "-f", "0", "--epochs", str(10**30)], "--epochs"),
    (["predict", "-i", "in", "-o", "out", "-d", "1", "-c", "2d", "--batch-size", str(2**63)], "--batch-size"),
    (["example", "mr", "--shape", "64", str(2**40), "64"], "--shape"),
])
def test_absurd_sizes_in_flags_are_usage_errors(argv: list[str], flag: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert flag in error and "Traceback" not in error


FINGERPRINT_BREAKS: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("zero-spacing", lambda fp: fp["spacings"][1].__setitem__(0, 0.0), "spacings[1]"),
    ("negative-spacing", lambda fp: fp["spacings"][0].__setitem__(2, -1.0), "spacings[0]"),
    ("nan-spacing", lambda fp: fp["spacings"][2].__setitem__(1, float("nan")), "spacings[2]"),
    ("zero-shape", lambda fp: fp["shapes_before_crop"][0].__setitem__(0, 0), "shapes_before_crop[0]"),
    ("relative-size-above-one", lambda fp: fp["relative_sizes_after_crop"].__setitem__(0, 2.0),
     "relative_sizes_after_crop[0]"),
    ("nan-intensity", lambda fp: fp["foreground_intensity"][0].update(mean=float("nan")), "foreground_intensity[0]"),
    ("spacing-missing-for-a-case", lambda fp: fp["spacings"].pop(), "spacings"),
]


@pytest.mark.parametrize(("edit", "field"), [entry[1:] for entry in FINGERPRINT_BREAKS],
                         ids=[entry[0] for entry in FINGERPRINT_BREAKS])
def test_autounet_fingerprint_with_bad_values(tmp_path: Path, edit: Callable[[dict[str, Any]], object], field: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    write_tiny_dataset(tmp_path / "raw", num_cases=3, num_channels=1, shape=(6, 12, 12))
    assert main(["fingerprint", "-d", "999", "-np", "1", "-q", "--data-root", str(tmp_path)]) == 0
    fingerprint = tmp_path / "preprocessed" / DATASET / "fingerprint.json"
    _edit_json(fingerprint, edit)
    capsys.readouterr()
    before = _snapshot(tmp_path / "raw"), fingerprint.read_bytes()
    code, err = _run(["plan", "-d", "999", "-np", "1", "-q", "--no-verify", "--data-root", str(tmp_path)], capsys)
    assert code == 1
    line = _one_error_line(err, "fingerprint.json")
    assert field in line and "unexpected" not in line
    assert (_snapshot(tmp_path / "raw"), fingerprint.read_bytes()) == before
    assert not (tmp_path / "preprocessed" / DATASET / "plans.json").exists()


@pytest.mark.parametrize(("spacing", "field"), [([3.0, 0.0, 1.0], "spacings[1]"), ([3.0, 1.0, -2.0], "spacings[1]"),
                                                ([float("nan"), 1.0, 1.0], "spacings[1]")],
                         ids=["zero", "negative", "nan"])
def test_nnunet_fingerprint_with_bad_spacing(tmp_path: Path, spacing: list[float], field: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    stats = {"max": 9.0, "mean": 5.0, "median": 5.0, "min": 1.0, "percentile_00_5": 1.0, "percentile_99_5": 9.0,
             "std": 2.0}
    fingerprint = tmp_path / "dataset_fingerprint.json"
    fingerprint.write_text(json.dumps({
        "spacings": [[3.0, 1.0, 1.0], spacing], "shapes_after_crop": [[8, 12, 12], [8, 12, 12]],
        "median_relative_size_after_cropping": 1.0, "foreground_intensity_properties_per_channel": {"0": stats}}))
    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1},
                                        "numTraining": 2, "file_ending": ".nii.gz"}))
    before = fingerprint.read_bytes()
    code, err = _run(["plan", "--fingerprint", str(fingerprint), "--dataset-json", str(dataset_json), "--out",
                      str(tmp_path / "plans.json"), "-q", "--data-root", str(tmp_path)], capsys)
    assert code == 1
    line = _one_error_line(err, "dataset_fingerprint.json")
    assert field in line and "unexpected" not in line
    assert fingerprint.read_bytes() == before and not (tmp_path / "plans.json").exists()
