"""Whole datasets: layout, loading, resumption after a kill with byte-identical results."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from autounet.dataset import load_raw_dataset
from autounet.errors import DatasetError
from autounet.planning.plans import Plans
from autounet.preprocessing import default_configurations, load_case, preprocess_dataset

from .conftest import make_configuration, make_plans


def _plans() -> Plans:
    fullres = make_configuration("3d_fullres", (2.0, 0.7, 0.9), channels=2)
    return make_plans([fullres, make_configuration("2d", (0.7, 0.9), channels=2),
                       make_configuration("3d_cascade_fullres", (2.0, 0.7, 0.9), channels=2,
                                          previous_stage="3d_lowres")])


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_default_configurations_skip_cascade_stages_sharing_data() -> None:
    assert default_configurations(_plans()) == ("3d_fullres", "2d")


def test_layout_and_patch_reading(tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    dataset = load_raw_dataset(tiny_dataset(num_cases=2))
    report = preprocess_dataset(dataset, _plans(), ["3d_fullres", "3d_cascade_fullres"], tmp_path / "pre", 1)
    folder = report.folders["3d_fullres"]
    assert report.folders["3d_cascade_fullres"] == folder  # same data identifier: processed once
    assert (report.done, report.skipped) == (2, 0)
    assert sorted(p.name for p in folder.iterdir()) == [
        "case_000.json", "case_000.npy", "case_000_seg.npy", "case_001.json", "case_001.npy", "case_001_seg.npy"]
    data, seg, props = load_case(folder, "case_001")
    assert isinstance(data, np.memmap) and data.dtype == np.float32 and seg.dtype == np.int8
    assert data.shape[1:] == seg.shape == props.shape_after_resampling
    patch = data[:, 1:5, 2:9, 3:7]
    full, _, _ = load_case(folder, "case_001", mmap=False)
    np.testing.assert_array_equal(patch, full[:, 1:5, 2:9, 3:7])
    assert set(props.class_locations) == {1, 2}
    with pytest.raises(DatasetError, match="not preprocessed"):
        load_case(folder, "case_999")


def test_resumed_run_is_byte_identical(tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    dataset = load_raw_dataset(tiny_dataset(num_cases=3))
    plans = _plans()
    reference = preprocess_dataset(dataset, plans, ["3d_fullres", "2d"], tmp_path / "a", 1)
    interrupted = tmp_path / "b"
    preprocess_dataset(dataset, plans, ["3d_fullres", "2d"], interrupted, 1)
    # Simulate a kill during case_001: no marker, a corrupt array, a stale temporary file.
    folder = interrupted / reference.folders["3d_fullres"].name
    (folder / "case_001.json").unlink()
    (folder / "case_001.npy").write_bytes(b"garbage")
    (folder / ".case_001_seg.npy.0123456789ab.tmp").write_bytes(b"half")
    report = preprocess_dataset(dataset, plans, ["3d_fullres", "2d"], interrupted, 2)
    assert (report.done, report.skipped) == (1, 5)
    assert _contents(interrupted) == _contents(tmp_path / "a")


def test_unreadable_case_is_reported(tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = tiny_dataset(num_cases=2)
    dataset = load_raw_dataset(root)
    shutil.copyfile(root / "dataset.json", root / "imagesTr" / "case_001_0000.nii.gz")
    with pytest.raises(DatasetError, match="case_001_0000"):
        preprocess_dataset(dataset, _plans(), ["2d"], tmp_path / "pre", 1)
