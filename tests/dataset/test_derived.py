"""Line boundaries in dataset.json, derived line tasks and fused labels (computed from the dataset's maps)."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autounet.dataset.derived import (
    DerivedLine,
    FusedLine,
    LabelDerivation,
    boundary_mask,
    derive_description,
    derive_label_maps,
    output_tasks,
    split_fused,
)
from autounet.dataset.description import LineBoundary, parse_dataset_json
from autounet.errors import DatasetError
from autounet.io.serialization import from_dict, to_dict
from autounet.networks.spec import UNetSpec
from autounet.planning.plans import ConfigurationPlan, label_data_identifier
from autounet.postprocessing.lines import boundary_between

TASKS = {"zones": {"labels": {"background": 0, "rock": 1, "glacier": 2, "ocean": 3}, "kind": "area"},
         "front": {"labels": {"background": 0, "front": 1}, "kind": "line",
                   "boundary": {"task": "zones", "inside": ["glacier"], "outside": ["ocean"]}}}

# Rock | glacier | ocean in columns; the front is the glacier column next to the ocean.
ZONES = np.array([[1, 1, 2, 2, 3],
                  [1, 1, 2, 2, 3],
                  [0, 1, 2, 2, 3]], dtype=np.uint8)
FRONT = np.array([[0, 0, 0, 1, 0],
                  [0, 0, 0, 1, 0],
                  [0, 0, 0, 1, 0]], dtype=np.uint8)
GLACIER_ROCK = LineBoundary("zones", ("glacier",), ("rock", "background"))


def _description(tasks: dict[str, Any] | None = None):
    data = {"channel_names": {"0": "SAR"}, "tasks": copy.deepcopy(tasks or TASKS), "numTraining": 1,
            "file_ending": ".mha"}
    return parse_dataset_json(data, Path("dataset.json"))


def test_boundary_is_parsed_and_written_back() -> None:
    description = _description()
    front = description.tasks[1]
    assert front.boundary == LineBoundary("zones", ("glacier",), ("ocean",))
    assert front.boundary.values(description.tasks[0]) == ((2,), (3,))
    assert description.to_json_dict()["tasks"] == TASKS
    assert description.tasks[0].boundary is None and "boundary" not in description.tasks[0].to_json_dict()


@pytest.mark.parametrize(("boundary", "message"), [
    ({"task": "nothing", "inside": ["glacier"], "outside": ["ocean"]}, "not an area task"),
    ({"task": "front", "inside": ["front"], "outside": ["background"]}, "not an area task"),
    ({"task": "zones", "inside": ["ice"], "outside": ["ocean"]}, "label 'ice'"),
    ({"task": "zones", "inside": ["glacier"], "outside": ["glacier", "ocean"]}, "both inside and outside"),
    ({"task": "zones", "inside": [], "outside": ["ocean"]}, "non-empty list"),
    ({"task": "zones", "inside": ["glacier"]}, "must be"),
])
def test_bad_boundaries_are_one_line_errors(boundary: dict[str, Any], message: str) -> None:
    tasks = copy.deepcopy(TASKS)
    tasks["front"]["boundary"] = boundary
    with pytest.raises(DatasetError, match=message):
        _description(tasks)


def test_only_line_tasks_have_a_boundary() -> None:
    tasks = copy.deepcopy(TASKS)
    tasks["zones"]["boundary"] = tasks["front"]["boundary"]
    with pytest.raises(DatasetError, match="only line tasks"):
        _description(tasks)


def test_boundary_mask_is_inside_voxels_sharing_a_face_with_outside() -> None:
    np.testing.assert_array_equal(boundary_mask(ZONES, (2,), (3,)), FRONT.astype(bool))
    glacier_rock = boundary_mask(ZONES, (2,), (1, 0))
    np.testing.assert_array_equal(glacier_rock, np.array([[0, 0, 1, 0, 0]] * 3, dtype=bool))
    np.testing.assert_array_equal(boundary_between(ZONES, [2], (1, 0)), glacier_rock)
    assert not boundary_mask(ZONES, (2,), (4,)).any()


def test_derived_line_is_added_and_computed() -> None:
    description = _description()
    derivation = LabelDerivation(derived_lines=(DerivedLine("glacier_rock", GLACIER_ROCK),))
    derived = derive_description(description, derivation)
    assert [(t.name, t.kind) for t in derived.tasks] == [("zones", "area"), ("front", "line"),
                                                         ("glacier_rock", "line")]
    assert derived.tasks[2].boundary == GLACIER_ROCK and derived.tasks[2].foreground_labels == (1,)
    maps = derive_label_maps(np.stack([ZONES, FRONT]), description, derivation)
    assert maps.shape == (3, 3, 5) and maps.dtype == np.uint8
    np.testing.assert_array_equal(maps[:2], np.stack([ZONES, FRONT]))
    np.testing.assert_array_equal(maps[2], [[0, 0, 1, 0, 0]] * 3)
    assert [t.name for t in output_tasks(description, derivation)] == ["zones", "front", "glacier_rock"]


def test_a_single_map_dataset_gets_a_derived_line_too() -> None:
    data = {"channel_names": {"0": "SAR"}, "labels": TASKS["zones"]["labels"], "numTraining": 1,
            "file_ending": ".mha"}
    description = parse_dataset_json(data, Path("dataset.json"))
    derivation = LabelDerivation(derived_lines=(DerivedLine("glacier_rock", replace(GLACIER_ROCK, task="labels")),))
    derived = derive_description(description, derivation)
    assert [t.name for t in derived.tasks] == ["labels", "glacier_rock"]
    maps = derive_label_maps(ZONES, description, derivation)
    np.testing.assert_array_equal(maps[0], ZONES)
    np.testing.assert_array_equal(maps[1], [[0, 0, 1, 0, 0]] * 3)


def test_fused_line_becomes_the_next_zone_class_and_splits_back() -> None:
    description = _description()
    derivation = LabelDerivation(fused_lines=(FusedLine("front", "zones", restore="glacier"),))
    derived = derive_description(description, derivation)
    (zones,) = derived.tasks
    assert zones.labels == {"background": 0, "rock": 1, "glacier": 2, "ocean": 3, "front": 4}
    fused = derive_label_maps(np.stack([ZONES, FRONT]), description, derivation)
    np.testing.assert_array_equal(fused, np.where(FRONT > 0, 4, ZONES))
    split = split_fused({"zones": fused}, description, derivation)
    assert list(split) == ["zones", "front"]
    np.testing.assert_array_equal(split["zones"], ZONES)
    np.testing.assert_array_equal(split["front"], FRONT)


def test_fused_line_is_widened_before_painting() -> None:
    description = _description()
    derivation = LabelDerivation(fused_lines=(FusedLine("front", "zones", restore="glacier", width=3),))
    fused = derive_label_maps(np.stack([ZONES, FRONT]), description, derivation)
    np.testing.assert_array_equal(fused, [[1, 1, 4, 4, 4], [1, 1, 4, 4, 4], [0, 1, 4, 4, 4]])


@pytest.mark.parametrize(("derivation", "message"), [
    (LabelDerivation(derived_lines=(DerivedLine("zones", GLACIER_ROCK),)), "already has a task"),
    (LabelDerivation(derived_lines=(DerivedLine("x", replace(GLACIER_ROCK, inside=("ice",))),)), "label 'ice'"),
    (LabelDerivation(fused_lines=(FusedLine("zones", "zones", "glacier"),)), "not a line task"),
    (LabelDerivation(fused_lines=(FusedLine("front", "front", "front"),)), "not an area task"),
    (LabelDerivation(fused_lines=(FusedLine("front", "zones", "ice"),)), "'restore' names 'ice'"),
])
def test_derivations_that_do_not_fit_are_refused(derivation: LabelDerivation, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        derive_description(_description(), derivation)


def test_no_derivation_changes_nothing() -> None:
    description = _description()
    maps = np.stack([ZONES, FRONT])
    assert derive_description(description, None) is description
    assert derive_description(description, LabelDerivation()) is description
    assert derive_label_maps(maps, description, None) is maps


def test_the_derivation_is_plan_data_with_its_own_data_folder() -> None:
    derivation = LabelDerivation(derived_lines=(DerivedLine("glacier_rock", GLACIER_ROCK),),
                                 fused_lines=(FusedLine("front", "zones", "glacier", 5),))
    network = UNetSpec(ndim=2, encoder="plain", features_per_stage=(4, 8), kernel_sizes=((3, 3), (3, 3)),
                       strides=((1, 1), (2, 2)), blocks_per_stage=(2, 2), convs_per_decoder_stage=(2,))
    plain = ConfigurationPlan(name="2d", ndim=2, spacing=(1.0, 1.0), median_shape=(8, 8), patch_size=(8, 8),
                              batch_size=2, network=network, normalization=())
    assert "label_derivation" not in to_dict(plain)  # plans without it are written as before
    assert label_data_identifier("2d_abc", plain) == "2d_abc"
    derived = replace(plain, label_derivation=derivation)
    assert from_dict(ConfigurationPlan, to_dict(derived)) == derived
    identifier = label_data_identifier("2d_abc", derived)
    assert identifier.startswith("2d_abc_labels") and identifier != label_data_identifier(
        "2d_abc", replace(plain, label_derivation=LabelDerivation(fused_lines=derivation.fused_lines)))
