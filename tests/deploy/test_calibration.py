from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from autounet.dataset import load_raw_dataset
from autounet.deploy.calibration import draw_calibration_patches, draw_raw_calibration_patches, spread_cases
from autounet.errors import ConfigError, DatasetError


def _folder_and_cases(preprocessed_tiny: tuple, config: str) -> tuple:
    plans, folder = preprocessed_tiny
    data_folder = folder / plans.configuration(config).data_identifier
    return data_folder, sorted(p.stem for p in data_folder.glob("*.json"))


@pytest.mark.parametrize(("config", "patch"), [("3d_fullres", (4, 8, 8)), ("2d", (8, 8))])
def test_count_shapes_and_determinism(preprocessed_tiny: tuple, config: str, patch: tuple[int, ...]) -> None:
    folder, cases = _folder_and_cases(preprocessed_tiny, config)
    images, labels = draw_calibration_patches(folder, cases, patch, count=7, batch_size=3, seed=5)
    assert images.shape == (7, 1, *patch) and images.dtype == np.float32
    assert labels.shape == (7, *patch) and labels.dtype == np.int16
    again, _ = draw_calibration_patches(folder, cases, patch, count=7, batch_size=3, seed=5)
    other, _ = draw_calibration_patches(folder, cases, patch, count=7, batch_size=3, seed=6)
    np.testing.assert_array_equal(images, again)
    assert not np.array_equal(images, other)


def test_foreground_oversampling_as_in_training(preprocessed_tiny: tuple) -> None:
    folder, cases = _folder_and_cases(preprocessed_tiny, "3d_fullres")
    # batch 3 with oversampling 0.33: the third patch of every batch is centred on foreground
    _, labels = draw_calibration_patches(folder, cases, (2, 4, 4), count=60, batch_size=3, seed=0)
    forced = labels[2::3]
    assert all((patch > 0).any() for patch in forced)
    _, without = draw_calibration_patches(folder, cases, (2, 4, 4), count=60, batch_size=3,
                                          oversample_foreground=0.0, seed=0)
    share = np.mean([(patch > 0).any() for patch in labels])
    share_without = np.mean([(patch > 0).any() for patch in without])
    assert share > share_without


def test_bad_count_is_refused(preprocessed_tiny: tuple) -> None:
    folder, cases = _folder_and_cases(preprocessed_tiny, "3d_fullres")
    with pytest.raises(ConfigError, match="at least one patch"):
        draw_calibration_patches(folder, cases, (2, 4, 4), count=0)


def test_spread_cases_is_deterministic_and_spans_the_list() -> None:
    ids = [f"case_{i:02d}" for i in range(10)]
    assert spread_cases(ids[::-1], 4) == ("case_00", "case_02", "case_05", "case_07")
    assert spread_cases(ids, 16) == tuple(ids)
    with pytest.raises(ConfigError, match="at least 1"):
        spread_cases(ids, 0)


def test_raw_cases_are_preprocessed_as_preprocess_does_into_a_removed_folder(
        preprocessed_tiny: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plans, folder = preprocessed_tiny
    dataset = load_raw_dataset(folder.parents[1] / "raw" / folder.name)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    # max_cases 2 of 3 given: the first and the second (spread over the sorted ids).
    images, labels = draw_raw_calibration_patches(dataset, ["case_002", "case_000", "case_001"], plans, "2d",
                                                  count=5, max_cases=2, seed=3)
    assert list(tmp_path.iterdir()) == []
    configuration = plans.configuration("2d")
    expected = draw_calibration_patches(folder / configuration.data_identifier, ["case_000", "case_001"],
                                        tuple(configuration.patch_size), 5, batch_size=configuration.batch_size,
                                        seed=3)
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])


def test_raw_calibration_refuses_unknown_or_no_cases(preprocessed_tiny: tuple) -> None:
    plans, folder = preprocessed_tiny
    dataset = load_raw_dataset(folder.parents[1] / "raw" / folder.name)
    with pytest.raises(DatasetError, match="'case_999' is not in the dataset"):
        draw_raw_calibration_patches(dataset, ["case_999"], plans, "2d", count=2)
    with pytest.raises(DatasetError, match="no training cases"):
        draw_raw_calibration_patches(dataset, [], plans, "2d", count=2)
