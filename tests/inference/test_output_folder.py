"""A prediction folder: the user's own dataset.json/plans.json are never replaced, and predictions of another
model are refused unless overwritten."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from autounet.cli.main import main
from autounet.dataset.description import save_dataset_json
from autounet.errors import ConfigError
from autounet.inference import PredictionSettings, Predictor, load_model_folder
from autounet.io.checkpoints import load_checkpoint, save_checkpoint
from autounet.planning.plans import save_plans
from tests.inference.random_models import DATASET, write_random_models

FAST = PredictionSettings(use_mirroring=False, show_progress=False)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_models(tmp_path_factory.mktemp("output_folder"))


@pytest.fixture(scope="module")
def predictor(data_root: Path) -> Predictor:
    return Predictor.from_model_folder(data_root / "results" / DATASET / "3d_fullres", (0,), settings=FAST)


@pytest.fixture
def inputs(data_root: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for case in ("case_000", "case_001"):
        shutil.copy(data_root / "raw" / DATASET / "imagesTr" / f"{case}_0000.nii.gz", folder / f"{case}_0000.nii.gz")
    return folder


@pytest.mark.parametrize("name", ["dataset.json", "plans.json"])
def test_a_foreign_model_file_is_refused_and_kept(predictor: Predictor, inputs: Path, tmp_path: Path,
                                                  name: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text('{"mine": true}\n')
    with pytest.raises(ConfigError) as caught:
        predictor.predict_folder(inputs, out)
    assert caught.value.path == out / name and "did not write" in str(caught.value)
    assert (out / name).read_text() == '{"mine": true}\n'
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_files_identical_to_the_models_are_kept_and_reused(predictor: Predictor, inputs: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "out"
    save_dataset_json(out / "dataset.json", predictor.model.description)  # as an earlier version wrote them
    save_plans(out / "plans.json", predictor.model.plans)
    assert len(predictor.predict_folder(inputs, out)) == 2
    record = json.loads((out / "dataset.json").read_text())["autounet_prediction"]
    assert record == {"model": predictor.origin} and "3d_fullres (folds 0, checkpoint_final.pt" in predictor.origin


def _stamp(path: Path) -> tuple[int, int]:
    # Outputs are written to a temporary file and renamed: a rewrite always brings another inode.
    return path.stat().st_ino, path.stat().st_mtime_ns


def test_another_model_is_refused_unless_overwrite(data_root: Path, predictor: Predictor, inputs: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "out"
    predictor.predict_folder(inputs, out)
    stamps = {p.name: _stamp(p) for p in out.glob("*.nii.gz")}
    predictor.predict_folder(inputs, out)  # a rerun of the same model skips the finished cases
    assert {p.name: _stamp(p) for p in out.glob("*.nii.gz")} == stamps
    folder = data_root / "results" / DATASET / "3d_fullres"
    other = Predictor.from_model_folder(folder, (1,), settings=FAST)
    assert other.origin != predictor.origin
    with pytest.raises(ConfigError) as caught:
        other.predict_folder(inputs, out)
    assert caught.value.path == out / "dataset.json" and "another model" in str(caught.value)
    assert {p.name: _stamp(p) for p in out.glob("*.nii.gz")} == stamps
    overwriting = Predictor.from_model_folder(folder, (1,), settings=PredictionSettings(
        use_mirroring=False, show_progress=False, overwrite=True))
    overwriting.predict_folder(inputs, out)
    assert all(_stamp(p) != stamps[p.name] for p in out.glob("*.nii.gz"))
    assert json.loads((out / "dataset.json").read_text())["autounet_prediction"] == {"model": other.origin}


def test_cli_refuses_another_model_in_one_line_and_overwrites_on_request(
        data_root: Path, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"

    def predict(fold: str, *extra: str) -> int:
        return main(["predict", "-i", str(inputs), "-o", str(out), "-d", "999", "-c", "3d_fullres", "-f", fold,
                     "--disable-tta", "--data-root", str(data_root), "-q", *extra])

    assert predict("0") == 0
    capsys.readouterr()
    assert predict("1") != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "another model" in error and "--overwrite" in error
    assert predict("1", "--overwrite") == 0


def test_origin_follows_the_weights_not_the_place(data_root: Path, tmp_path: Path) -> None:
    source = data_root / "results" / DATASET / "3d_fullres"
    first = shutil.copytree(source, tmp_path / "a" / DATASET / "3d_fullres")
    second = shutil.copytree(source, tmp_path / "b" / DATASET / "3d_fullres")
    assert load_model_folder(first).origin == load_model_folder(second).origin  # a copy is the same model
    checkpoint = second / "fold_0" / "checkpoint_final.pt"
    state = load_checkpoint(checkpoint)
    state["network"] = {key: value + 1 for key, value in state["network"].items()}  # "retrained": same size
    save_checkpoint(checkpoint, state)
    assert load_model_folder(first).origin != load_model_folder(second).origin
