from __future__ import annotations

import numpy as np
import pytest

from autounet.deploy.calibration import draw_calibration_patches
from autounet.errors import ConfigError


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
