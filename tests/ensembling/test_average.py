"""Ensembling arithmetic on tiny arrays, and the folder-level ensemble."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autounet.dataset.description import parse_dataset_json
from autounet.ensembling import average_probabilities, ensemble_folders, probabilities_to_segmentation
from autounet.errors import ImageIOError
from autounet.inference.original_geometry import save_probabilities
from autounet.io import read_segmentation
from autounet.postprocessing import PostprocessingPlan
from tests.ensembling import fake_results


def test_mean_of_probabilities(tmp_path: Path) -> None:
    a = np.array([[[0.2, 0.6]], [[0.8, 0.4]]], dtype=np.float32)  # (K=2, 1, 2)
    b = np.array([[[0.6, 0.0]], [[0.4, 1.0]]], dtype=np.float32)
    save_probabilities(tmp_path / "a.npz", a)
    save_probabilities(tmp_path / "b.npz", b)
    mean = average_probabilities([tmp_path / "a.npz", tmp_path / "b.npz"])
    assert mean.dtype == np.float32
    np.testing.assert_allclose(mean, [[[0.4, 0.3]], [[0.6, 0.7]]], atol=1e-7)


def test_argmax_and_regions() -> None:
    probs = np.array([[[0.5, 0.2, 0.1]], [[0.5, 0.3, 0.1]], [[0.0, 0.5, 0.8]]], dtype=np.float32)
    assert probabilities_to_segmentation(probs).tolist() == [[0, 2, 2]]  # ties: first channel
    regions = np.array([[[0.6, 0.9, 0.4]], [[0.2, 0.7, 0.9]]], dtype=np.float32)
    # Region 0 painted as 1, then region 1 (nested) as 2 on top; 0.5 exactly is off.
    assert probabilities_to_segmentation(regions, (1, 2)).tolist() == [[1, 2, 2]]
    assert probabilities_to_segmentation(np.full((1, 1, 2), 0.5, np.float32), (1,)).tolist() == [[0, 0]]


def test_shape_mismatch_and_bad_npz(tmp_path: Path) -> None:
    save_probabilities(tmp_path / "a.npz", np.zeros((2, 2, 2), np.float32))
    save_probabilities(tmp_path / "b.npz", np.zeros((2, 3, 2), np.float32))
    with pytest.raises(ImageIOError, match="differ"):
        average_probabilities([tmp_path / "a.npz", tmp_path / "b.npz"])
    np.savez(tmp_path / "c.npz", logits=np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ImageIOError, match="no 'probabilities'"):
        average_probabilities([tmp_path / "c.npz"])
    (tmp_path / "d.npz").write_text("not a zip")
    with pytest.raises(ImageIOError, match="cannot read"):
        average_probabilities([tmp_path / "d.npz"])


def _two_folders(tmp_path: Path) -> tuple[Path, Path]:
    fp = fake_results.write_configuration(tmp_path, "cfg_fp", folds=(0,)) / "fold_0" / "validation"
    miss = fake_results.write_configuration(tmp_path, "cfg_miss", folds=(0,)) / "fold_0" / "validation"
    return fp, miss


def test_ensemble_folders_is_exact_and_resumable(tmp_path: Path) -> None:
    fp, miss = _two_folders(tmp_path)
    description = parse_dataset_json(fake_results.DATASET_JSON, tmp_path / "dataset.json")
    out = tmp_path / "out"
    outputs = ensemble_folders([fp, miss], out, description, save_mean_probabilities=True, show_progress=False)
    assert [p.name for p in outputs] == ["case_0.nii.gz", "case_1.nii.gz"]
    seg, geometry = read_segmentation(outputs[0])
    assert np.array_equal(seg, fake_results.reference())
    assert geometry.spacing == fake_results.GEOMETRY.spacing and geometry.origin == fake_results.GEOMETRY.origin
    assert (out / "case_0.npz").is_file()
    before = outputs[0].stat().st_mtime_ns
    ensemble_folders([fp, miss], out, description, PostprocessingPlan(largest_component_foreground=True),
                     show_progress=False)
    assert outputs[0].stat().st_mtime_ns == before  # finished cases are skipped


def test_missing_case_is_named(tmp_path: Path) -> None:
    fp, miss = _two_folders(tmp_path)
    (miss / "case_1.npz").unlink()
    description = parse_dataset_json(fake_results.DATASET_JSON, tmp_path / "dataset.json")
    with pytest.raises(ImageIOError, match="case 'case_1'") as info:
        ensemble_folders([fp, miss], tmp_path / "out", description, show_progress=False)
    assert str(miss) in str(info.value)
