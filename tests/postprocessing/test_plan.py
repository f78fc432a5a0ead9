"""Largest-component postprocessing: hand-made label maps with known answers; postprocessing.json round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autounet.errors import ConfigError
from autounet.postprocessing import (
    DecisionStep,
    PostprocessingPlan,
    apply_postprocessing,
    keep_largest_component,
    load_postprocessing,
    save_postprocessing,
)


def _two_blobs() -> np.ndarray:
    """Label 1: a 2x2x2 cube and a lone voxel far away; label 2: a 3x3x3 cube touching nothing."""
    seg = np.zeros((8, 8, 8), dtype=np.uint8)
    seg[0:2, 0:2, 0:2] = 1
    seg[7, 7, 7] = 1
    seg[4:7, 0:3, 4:7] = 2
    return seg


def test_keep_largest_component_of_one_label() -> None:
    seg = _two_blobs()
    out = keep_largest_component(seg, (1,))
    assert out[7, 7, 7] == 0 and np.count_nonzero(out == 1) == 8
    assert np.array_equal(out == 2, seg == 2)
    assert out.dtype == seg.dtype and seg[7, 7, 7] == 1  # input untouched


def test_full_connectivity_in_3d_and_2d() -> None:
    diagonal3 = np.zeros((3, 3, 3), dtype=np.uint8)
    diagonal3[0, 0, 0] = diagonal3[1, 1, 1] = 1  # corner neighbours: one component with 26-connectivity
    assert np.array_equal(keep_largest_component(diagonal3, (1,)), diagonal3)
    diagonal2 = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.uint8)
    assert np.array_equal(keep_largest_component(diagonal2, (1,)), diagonal2)
    apart = np.array([[1, 0, 1], [0, 0, 1], [0, 0, 0]], dtype=np.uint8)
    assert keep_largest_component(apart, (1,)).tolist() == [[0, 0, 1], [0, 0, 1], [0, 0, 0]]


def test_foreground_step_treats_labels_together() -> None:
    seg = np.zeros((6, 6), dtype=np.uint8)
    seg[0:2, 0:2] = 1
    seg[2, 2] = 2  # touches label 1 diagonally: same foreground component
    seg[5, 5] = 2  # isolated: removed
    out = apply_postprocessing(seg, PostprocessingPlan(largest_component_foreground=True))
    assert out[2, 2] == 2 and out[5, 5] == 0 and np.count_nonzero(out == 1) == 4


def test_region_plan_uses_value_sets() -> None:
    seg = np.zeros((5, 5), dtype=np.uint8)
    seg[0:2, 0:2] = 1
    seg[0:2, 2] = 2  # region {1, 2}: one component of 6 pixels
    seg[4, 4] = 2  # separate: removed for region {1, 2}
    out = apply_postprocessing(seg, PostprocessingPlan(largest_component_regions=((1, 2),)))
    assert out[4, 4] == 0 and np.count_nonzero(out) == 6


def test_empty_plan_and_empty_label_change_nothing() -> None:
    seg = _two_blobs()
    assert apply_postprocessing(seg, PostprocessingPlan()) is seg
    assert np.array_equal(apply_postprocessing(seg, PostprocessingPlan(largest_component_labels=(3,))), seg)


def test_round_trip(tmp_path: Path) -> None:
    plan = PostprocessingPlan(largest_component_foreground=True, largest_component_labels=(2,),
                              steps=(DecisionStep("foreground", 0.5, 0.75, True, {"1": 0.5}, {"1": None}),),
                              num_cases=3)
    save_postprocessing(tmp_path / "postprocessing.json", plan)
    assert load_postprocessing(tmp_path / "postprocessing.json") == plan
    assert json.loads((tmp_path / "postprocessing.json").read_text())["schema_version"] == 1


@pytest.mark.parametrize(("content", "message"), [
    ({"schema_version": 1, "largest_component_labelz": [1]}, "unknown key"),
    ({"schema_version": 1, "largest_component_labels": ["1"]}, "expected an integer"),
    ({"schema_version": 1, "largest_component_labels": [0]}, "foreground label"),
    ({"schema_version": 99}, "newer"),
])
def test_bad_files_give_typed_errors(tmp_path: Path, content: dict, message: str) -> None:
    path = tmp_path / "postprocessing.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError, match=message) as info:
        load_postprocessing(path)
    assert str(path) in str(info.value)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_postprocessing(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="folder"):
        load_postprocessing(tmp_path)
