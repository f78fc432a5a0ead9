"""Cascade training: the low-resolution stage's cross-validation predictions become one-hot inputs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from autounet.cli.main import main
from autounet.inference.cascade import previous_stage_one_hot, segmentation_for_next_stage
from autounet.io.checkpoints import load_checkpoint
from autounet.planning.plans import data_identifier, load_plans, save_plans
from autounet.preprocessing.storage import load_case
from tests.conftest import write_tiny_dataset

DATASET = "Dataset999_Tiny"


def _train(root: Path, configuration: str, fold: int | str) -> int:
    return main(["train", "-d", "999", "-c", configuration, "-f", str(fold), "--epochs", "1",
                 "--iterations-per-epoch", "1", "--validation-iterations", "1", "--num-workers", "0", "-q",
                 "--data-root", str(root)])


@pytest.fixture(scope="module")
def cascade_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny dataset planned with a low-resolution stage and a cascade, split into two folds."""
    root = tmp_path_factory.mktemp("cascade")
    write_tiny_dataset(root / "raw", num_cases=4, num_channels=1, shape=(8, 20, 20))
    assert main(["plan-and-preprocess", "-d", "999", "-np", "1", "--data-root", str(root), "-q"]) == 0
    preprocessed = root / "preprocessed" / DATASET
    plans = load_plans(preprocessed / "plans.json")
    fullres = plans.configuration("3d_fullres")
    lowres = replace(fullres, name="3d_lowres", spacing=tuple(2 * s for s in fullres.spacing),
                     next_stage="3d_cascade_fullres")
    lowres = replace(lowres, data_identifier=data_identifier(lowres, plans.axis_order))
    cascade = replace(fullres, name="3d_cascade_fullres", previous_stage="3d_lowres")
    plans = replace(plans, configurations={**plans.configurations, "3d_lowres": lowres,
                                           "3d_cascade_fullres": cascade})
    save_plans(preprocessed / "plans.json", plans)
    assert main(["preprocess", "-d", "999", "-np", "1", "-c", "3d_lowres", "--data-root", str(root), "-q"]) == 0
    cases = sorted(p.name.removesuffix(".nii.gz") for p in (root / "raw" / DATASET / "labelsTr").iterdir())
    splits = [{"train": cases[2:], "val": cases[:2]}, {"train": cases[:2], "val": cases[2:]}]
    (preprocessed / "splits.json").write_text(json.dumps(splits))
    return root


def test_cascade_without_lowres_predictions_is_a_clear_error(cascade_root: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    assert _train(cascade_root, "3d_cascade_fullres", 0) == 1
    error = capsys.readouterr().err
    assert "3d_lowres" in error and "cross-validation predictions" in error and "predicted_next_stage" in error


def test_lowres_folds_then_cascade_trains_on_one_hot_inputs(cascade_root: Path) -> None:
    for fold in (0, 1):
        assert _train(cascade_root, "3d_lowres", fold) == 0
    next_stage = cascade_root / "results" / DATASET / "3d_lowres" / "predicted_next_stage" / "3d_cascade_fullres"
    plans = load_plans(cascade_root / "preprocessed" / DATASET / "plans.json")
    fullres_data = cascade_root / "preprocessed" / DATASET / plans.configuration("3d_fullres").data_identifier
    for path in sorted(next_stage.glob("*.npy")):
        data, _, _ = load_case(fullres_data, path.stem)
        assert np.load(path).shape == data.shape[1:]  # in the full-resolution grid
    assert len(list(next_stage.glob("*.npy"))) == 4

    assert _train(cascade_root, "3d_cascade_fullres", 0) == 0
    fold = cascade_root / "results" / DATASET / "3d_cascade_fullres" / "fold_0"
    weights = load_checkpoint(fold / "checkpoint_final.pt")["network"]
    first_conv = next(value for key, value in weights.items() if key.endswith("weight") and value.ndim == 5)
    assert first_conv.shape[1] == 1 + 2  # one image channel + one-hot of labels 1 and 2
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert len(summary["per_case"]) == 2


def test_one_hot_and_next_stage_resampling(cascade_root: Path) -> None:
    seg = torch.tensor([[0, 1], [2, -1]])
    one_hot = previous_stage_one_hot(seg, (1, 2))
    assert one_hot.shape == (2, 2, 2) and one_hot.dtype == torch.float32
    assert one_hot[0].tolist() == [[0, 1], [0, 0]] and one_hot[1].tolist() == [[0, 0], [1, 0]]
    batched = previous_stage_one_hot(seg[None].expand(3, -1, -1), (1, 2), channel_axis=1)
    assert batched.shape == (3, 2, 2, 2) and torch.equal(batched[1], one_hot)

    plans_config = load_plans(cascade_root / "preprocessed" / DATASET / "plans.json").configuration("3d_lowres")
    logits = torch.zeros(3, 4, 4, 4)
    logits[2, :, :2] = 5.0  # class 2 in the first half of axis 1
    seg_next = segmentation_for_next_stage(logits, (8, 8, 8), plans_config)
    assert seg_next.shape == (8, 8, 8)
    assert set(np.unique(seg_next[:, :3])) == {2} and set(np.unique(seg_next[:, 5:])) == {0}
