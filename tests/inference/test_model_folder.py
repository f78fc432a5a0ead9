"""Model folders: run folders of other recipes/plans (configuration from the name, cascade siblings)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from autounet.errors import CheckpointError
from autounet.inference import LoadedModel, PredictionSettings, Predictor, load_model_folder
from autounet.io import read_image
from autounet.io.checkpoints import load_checkpoint, save_checkpoint
from autounet.paths import run_folder_name
from tests.inference.random_models import DATASET, write_random_models

FAST = PredictionSettings(use_mirroring=False, show_progress=False)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_models(tmp_path_factory.mktemp("random_models"))


def _renamed_copy(source: Path, target: Path, drop_metadata: bool) -> Path:
    """Copy a model folder; without metadata, the checkpoints no longer say their configuration."""
    shutil.copytree(source, target)
    if drop_metadata:
        for path in target.glob("fold_*/checkpoint_final.pt"):
            save_checkpoint(path, {"network": load_checkpoint(path)["network"]})
    return target


def test_cascade_in_run_folders_of_another_recipe(data_root: Path, tmp_path: Path) -> None:
    results = data_root / "results" / DATASET
    renamed = tmp_path / DATASET
    for configuration in ("3d_lowres", "3d_cascade_fullres"):
        _renamed_copy(results / configuration, renamed / run_folder_name(configuration, "long", "resenc"),
                      drop_metadata=True)
    folder = renamed / "3d_cascade_fullres__long__resenc"
    model = load_model_folder(folder, (0, 1))
    assert isinstance(model, LoadedModel)
    assert model.configuration.name == "3d_cascade_fullres"
    assert model.previous_stage is not None and model.previous_stage.configuration.name == "3d_lowres"
    image, geometry = read_image([data_root / "raw" / DATASET / "imagesTr" / "case_001_0000.nii.gz"])
    renamed_seg, _ = Predictor(model, settings=FAST).predict_array(image, geometry)
    original = Predictor.from_model_folder(results / "3d_cascade_fullres", (0, 1), settings=FAST)
    expected, _ = original.predict_array(image, geometry)
    assert np.array_equal(renamed_seg, expected)


def test_cascade_needs_the_sibling_of_the_same_recipe(data_root: Path, tmp_path: Path) -> None:
    results = data_root / "results" / DATASET
    renamed = tmp_path / DATASET
    shutil.copytree(results / "3d_lowres", renamed / "3d_lowres")  # the default recipe's: not the sibling
    folder = _renamed_copy(results / "3d_cascade_fullres", renamed / "3d_cascade_fullres__long__plans",
                           drop_metadata=False)
    with pytest.raises(CheckpointError) as caught:
        load_model_folder(folder, (0,))
    assert caught.value.path == renamed / "3d_lowres__long__plans"


def test_networks_are_plain_patch_callables(data_root: Path) -> None:
    folder = data_root / "results" / DATASET / "3d_fullres"
    model = load_model_folder(folder, (0, 1))
    # Plain functions (as an ONNX Runtime session would be wrapped) stand in for the torch modules.
    wrapped = tuple((lambda patches, network=network: network(patches)) for network in model.networks)
    image, geometry = read_image([data_root / "raw" / DATASET / "imagesTr" / "case_000_0000.nii.gz"])
    expected, _ = Predictor(model, settings=FAST).predict_array(image, geometry)
    seg, _ = Predictor(replace(model, networks=wrapped), settings=FAST).predict_array(image, geometry)
    assert np.array_equal(seg, expected)
