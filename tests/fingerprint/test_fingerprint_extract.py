"""Fingerprint extraction: values against hand computation, determinism, storage, reuse."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from autounet.dataset import load_raw_dataset
from autounet.errors import DatasetError
from autounet.fingerprint import (
    FINGERPRINT_FILENAME,
    ensure_fingerprint,
    extract_fingerprint,
    load_fingerprint,
    save_fingerprint,
)
from autounet.fingerprint.extract import locate_ranks, sample_foreground
from autounet.io import ImageGeometry, write_image, write_segmentation


def _write_case(folder: Path, case: str, image: np.ndarray, seg: np.ndarray, spacing: tuple[float, ...]) -> None:
    geometry = ImageGeometry.default(seg.ndim, spacing)
    for channel, data in enumerate(image):
        write_image(data.astype(np.float32), geometry, folder / "imagesTr" / f"{case}_{channel:04d}.nrrd")
    write_segmentation(seg, geometry, folder / "labelsTr" / f"{case}.nrrd")


def _write_description(folder: Path, channels: int, num_cases: int) -> None:
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {str(c): f"MR{c}" for c in range(channels)}, "labels": {"background": 0, "fg": 1},
        "numTraining": num_cases, "file_ending": ".nrrd"}))


@pytest.fixture
def constant_dataset(tmp_path: Path) -> Path:
    """Two 3D cases: zero outside a box, constant foreground (10/20 in channel 0, 1/3 in channel 1)."""
    folder = tmp_path / "Dataset001_Const"
    for index, (value, spacing) in enumerate([(10.0, (2.0, 1.0, 1.0)), (20.0, (4.0, 0.5, 0.5))]):
        image = np.zeros((2, 6, 8, 10), dtype=np.float32)
        image[:, 1:5, 2:7, 3:10] = 5.0  # the non-zero box: 4 x 5 x 7
        seg = np.zeros((6, 8, 10), dtype=np.uint8)
        seg[2:4, 3:5, 4:6] = 1
        image[0][seg == 1] = value
        image[1][seg == 1] = value / 10.0
        seg[0, 0, 0] = 1  # outside the box: cropped away, so never sampled
        _write_case(folder, f"case_{index:03d}", image, seg, spacing)
    _write_description(folder, channels=2, num_cases=2)
    return folder


def test_values_match_hand_computation(constant_dataset: Path) -> None:
    fingerprint = extract_fingerprint(load_raw_dataset(constant_dataset), samples_per_case=1000)
    assert fingerprint.ndim == 3
    assert fingerprint.case_ids == ("case_000", "case_001")
    assert fingerprint.spacings == ((2.0, 1.0, 1.0), (4.0, 0.5, 0.5))
    assert fingerprint.shapes_before_crop == ((6, 8, 10),) * 2
    assert fingerprint.shapes_after_crop == ((4, 5, 7),) * 2
    assert fingerprint.relative_sizes_after_crop == pytest.approx((140 / 480,) * 2)
    assert fingerprint.num_foreground_samples_per_case == 1000
    # 1000 samples of 10 and 1000 of 20: every statistic follows by hand.
    first = fingerprint.foreground_intensity[0]
    assert (first.mean, first.median, first.std, first.min, first.max) == pytest.approx((15, 15, 5, 10, 20))
    assert (first.percentile_00_5, first.percentile_99_5) == pytest.approx((10, 20))
    assert fingerprint.foreground_intensity[1].mean == pytest.approx(1.5)


def test_no_foreground_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "Dataset002_Empty"
    _write_case(folder, "case_000", np.ones((1, 4, 4, 4)), np.zeros((4, 4, 4), dtype=np.uint8), (1.0,) * 3)
    _write_description(folder, channels=1, num_cases=1)
    with pytest.raises(DatasetError, match="no foreground"):
        extract_fingerprint(load_raw_dataset(folder))


def test_same_result_for_any_number_of_processes(tiny_dataset: Callable[..., Path]) -> None:
    dataset = load_raw_dataset(tiny_dataset(num_cases=3))
    single = extract_fingerprint(dataset, num_processes=1, samples_per_case=500)
    assert extract_fingerprint(dataset, num_processes=2, samples_per_case=500) == single
    assert extract_fingerprint(dataset, num_processes=1, samples_per_case=500, seed=7) != single


def test_sample_foreground_draws_only_foreground_with_replacement() -> None:
    mask = np.zeros((5, 6, 7), dtype=bool)
    positions = [(0, 1, 2), (2, 5, 6), (4, 0, 0)]
    for position in positions:
        mask[position] = True
    indices = sample_foreground(mask, 300, np.random.default_rng(0))
    drawn = set(zip(*(i.tolist() for i in indices), strict=True))
    assert drawn == set(positions)  # 300 draws from 3 voxels hit each of them
    assert all(len(i) == 300 for i in indices)
    empty = sample_foreground(np.zeros((3, 3), dtype=bool), 10, np.random.default_rng(0))
    assert all(i.size == 0 for i in empty)


def test_locate_ranks_matches_flatnonzero() -> None:
    mask = np.random.default_rng(1).random((7, 9, 11)) > 0.7
    ranks = np.sort(np.random.default_rng(2).choice(int(mask.sum()), 50, replace=False))
    np.testing.assert_array_equal(locate_ranks(mask, ranks), np.flatnonzero(mask)[ranks])


def test_save_and_load_round_trip(constant_dataset: Path, tmp_path: Path) -> None:
    fingerprint = extract_fingerprint(load_raw_dataset(constant_dataset), samples_per_case=100)
    path = tmp_path / "out" / FINGERPRINT_FILENAME
    save_fingerprint(path, fingerprint)
    assert load_fingerprint(path) == fingerprint


def test_ensure_fingerprint_reuses_unless_overwrite(constant_dataset: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    dataset = load_raw_dataset(constant_dataset)
    output = tmp_path / "preprocessed" / dataset.name
    first = ensure_fingerprint(dataset, output, num_processes=1)
    path = output / FINGERPRINT_FILENAME
    data = json.loads(path.read_text())
    data["spacings"][0] = [9.0, 9.0, 9.0]  # a marker: reuse must return the file's content
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.INFO):
        reused = ensure_fingerprint(dataset, output, num_processes=1)
    assert reused.spacings[0] == (9.0, 9.0, 9.0)
    assert "reusing" in caplog.text
    assert ensure_fingerprint(dataset, output, num_processes=1, overwrite=True) == first


@pytest.mark.parametrize("bad", [0.0, -1.0, "NaN"])
def test_fingerprint_with_unusable_spacing_is_refused(tmp_path: Path, bad: object) -> None:
    import json

    from autounet.errors import ConfigError
    from autounet.fingerprint.extract import load_fingerprint

    nnunet = {"spacings": [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], "shapes_after_crop": [[8, 8, 8], [8, 8, 8]],
              "foreground_intensity_properties_per_channel": {"0": {
                  "max": 1.0, "mean": 0.5, "median": 0.5, "min": 0.0, "percentile_00_5": 0.0,
                  "percentile_99_5": 1.0, "std": 0.1}}, "median_relative_size_after_cropping": 1.0}
    text = json.dumps(nnunet).replace("[[1.0, 1.0, 1.0], [1.0", f"[[1.0, 1.0, 1.0], [{bad}", 1)
    path = tmp_path / "dataset_fingerprint.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"spacings\[1\]") as error:
        load_fingerprint(path)
    assert str(path) in str(error.value) and path.read_text() == text
