"""Models written before the seams refactor still load and predict bit-identically.

The folders under ``legacy/`` were written by the code of commit 6af046b (``legacy/make_fixture.py``): plans,
checkpoints with that code's key names, an input case and that code's prediction of it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from autounet.inference import PredictionSettings, Predictor
from autounet.io.images import read_image

LEGACY = Path(__file__).parent / "legacy"
CASES = {"plain3d": "3d_fullres", "residual2d": "2d"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_legacy_model_predicts_bit_identically(name: str, tmp_path: Path) -> None:
    folder = LEGACY / name
    model = tmp_path / "model"
    shutil.copytree(folder / "model" / CASES[name], model)  # copied: loading must not need to write
    predictor = Predictor.from_model_folder(model, folds=(0, 1), settings=PredictionSettings(
        save_probabilities=True, show_progress=False))
    outputs = predictor.predict_folder(folder / "input", tmp_path / "out")
    assert len(outputs) == 1
    expected_seg, expected_geometry = read_image([_expected_label_map(folder)])
    seg, geometry = read_image([outputs[0]])
    np.testing.assert_array_equal(seg, expected_seg)
    assert geometry == expected_geometry
    expected = np.load(folder / "expected" / "case_000.npz")["probabilities"]
    actual = np.load(tmp_path / "out" / "case_000.npz")["probabilities"]
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual, expected)


def _expected_label_map(folder: Path) -> Path:
    return next(p for p in (folder / "expected").iterdir() if p.name.startswith("case_000.") and p.suffix != ".npz")
