"""Inputs that train also predict: RGB PNGs (three channels in one file) through train and predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autounet.cli.main import main
from autounet.dataset.raw import case_channel_files
from autounet.errors import DatasetError
from autounet.io import ImageGeometry, read_segmentation, write_segmentation

SHAPE = (32, 32)


def _write_case(folder: Path, case: str, rng: np.random.Generator) -> np.ndarray:
    seg = np.zeros(SHAPE, dtype=np.uint8)
    y, x = rng.integers(4, 20, size=2)
    seg[y:y + 8, x:x + 8] = 1
    rgb = rng.integers(0, 120, size=(*SHAPE, 3), dtype=np.uint8)
    rgb[seg == 1] += np.array([120, 40, 0], dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, mode="RGB").save(folder / f"{case}_0000.png")
    return seg


def test_rgb_png_dataset_trains_and_predicts(tmp_path: Path) -> None:
    raw = tmp_path / "raw" / "Dataset998_Rgb"
    rng = np.random.default_rng(0)
    for index in range(5):
        seg = _write_case(raw / "imagesTr", f"case_{index:03d}", rng)
        write_segmentation(seg, ImageGeometry.default(2, (1.0, 1.0)), raw / "labelsTr" / f"case_{index:03d}.png")
    _write_case(raw / "imagesTs", "test_000", rng)
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "blob": 1},
        "numTraining": 5, "file_ending": ".png"}))
    root = ["--data-root", str(tmp_path), "-q"]
    assert main(["plan-and-preprocess", "-d", "998", "-c", "2d", "-np", "1", *root]) == 0
    assert main(["train", "-d", "998", "-c", "2d", "-f", "0", "--epochs", "1", "--iterations-per-epoch", "1",
                 "--validation-iterations", "1", "--num-workers", "1", "--no-validation", *root]) == 0
    out = tmp_path / "predicted"
    assert main(["predict", "-i", str(raw / "imagesTs"), "-o", str(out), "-d", "998", "-c", "2d", "-f", "0",
                 "--disable-tta", *root]) == 0
    seg, _ = read_segmentation(out / "test_000.png")
    assert seg.shape == SHAPE and set(np.unique(seg).tolist()) <= {0, 1}


def test_channel_files_follow_one_rule() -> None:
    files = {c: Path(f"case_{c:04d}.png") for c in (0, 1, 2)}
    assert case_channel_files({0: files[0]}, ".png", 3) == [files[0]]  # one RGB file
    assert case_channel_files(files, ".png", 3) == [files[0], files[1], files[2]]  # one file per channel
    with pytest.raises(DatasetError, match="channel files 0000, 0002"):
        case_channel_files({0: files[0], 2: files[2]}, ".png", 3)
    with pytest.raises(DatasetError, match="expects 2 channel"):
        case_channel_files({0: Path("case_0000.nii.gz")}, ".nii.gz", 2)
    with pytest.raises(DatasetError, match="expects 1 channel"):
        case_channel_files({0: files[0], 1: files[1]}, ".png", 1)
