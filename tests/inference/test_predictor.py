"""Predictor and ``autounet predict`` on a tiny model trained once per module through the CLI."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from autounet.cli import _commands
from autounet.cli import predict as predict_cli
from autounet.cli.main import main
from autounet.errors import CheckpointError, ConfigError
from autounet.inference import PredictionSettings, Predictor
from autounet.io import read_image
from autounet.io.checkpoints import load_checkpoint
from autounet.networks import inference_state_dict
from tests.conftest import write_tiny_dataset

DATASET = "Dataset999_Tiny"
FAST = PredictionSettings(use_mirroring=False, show_progress=False)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("predict")
    write_tiny_dataset(root / "raw", num_cases=5, num_channels=1, shape=(8, 20, 20))
    assert main(["plan-and-preprocess", "-d", "999", "-np", "1", "--data-root", str(root), "-q"]) == 0
    for fold in ("0", "1"):
        assert main(["train", "-d", "999", "-c", "3d_fullres", "-f", fold, "--epochs", "1",
                     "--iterations-per-epoch", "2", "--validation-iterations", "1", "--num-workers", "1",
                     "--no-validation", "--data-root", str(root), "-q"]) == 0
    return root


@pytest.fixture(scope="module")
def model_folder(data_root: Path) -> Path:
    return data_root / "results" / DATASET / "3d_fullres"


@pytest.fixture(scope="module")
def predictor(model_folder: Path) -> Predictor:
    return Predictor.from_model_folder(model_folder, folds=(0,), settings=FAST)


@pytest.fixture
def with_predict_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``main`` know ``predict`` even before the lead registers it in ``_commands``."""
    if predict_cli.register not in _commands.REGISTRARS:
        monkeypatch.setattr(_commands, "REGISTRARS", (*_commands.REGISTRARS, predict_cli.register))


def _source_image(data_root: Path) -> nib.Nifti1Image:
    return nib.load(data_root / "raw" / DATASET / "imagesTr" / "case_000_0000.nii.gz")


def _write_with_affine(data_root: Path, affine: np.ndarray, file: Path) -> None:
    source = _source_image(data_root)
    image = nib.Nifti1Image(np.asarray(source.dataobj), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=2)
    file.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, file)


def _oblique_affine(zooms: tuple[float, ...]) -> np.ndarray:
    angle = np.deg2rad(17.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0, 0, 1]])
    tilt = np.array([[1.0, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ tilt @ np.diag(zooms)
    affine[:3, 3] = (-12.5, 30.25, 7.0)
    return affine


def _flipped_affine(zooms: tuple[float, ...]) -> np.ndarray:
    affine = np.diag([-zooms[0], zooms[1], -zooms[2], 1.0])
    affine[:3, 3] = (40.0, -3.0, 22.0)
    return affine


@pytest.mark.parametrize("make_affine", [_oblique_affine, _flipped_affine], ids=["oblique", "flipped"])
def test_output_keeps_input_geometry_exactly(data_root: Path, predictor: Predictor, tmp_path: Path,
                                             make_affine: Callable[[tuple[float, ...]], np.ndarray]) -> None:
    zooms = tuple(float(z) for z in _source_image(data_root).header.get_zooms()[:3])
    source = tmp_path / "in" / "case_a_0000.nii.gz"
    _write_with_affine(data_root, make_affine(zooms), source)
    output = tmp_path / "out" / "case_a.nii.gz"
    predictor.predict_files([source], output)
    written, reference = nib.load(output), nib.load(source)
    assert written.shape == reference.shape
    assert np.array_equal(written.affine, reference.affine)
    assert np.array_equal(written.get_qform(), reference.get_qform())
    assert np.array_equal(written.get_sform(), reference.get_sform())
    assert int(written.header["qform_code"]) == int(reference.header["qform_code"])
    assert int(written.header["sform_code"]) == int(reference.header["sform_code"])
    labels = np.unique(np.asarray(written.dataobj))
    assert set(labels.tolist()) <= {0, 1, 2}


def test_predict_array_shapes_and_probabilities(data_root: Path, model_folder: Path) -> None:
    image, geometry = read_image([data_root / "raw" / DATASET / "imagesTr" / "case_001_0000.nii.gz"])
    settings = PredictionSettings(use_mirroring=False, save_probabilities=True, show_progress=False)
    predictor = Predictor.from_model_folder(model_folder, settings=settings)
    seg, probabilities = predictor.predict_array(image, geometry)
    assert seg.shape == image.shape[1:]
    assert probabilities is not None and probabilities.shape == (3, *image.shape[1:])
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-4)
    assert np.array_equal(seg, probabilities.argmax(axis=0))


def test_mirroring_on_and_off_both_run(data_root: Path, model_folder: Path) -> None:
    image, geometry = read_image([data_root / "raw" / DATASET / "imagesTr" / "case_002_0000.nii.gz"])
    mirrored = Predictor.from_model_folder(model_folder, settings=PredictionSettings(show_progress=False))
    assert mirrored.window_settings.mirror_axes  # the tiny model was trained with mirroring
    plain = Predictor.from_model_folder(model_folder, settings=FAST)
    assert plain.window_settings.mirror_axes == ()
    for candidate in (mirrored, plain):
        seg, _ = candidate.predict_array(image, geometry)
        assert seg.shape == image.shape[1:] and set(np.unique(seg).tolist()) <= {0, 1, 2}


def test_folds_average_logits(data_root: Path, model_folder: Path) -> None:
    image, geometry = read_image([data_root / "raw" / DATASET / "imagesTr" / "case_000_0000.nii.gz"])
    single = Predictor.from_model_folder(model_folder, folds=(0,), settings=FAST)
    twice = Predictor.from_model_folder(model_folder, folds=(0, 0), settings=FAST)
    assert len(twice.model.networks) == 2
    assert np.array_equal(single.predict_array(image, geometry)[0], twice.predict_array(image, geometry)[0])
    data = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 8, 20, 20)).astype(np.float32))
    one = Predictor.from_model_folder(model_folder, folds=(1,), settings=FAST)
    both = Predictor.from_model_folder(model_folder, folds=(0, 1), settings=FAST)
    expected = (single.predict_logits(data) + one.predict_logits(data)) / 2
    torch.testing.assert_close(both.predict_logits(data), expected)


def test_deep_supervision_checkpoint_maps_to_final_head(model_folder: Path, predictor: Predictor) -> None:
    state = load_checkpoint(model_folder / "fold_0" / "checkpoint_final.pt")
    assert state["metadata"]["recipe"]["deep_supervision"] is True
    heads = sorted({key.split(".")[2] for key in state["network"] if key.startswith("heads.levels.")}, key=int)
    assert len(heads) > 1  # the checkpoint really holds deep-supervision heads
    mapped = inference_state_dict(state["network"])
    assert {key for key in mapped if key.startswith("heads.")} == {"heads.levels.0.weight", "heads.levels.0.bias"}
    assert torch.equal(mapped["heads.levels.0.weight"], state["network"][f"heads.levels.{heads[-1]}.weight"])
    loaded = predictor.model.networks[0].state_dict()
    assert torch.equal(loaded["heads.levels.0.weight"], mapped["heads.levels.0.weight"])


def test_predict_folder_skips_existing_outputs(data_root: Path, predictor: Predictor, tmp_path: Path) -> None:
    images = data_root / "raw" / DATASET / "imagesTr"
    inputs = tmp_path / "in"
    inputs.mkdir()
    for case in ("case_000", "case_001"):
        (inputs / f"{case}_0000.nii.gz").write_bytes((images / f"{case}_0000.nii.gz").read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    sentinel = out / "case_000.nii.gz"
    sentinel.write_bytes(b"already predicted")
    outputs = predictor.predict_folder(inputs, out)
    assert outputs == [out / "case_000.nii.gz", out / "case_001.nii.gz"]
    assert sentinel.read_bytes() == b"already predicted"
    assert nib.load(out / "case_001.nii.gz").shape == nib.load(inputs / "case_001_0000.nii.gz").shape


def test_cli_predicts_with_dataset_and_configuration(data_root: Path, tmp_path: Path,
                                                     with_predict_command: None) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    source = data_root / "raw" / DATASET / "imagesTr" / "case_003_0000.nii.gz"
    (inputs / "x_0000.nii.gz").write_bytes(source.read_bytes())
    assert main(["predict", "-i", str(inputs), "-o", str(tmp_path / "out"), "-d", "999", "-c", "3d_fullres",
                 "--disable-tta", "--save-probabilities", "--data-root", str(data_root), "-q"]) == 0
    assert (tmp_path / "out" / "x.nii.gz").is_file() and (tmp_path / "out" / "x.npz").is_file()


def test_cli_wrong_channel_count_is_one_line_error(data_root: Path, model_folder: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture, with_predict_command: None) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    source = data_root / "raw" / DATASET / "imagesTr" / "case_000_0000.nii.gz"
    for channel in (0, 1):
        (inputs / f"two_{channel:04d}.nii.gz").write_bytes(source.read_bytes())
    code = main(["predict", "-i", str(inputs), "-o", str(tmp_path / "out"), "-m", str(model_folder), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "two_0000.nii.gz" in err and "channel" in err


def test_cli_missing_model_and_no_cases_are_errors(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   with_predict_command: None) -> None:
    args = ["predict", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "--data-root", str(data_root), "-q"]
    assert main([*args, "-d", "999", "-c", "2d_missing"]) == 1
    assert "model folder not found" in capsys.readouterr().err
    assert main([*args, "-m", str(tmp_path / "nowhere")]) == 1
    assert "model folder not found" in capsys.readouterr().err
    assert main([*args, "-d", "999", "-c", "3d_fullres"]) == 1
    assert "no case found" in capsys.readouterr().err


def test_cli_names_images_of_another_format_when_no_case_is_found(
        data_root: Path, model_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        with_predict_command: None) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    image = _source_image(data_root)
    nib.save(image, inputs / "a_0000.nii")  # uncompressed: the model reads .nii.gz
    nib.save(image, inputs / "b_0000.nii")
    (inputs / "notes.txt").write_text("not an image")
    code = main(["predict", "-i", str(inputs), "-o", str(tmp_path / "out"), "-m", str(model_folder), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "no case found" in err and "2 ending .nii)" in err and "convert them to .nii.gz" in err
    assert not (tmp_path / "out").exists()


def test_predicting_into_the_input_folder_is_refused_before_anything_is_written(
        data_root: Path, predictor: Predictor, model_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        with_predict_command: None) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    source = data_root / "raw" / DATASET / "imagesTr" / "case_000_0000.nii.gz"
    (inputs / "x_0000.nii.gz").write_bytes(source.read_bytes())
    with pytest.raises(ConfigError, match="output folder is the input folder"):
        predictor.predict_folder(inputs, inputs / ".." / "in")
    code = main(["predict", "-i", str(inputs), "-o", str(inputs) + "/", "-m", str(model_folder), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "choose another output folder" in err
    assert sorted(path.name for path in inputs.iterdir()) == ["x_0000.nii.gz"]


def test_default_folds_are_those_with_the_checkpoint(model_folder: Path) -> None:
    assert predict_cli.available_folds(model_folder, "checkpoint_final.pt") == [0, 1]
    with pytest.raises(CheckpointError, match="no fold_N folder holds"):
        predict_cli.available_folds(model_folder, "checkpoint_missing.pt")


def test_register_adds_a_parser() -> None:
    parser = argparse.ArgumentParser()
    predict_cli.register(parser.add_subparsers(dest="command"), argparse.ArgumentParser(add_help=False))
    args = parser.parse_args(["predict", "-i", "a", "-o", "b", "-m", "c", "-f", "0", "1", "--disable-tta"])
    assert args.folds == ["0", "1"] and args.disable_tta and args.handler is predict_cli.run
