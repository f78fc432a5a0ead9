"""Model folders with random (untrained) weights for inference tests: built in a second, not trained.

The plans come from planning :func:`tests.conftest.write_tiny_dataset` through the real API; a cascade adds
``3d_lowres`` (twice the spacing) and ``3d_cascade_fullres`` as the planner would.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import torch

from autounet.io.checkpoints import save_checkpoint
from autounet.networks.unet import build_network
from autounet.planning.api import plan_dataset
from autounet.planning.plans import Plans, data_identifier, save_plans
from tests.conftest import write_tiny_dataset

DATASET = "Dataset999_Tiny"
NUM_CLASSES = 3  # background, organ, corner (write_tiny_dataset's labels)


def cascade_plans(plans: Plans) -> Plans:
    """``plans`` plus a ``3d_lowres`` stage at twice the full-resolution spacing and its cascade."""
    fullres = plans.configuration("3d_fullres")
    lowres = replace(fullres, name="3d_lowres", spacing=tuple(2 * s for s in fullres.spacing),
                     next_stage="3d_cascade_fullres")
    lowres = replace(lowres, data_identifier=data_identifier(lowres, plans.axis_order))
    cascade = replace(fullres, name="3d_cascade_fullres", previous_stage="3d_lowres")
    return replace(plans, configurations={**plans.configurations, "3d_lowres": lowres,
                                          "3d_cascade_fullres": cascade})


def write_model_folder(results: Path, plans: Plans, raw_dataset: Path, configuration: str, in_channels: int,
                       folds: tuple[int, ...] = (0,), seed: int = 0) -> Path:
    """``results/<Dataset>/<configuration>/`` with plans, dataset.json and one random checkpoint per fold."""
    folder = results / DATASET / configuration
    folder.mkdir(parents=True, exist_ok=True)
    save_plans(folder / "plans.json", plans)
    shutil.copy(raw_dataset / "dataset.json", folder / "dataset.json")
    for fold in folds:
        torch.manual_seed(seed + fold)
        network = build_network(plans.configuration(configuration).network, in_channels, NUM_CLASSES,
                                deep_supervision=True)
        save_checkpoint(folder / f"fold_{fold}" / "checkpoint_final.pt",
                        {"network": network.state_dict(),
                         "metadata": {"configuration": configuration, "mirror_axes": [1, 2]}})
    return folder


def write_random_models(root: Path) -> Path:
    """A data root with ``raw/Dataset999_Tiny`` (1 channel, 8x20x20) and random models for ``3d_fullres``,
    ``3d_lowres`` and ``3d_cascade_fullres`` (folds 0 and 1) under ``results/``. Returns the data root."""
    raw = write_tiny_dataset(root / "raw", num_cases=3, num_channels=1, shape=(8, 20, 20))
    plans, _ = plan_dataset(raw, root / "preprocessed", num_processes=1)
    plans = cascade_plans(plans)
    labels = json.loads((raw / "dataset.json").read_text())["labels"]
    num_foreground = len([v for v in labels.values() if v != 0])
    write_model_folder(root / "results", plans, raw, "3d_fullres", 1, folds=(0, 1))
    write_model_folder(root / "results", plans, raw, "3d_lowres", 1, folds=(0, 1), seed=10)
    write_model_folder(root / "results", plans, raw, "3d_cascade_fullres", 1 + num_foreground, folds=(0, 1), seed=20)
    return root
