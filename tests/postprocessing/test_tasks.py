"""Postprocessing decided and stored per task for models of several label maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autounet.dataset.description import LabelTask
from autounet.errors import ConfigError, DatasetError
from autounet.io import ImageGeometry, write_segmentation
from autounet.postprocessing import (
    PostprocessingPlan,
    TaskPostprocessing,
    determine_task_postprocessing,
    load_any_postprocessing,
    save_postprocessing,
    save_task_postprocessing,
)

ZONES = LabelTask("zones", {"background": 0, "rock": 1, "glacier": 2}, "area")
FRONT = LabelTask("front", {"background": 0, "front": 1}, "line")


def _pair(tmp_path: Path, task: str, reference: np.ndarray, prediction: np.ndarray) -> tuple[Path, Path]:
    files = []
    for folder, array in (("ref", reference), ("pred", prediction)):
        path = tmp_path / folder / task / "case.mha"
        write_segmentation(array.astype(np.uint8), ImageGeometry.default(2), path)
        files.append(path)
    return files[0], files[1]


def test_each_area_task_gets_its_own_decision_and_line_tasks_none(tmp_path: Path) -> None:
    reference = np.zeros((12, 12), np.uint8)
    reference[1:5, 1:5] = 1
    reference[6:11, 6:11] = 2
    prediction = reference.copy()
    prediction[0, 11] = 2  # a stray glacier pixel far from the glacier
    pairs = {"zones": [_pair(tmp_path, "zones", reference, prediction)]}
    plan = determine_task_postprocessing(pairs, (ZONES, FRONT))
    assert set(plan.tasks) == {"zones"}
    zones = plan.for_task("zones")
    # Rock and glacier do not touch: keeping the largest foreground component would drop the rock.
    assert zones is not None and not zones.largest_component_foreground
    assert zones.largest_component_labels == (2,)
    assert plan.for_task("front") is None


def test_an_area_task_without_predictions_is_refused() -> None:
    with pytest.raises(DatasetError, match="no cross-validation predictions"):
        determine_task_postprocessing({}, (ZONES,))


def test_both_layouts_load(tmp_path: Path) -> None:
    per_task = TaskPostprocessing(tasks={"zones": PostprocessingPlan(largest_component_labels=(2,))})
    save_task_postprocessing(tmp_path / "tasks.json", per_task)
    assert load_any_postprocessing(tmp_path / "tasks.json") == per_task
    single = PostprocessingPlan(largest_component_foreground=True)
    save_postprocessing(tmp_path / "single.json", single)
    assert load_any_postprocessing(tmp_path / "single.json") == single
    with pytest.raises(ConfigError):
        load_any_postprocessing(tmp_path / "missing.json")


def test_plans_must_name_predicted_tasks() -> None:
    TaskPostprocessing(tasks={"zones": PostprocessingPlan()}).check_tasks(["zones", "front"])
    with pytest.raises(ConfigError, match="rocks"):
        TaskPostprocessing(tasks={"rocks": PostprocessingPlan()}).check_tasks(["zones", "front"])
