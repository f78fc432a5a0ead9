"""Case properties JSON: round trip, compact class locations, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autounet.errors import ConfigError
from autounet.io import ImageGeometry
from autounet.preprocessing import CaseProperties, load_case_properties, save_case_properties


def _properties(locations: dict[int, tuple[tuple[int, ...], ...]]) -> CaseProperties:
    return CaseProperties(
        schema_version=1, case_id="case_007", original_geometry=ImageGeometry.default(3, (3.0, 1.0, 1.0)),
        shape_before_crop=(10, 20, 30), bbox_used_for_cropping=((0, 10), (2, 18), (1, 30)),
        shape_after_crop=(10, 16, 29), spacing_after_resampling=(1.5, 1.0, 1.0),
        shape_after_resampling=(20, 16, 29), class_locations=locations)


@pytest.mark.parametrize("locations", [{}, {1: ((0, 1, 2), (19, 15, 28)), 2: (), 5: ((3, 3, 3),)}])
def test_round_trip(tmp_path: Path, locations: dict[int, tuple[tuple[int, ...], ...]]) -> None:
    path = tmp_path / "case_007.json"
    save_case_properties(path, _properties(locations))
    loaded = load_case_properties(path)
    assert loaded == _properties(locations)
    assert json.loads(path.read_text())["class_locations"] == {str(k): [list(c) for c in v]
                                                                for k, v in locations.items()}
    assert loaded.locations(1).shape == ((2, 3) if locations else (0, 3))


def test_locations_outside_the_array_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "case.json"
    save_case_properties(path, _properties({1: ((20, 0, 0),)}))
    with pytest.raises(ConfigError, match="class_locations.1"):
        load_case_properties(path)


def test_coordinates_beyond_int64_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "case.json"
    save_case_properties(path, _properties({}))
    data = json.loads(path.read_text())
    data["class_locations"] = {"1": [[10**30, 0, 0]]}
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="class_locations.1"):
        load_case_properties(path)


def test_unknown_field_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "case.json"
    save_case_properties(path, _properties({}))
    data = json.loads(path.read_text())
    data["extra"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="extra"):
        load_case_properties(path)
