"""Folder prediction (pipelined), postprocessing and cascade prediction with random, untrained models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from autounet.errors import CheckpointError, ConfigError, ImageIOError
from autounet.inference import PredictionSettings, Predictor
from autounet.io import read_image, read_segmentation
from autounet.planning.plans import load_plans
from autounet.postprocessing import PostprocessingPlan, apply_postprocessing
from autounet.preprocessing.case import preprocess_case
from tests.inference.random_models import DATASET, write_random_models

FAST = PredictionSettings(use_mirroring=False, show_progress=False)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_models(tmp_path_factory.mktemp("random_models"))


def _inputs(data_root: Path, tmp_path: Path, cases: tuple[str, ...] = ("case_000", "case_001", "case_002")) -> Path:
    images = data_root / "raw" / DATASET / "imagesTr"
    inputs = tmp_path / "in"
    inputs.mkdir()
    for case in cases:
        shutil.copy(images / f"{case}_0000.nii.gz", inputs / f"{case}_0000.nii.gz")
    return inputs


def test_folder_matches_case_by_case_and_writes_model_files(data_root: Path, tmp_path: Path) -> None:
    predictor = Predictor.from_model_folder(data_root / "results" / DATASET / "3d_fullres", (0, 1), settings=FAST)
    inputs, out = _inputs(data_root, tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    outputs = predictor.predict_folder(inputs, out)
    assert [p.name for p in outputs] == ["case_000.nii.gz", "case_001.nii.gz", "case_002.nii.gz"]
    for case_file in outputs:
        image, geometry = read_image([inputs / case_file.name.replace(".nii.gz", "_0000.nii.gz")])
        expected, _ = predictor.predict_array(image, geometry)
        assert np.array_equal(read_segmentation(case_file)[0], expected)
    assert json.loads((out / "dataset.json").read_text())["labels"] == {"background": 0, "organ": 1, "corner": 2}
    assert load_plans(out / "plans.json") == predictor.model.plans
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["case_000.nii.gz", "case_001.nii.gz", "case_002.nii.gz",
                                                     "dataset.json", "notes.txt", "plans.json"]


def test_folder_error_names_the_file_and_keeps_finished_cases(data_root: Path, tmp_path: Path) -> None:
    predictor = Predictor.from_model_folder(data_root / "results" / DATASET / "3d_fullres", settings=FAST)
    inputs = _inputs(data_root, tmp_path)
    broken = inputs / "case_001_0000.nii.gz"
    broken.write_bytes(b"not an image")
    with pytest.raises(ImageIOError) as caught:
        predictor.predict_folder(inputs, tmp_path / "out")
    assert caught.value.path == broken
    assert (tmp_path / "out" / "case_000.nii.gz").is_file()
    assert not (tmp_path / "out" / "case_002.nii.gz").exists()
    # Resume: with the input repaired, only the missing cases are predicted.
    shutil.copy(data_root / "raw" / DATASET / "imagesTr" / "case_001_0000.nii.gz", broken)
    first = (tmp_path / "out" / "case_000.nii.gz").stat().st_mtime_ns
    predictor.predict_folder(inputs, tmp_path / "out")
    assert (tmp_path / "out" / "case_000.nii.gz").stat().st_mtime_ns == first
    assert (tmp_path / "out" / "case_002.nii.gz").is_file()


def test_postprocessing_is_applied_to_labels_not_probabilities(data_root: Path, tmp_path: Path) -> None:
    folder = data_root / "results" / DATASET / "3d_fullres"
    image, geometry = read_image([data_root / "raw" / DATASET / "imagesTr" / "case_000_0000.nii.gz"])
    plain = Predictor.from_model_folder(folder, settings=PredictionSettings(use_mirroring=False,
                                                                            save_probabilities=True))
    plan = PostprocessingPlan(largest_component_foreground=True, largest_component_labels=(1,))
    processed = Predictor.from_model_folder(folder, settings=PredictionSettings(
        use_mirroring=False, save_probabilities=True, postprocessing=plan))
    seg, probabilities = plain.predict_array(image, geometry)
    seg_post, probabilities_post = processed.predict_array(image, geometry)
    assert np.array_equal(seg_post, apply_postprocessing(seg, plan))
    assert probabilities is not None and probabilities_post is not None
    assert np.array_equal(probabilities, probabilities_post)


@pytest.fixture(scope="module")
def cascade(data_root: Path) -> Predictor:
    return Predictor.from_model_folder(data_root / "results" / DATASET / "3d_cascade_fullres", (0, 1),
                                       settings=FAST)


def test_cascade_loads_its_previous_stage(cascade: Predictor) -> None:
    assert cascade.previous is not None and cascade.model.previous_stage is not None
    assert cascade.previous.model.configuration.name == "3d_lowres"
    assert len(cascade.previous.model.networks) == 2
    first_conv = next(p for p in cascade.model.networks[0].parameters() if p.ndim == 5)
    assert first_conv.shape[1] == 1 + 2  # image + one-hot of labels 1 and 2


def test_cascade_runs_the_low_resolution_stage_first(data_root: Path, cascade: Predictor,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    image, geometry = read_image([data_root / "raw" / DATASET / "imagesTr" / "case_001_0000.nii.gz"])
    plans = cascade.model.plans
    low, _, _ = preprocess_case(image, None, geometry, plans, plans.configuration("3d_lowres"))
    full, _, _ = preprocess_case(image, None, geometry, plans, plans.configuration("3d_cascade_fullres"))
    assert low.shape != full.shape  # the stages really work on different grids
    calls: list[tuple[str, tuple[int, ...]]] = []
    assert cascade.previous is not None
    for stage, name in ((cascade.previous, "low"), (cascade, "full")):
        original = stage.predict_logits

        def spy(data: torch.Tensor, original=original, name=name) -> torch.Tensor:  # noqa: ANN001
            calls.append((name, tuple(data.shape)))
            return original(data)

        monkeypatch.setattr(stage, "predict_logits", spy)
    seg, _ = cascade.predict_array(image, geometry)
    assert calls == [("low", low.shape), ("full", (3, *full.shape[1:]))]
    assert seg.shape == image.shape[1:] and set(np.unique(seg).tolist()) <= {0, 1, 2}


def test_cascade_folder_prediction(data_root: Path, cascade: Predictor, tmp_path: Path) -> None:
    outputs = cascade.predict_folder(_inputs(data_root, tmp_path, ("case_002",)), tmp_path / "out")
    source = nib.load(data_root / "raw" / DATASET / "imagesTr" / "case_002_0000.nii.gz")
    assert nib.load(outputs[0]).shape == source.shape


def test_cascade_without_previous_stage_folder_is_a_clear_error(data_root: Path, tmp_path: Path) -> None:
    results = tmp_path / "results" / DATASET
    shutil.copytree(data_root / "results" / DATASET / "3d_cascade_fullres", results / "3d_cascade_fullres")
    with pytest.raises(CheckpointError, match="previous stage '3d_lowres'") as caught:
        Predictor.from_model_folder(results / "3d_cascade_fullres", settings=FAST)
    assert caught.value.path == results / "3d_lowres"
    shutil.copytree(data_root / "results" / DATASET / "3d_lowres", results / "3d_lowres")
    shutil.rmtree(results / "3d_lowres" / "fold_1")
    with pytest.raises(CheckpointError, match="checkpoint") as caught:
        Predictor.from_model_folder(results / "3d_cascade_fullres", (0, 1), settings=FAST)
    assert "3d_lowres" in str(caught.value)


def test_cascade_model_without_previous_stage_is_rejected(cascade: Predictor) -> None:
    from dataclasses import replace

    with pytest.raises(ConfigError, match="cascade stage"):
        Predictor(replace(cascade.model, previous_stage=None), settings=FAST)
