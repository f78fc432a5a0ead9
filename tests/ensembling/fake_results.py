"""Fake cross-validation results written by hand (no training): label maps, probabilities, summary.json.

Reference of every case: a 3x3x3 cube of label 1. ``cfg_fp`` predicts it plus a false-positive voxel,
``cfg_miss`` misses one cube voxel; their mean probabilities give the reference exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from autounet.inference.original_geometry import save_probabilities
from autounet.io import ImageGeometry, write_segmentation

DATASET = "Dataset501_Fake"
SHAPE = (6, 6, 6)
CASES = {0: ("case_0", "case_1"), 1: ("case_2", "case_3")}
DATASET_JSON = {"channel_names": {"0": "MR"}, "labels": {"background": 0, "organ": 1}, "numTraining": 4,
                "file_ending": ".nii.gz"}
GEOMETRY = ImageGeometry(spacing=(2.0, 1.0, 1.5), origin=(1.0, 2.0, 3.0),
                         direction=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), world_frame="RAS")


def reference() -> np.ndarray:
    """The label map of every case."""
    seg = np.zeros(SHAPE, dtype=np.uint8)
    seg[1:4, 1:4, 1:4] = 1
    return seg


def probabilities(kind: str) -> np.ndarray:
    """Softmax probabilities (2, *SHAPE) of a fake configuration."""
    foreground = np.where(reference() == 1, 0.9, 0.1).astype(np.float32)
    if kind == "cfg_fp":
        foreground[5, 5, 5] = 0.6
    elif kind == "cfg_miss":
        foreground[1, 1, 1] = 0.45
        foreground[5, 5, 5] = 0.2
    return np.stack([1.0 - foreground, foreground]).astype(np.float32)


def write_configuration(results: Path, kind: str, folds: tuple[int, ...] = (0, 1), with_npz: bool = True) -> Path:
    """``results/<DATASET>/<kind>/`` with dataset.json and finished validation folders of ``folds``."""
    folder = results / DATASET / kind
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text(json.dumps(DATASET_JSON))
    probs = probabilities(kind)
    for fold in folds:
        validation = folder / f"fold_{fold}" / "validation"
        for case in CASES[fold]:
            if with_npz:
                save_probabilities(validation / f"{case}.npz", probs)
            write_segmentation(np.argmax(probs, axis=0).astype(np.uint8), GEOMETRY, validation / f"{case}.nii.gz")
        (validation / "summary.json").write_text("{}")
    return folder


def write_raw(root: Path) -> Path:
    """``raw/<DATASET>`` with dataset.json and labelsTr."""
    folder = root / "raw" / DATASET
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text(json.dumps(DATASET_JSON))
    for cases in CASES.values():
        for case in cases:
            write_segmentation(reference(), GEOMETRY, folder / "labelsTr" / f"{case}.nii.gz")
    return folder
