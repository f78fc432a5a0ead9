"""Reading nnU-Net v2 dataset_fingerprint.json files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autounet.errors import ConfigError
from autounet.fingerprint import load_fingerprint

STATS = {"mean": 10.0, "median": 9.0, "std": 2.0, "min": 1.0, "max": 30.0, "percentile_00_5": 2.0,
         "percentile_99_5": 25.0}


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "dataset_fingerprint.json"
    path.write_text(json.dumps(data))
    return path


def _nnunet_3d() -> dict[str, Any]:
    return {
        "spacings": [[3.0, 0.8, 0.8], [2.5, 0.7, 0.7]],
        "shapes_after_crop": [[40, 200, 210], [50, 190, 180]],
        "foreground_intensity_properties_per_channel": {"0": STATS, "1": {**STATS, "mean": 20.0}},
        "median_relative_size_after_cropping": 0.6,
    }


def test_3d_file_is_converted(tmp_path: Path) -> None:
    fingerprint = load_fingerprint(_write(tmp_path, _nnunet_3d()))
    assert fingerprint.ndim == 3
    assert fingerprint.case_ids == ("case_000", "case_001")
    assert fingerprint.spacings == ((3.0, 0.8, 0.8), (2.5, 0.7, 0.7))
    assert fingerprint.shapes_before_crop == fingerprint.shapes_after_crop == ((40, 200, 210), (50, 190, 180))
    assert fingerprint.relative_sizes_after_crop == (0.6, 0.6)
    assert fingerprint.num_channels == 2
    assert fingerprint.foreground_intensity[1].mean == 20.0
    assert fingerprint.foreground_intensity[0].percentile_99_5 == 25.0


def test_2d_sentinel_is_dropped(tmp_path: Path) -> None:
    data = {"spacings": [[999.0, 0.5, 0.6], [999.0, 0.5, 0.5]], "shapes_after_crop": [[1, 512, 400], [1, 500, 500]],
            "foreground_intensity_properties_per_channel": {"0": STATS},
            "median_relative_size_after_cropping": 1.0}
    fingerprint = load_fingerprint(_write(tmp_path, data))
    assert fingerprint.ndim == 2
    assert fingerprint.spacings == ((0.5, 0.6), (0.5, 0.5))
    assert fingerprint.shapes_after_crop == ((512, 400), (500, 500))


def _drop_stats_key(data: dict[str, Any]) -> None:
    del data["foreground_intensity_properties_per_channel"]["0"]["std"]


def _mixed_sentinel(data: dict[str, Any]) -> None:
    data["spacings"][0] = [999.0, 0.8, 0.8]
    data["shapes_after_crop"][0] = [1, 200, 210]


def _string_spacing(data: dict[str, Any]) -> None:
    data["spacings"][1] = ["a", 1, 1]


def _missing_shapes(data: dict[str, Any]) -> None:
    del data["shapes_after_crop"]


def _uneven_lists(data: dict[str, Any]) -> None:
    data["shapes_after_crop"].pop()


@pytest.mark.parametrize(("breaker", "text"), [
    (_drop_stats_key, "lacks std"),
    (_mixed_sentinel, "2D marker"),
    (_string_spacing, "spacings[1]"),
    (_missing_shapes, "shapes_after_crop"),
    (_uneven_lists, "one entry per case"),
])
def test_malformed_file_names_file_and_problem(tmp_path: Path, breaker: Any, text: str) -> None:
    data = _nnunet_3d()
    breaker(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError, match="dataset_fingerprint.json") as info:
        load_fingerprint(path)
    assert text in str(info.value)


def test_neither_format_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="schema_version"):
        load_fingerprint(_write(tmp_path, {"something": 1}))
    with pytest.raises(ConfigError):
        load_fingerprint(_write(tmp_path, [1, 2]))
