"""Writes the legacy model folders of ``test_legacy_models.py``: run once, on the code before the seams refactor.

The fixture is what a user of commit 6af046b has on disk: a results folder with checkpoints exactly as that
trainer wrote them (deep-supervision heads as ``decoder.heads.N``), an input image, and that code's predictions
of it (label map and probabilities). Later code must load these folders and predict bit-identically. Rerunning
this script on newer code would defeat the test; it is kept to show how the files were made::

    PYTHONPATH=. python tests/inference/legacy/make_fixture.py tests/inference/legacy
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tests.conftest import write_tiny_dataset

from autounet.inference import PredictionSettings, Predictor
from autounet.io.checkpoints import save_checkpoint
from autounet.networks.spec import UNetSpec
from autounet.networks.unet import build_network
from autounet.planning.api import plan_dataset
from autounet.planning.plans import save_plans

# name -> (spatial shape of the cases, configuration, encoder)
MODELS = {"plain3d": ((8, 20, 20), "3d_fullres", "plain"), "residual2d": ((20, 24), "2d", "residual")}


def _tiny(spec: UNetSpec, encoder: str) -> UNetSpec:
    # Few features keep each checkpoint a few kB; the topology (stages, strides, kernels) stays the planned one.
    return replace(spec, encoder=encoder, features_per_stage=tuple(min(4 * 2 ** i, 16) for i in range(spec.num_stages)))


def main(destination: Path) -> None:
    """Write ``destination/<name>/{model/,input/,expected/}`` for every entry of :data:`MODELS`."""
    for name, (shape, configuration, encoder) in MODELS.items():
        target = destination / name
        shutil.rmtree(target, ignore_errors=True)
        with tempfile.TemporaryDirectory() as scratch:
            spacing = (3.0, 1.0, 1.0) if len(shape) == 3 else (1.0, 1.0)
            raw = write_tiny_dataset(Path(scratch) / "raw", num_cases=2, num_channels=2, shape=shape,
                                     spacing=spacing, ending=".nii.gz" if len(shape) == 3 else ".tif")
            plans, _ = plan_dataset(raw, Path(scratch) / "preprocessed", num_processes=1)
            plan = plans.configuration(configuration)
            plan = replace(plan, network=_tiny(plan.network, encoder))
            plans = replace(plans, configurations={configuration: plan})
            model = target / "model" / configuration
            model.mkdir(parents=True)
            save_plans(model / "plans.json", plans)
            shutil.copyfile(raw / "dataset.json", model / "dataset.json")
            for fold in (0, 1):
                torch.manual_seed(fold)
                network = build_network(plan.network, 2, 3, deep_supervision=True)
                save_checkpoint(model / f"fold_{fold}" / "checkpoint_final.pt", {
                    "network": network.state_dict(), "epoch": 1,
                    "metadata": {"configuration": configuration, "mirror_axes": list(range(len(shape)))}})
            (target / "input").mkdir(parents=True)
            for image in sorted((raw / "imagesTr").glob("case_000_*")):
                shutil.copyfile(image, target / "input" / image.name)
        predictor = Predictor.from_model_folder(model, folds=(0, 1), settings=PredictionSettings(
            save_probabilities=True, show_progress=False))
        predictor.predict_folder(target / "input", target / "expected")
        for extra in ("dataset.json", "plans.json"):
            (target / "expected" / extra).unlink()
        probabilities = np.load(target / "expected" / "case_000.npz")["probabilities"]
        print(name, "probabilities", probabilities.shape, "labels", np.unique(probabilities.argmax(0)))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
