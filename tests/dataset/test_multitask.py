"""Multi-task datasets: 'tasks' in dataset.json, label folders per task, loading and verification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autounet.dataset import OutputLayout, load_dataset_json, load_raw_dataset, save_dataset_json
from autounet.dataset.description import DEFAULT_TASK, parse_dataset_json
from autounet.dataset.labels import LabelScheme
from autounet.dataset.verify import verify_dataset
from autounet.errors import DatasetError
from autounet.io import ImageGeometry, write_image, write_segmentation


def _tasks() -> dict[str, Any]:
    return {"zones": {"labels": {"background": 0, "rock": 1, "glacier": 2, "ocean": 3}, "kind": "area"},
            "front": {"labels": {"background": 0, "front": 1}, "kind": "line"}}


def _json(**changes: Any) -> dict[str, Any]:
    data = {"channel_names": {"0": "SAR"}, "tasks": _tasks(), "numTraining": 2, "file_ending": ".mha",
            "name": "Glaciers"}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def _parse(data: dict[str, Any]):
    return parse_dataset_json(data, Path("dataset.json"))


def test_tasks_are_parsed_in_order_with_kinds() -> None:
    description = _parse(_json())
    assert [t.name for t in description.tasks] == ["zones", "front"]
    assert [t.kind for t in description.tasks] == ["area", "line"]
    assert description.tasks[0].foreground_labels == (1, 2, 3)
    assert description.tasks[1].allowed_label_values == {0, 1}
    assert description.has_task_folders and description.labels == {}
    assert description.extra == {"name": "Glaciers"}


def test_single_map_dataset_is_one_default_task() -> None:
    data = _json(tasks=None, labels={"background": 0, "liver": 1, "ignore": 2})
    description = _parse(data)
    (task,) = description.tasks
    assert task.name == DEFAULT_TASK and task.kind == "area" and task.labels == description.labels
    assert task.ignore_label == 2 and description.ignore_label == 2
    assert not description.has_task_folders
    assert description.to_json_dict() == data


def test_round_trip_keeps_tasks(tmp_path: Path) -> None:
    data = _json()
    data["tasks"]["zones"]["labels"]["ignore"] = 4
    description = _parse(data)
    save_dataset_json(tmp_path / "dataset.json", description)
    assert json.loads((tmp_path / "dataset.json").read_text()) == data
    assert load_dataset_json(tmp_path / "dataset.json") == description


def test_regions_inside_a_task() -> None:
    tasks = _tasks() | {"tumour": {"labels": {"background": 0, "whole": [1, 2], "core": 2},
                                   "regions_class_order": [1, 2]}}
    description = _parse(_json(tasks=tasks))
    tumour = description.tasks[2]
    assert tumour.kind == "area" and tumour.is_region_based and tumour.regions_class_order == (1, 2)
    layout = OutputLayout.from_description(description)
    assert [t.name for t in layout.tasks] == ["zones", "front", "tumour"]
    assert [t.channels for t in layout.tasks] == [slice(0, 4), slice(4, 6), slice(6, 8)]
    assert layout.task("tumour").scheme.regions == ((1, 2), (2,))


def test_single_map_layout_is_unchanged() -> None:
    description = _parse(_json(tasks=None, labels={"background": 0, "a": 1, "b": 2}))
    layout = OutputLayout.from_description(description)
    assert [t.name for t in layout.tasks] == [DEFAULT_TASK] and layout.single == LabelScheme.from_description(
        description)


def test_single_map_steps_refuse_several_maps_in_one_line() -> None:
    description = _parse(_json())
    for step in (lambda: description.foreground_labels, lambda: LabelScheme.from_description(description)):
        with pytest.raises(DatasetError, match="handles only one"):
            step()


@pytest.mark.parametrize(("changes", "message"), [
    ({"labels": {"background": 0, "a": 1}}, "both 'labels' and 'tasks'"),
    ({"tasks": {}}, "'tasks' must be a non-empty object"),
    ({"tasks": []}, "'tasks' must be a non-empty object"),
    ({"tasks": {"../up": _tasks()["zones"]}}, "task name '../up'"),
    ({"tasks": {"a b": _tasks()["zones"]}}, "task name 'a b'"),
    ({"tasks": {"1st": _tasks()["zones"]}}, "task name '1st'"),
    ({"tasks": {"Front": _tasks()["front"], "front": _tasks()["front"]}}, "differ only in letter case"),
    ({"tasks": {"zones": {"kind": "area"}}}, "task 'zones' must be an object with 'labels'"),
    ({"tasks": {"zones": 3}}, "task 'zones' must be an object with 'labels'"),
    ({"tasks": {"zones": _tasks()["zones"] | {"colour": 1}}}, "unknown key(s) colour"),
    ({"tasks": {"zones": _tasks()["zones"] | {"kind": "point"}}}, "kind 'point'"),
    ({"tasks": {"front": {"labels": {"background": 0, "front": 1, "bergs": 2}, "kind": "line"}}},
     "exactly one foreground label"),
    ({"tasks": {"front": {"labels": {"background": 0, "front": [1]}, "kind": "line",
                          "regions_class_order": [1]}}}, "exactly one foreground label"),
    ({"tasks": {"zones": {"labels": {"background": 0, "rock": 2}}}}, "task 'zones': label values must be consecutive"),
    ({"tasks": {"zones": {"labels": {"rock": 1}}}}, "task 'zones': 'labels' must contain \"background\": 0"),
    ({"regions_class_order": [1]}, "belongs inside a task"),
])
def test_bad_tasks_are_one_line_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(DatasetError) as info:
        _parse(_json(**changes))
    text = str(info.value)
    assert message in text and "\n" not in text


def test_neither_labels_nor_tasks_names_labels() -> None:
    with pytest.raises(DatasetError, match="lacks the required key"):
        _parse(_json(tasks=None))


# --- on disk: loading and verification ------------------------------------------------------------------

_GEOMETRY = ImageGeometry(spacing=(20.0, 20.0), origin=(0.0, 0.0), direction=((1.0, 0.0), (0.0, 1.0)),
                          world_frame="LPS")


def _case_maps(index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(index)
    image = rng.random((8, 8)).astype(np.float32) + 1
    zones = np.zeros((8, 8), np.uint8)
    zones[:, :3], zones[:, 3:6], zones[:, 6:] = 1, 2, 3
    front = np.zeros((8, 8), np.uint8)
    front[:, 5] = 1
    return image, zones, front


def make_multitask(root: Path, cases: int = 2, tests: int = 1) -> Path:
    """A tiny valid two-task dataset (zones + front) with labelled test cases."""
    for index in range(cases + tests):
        split = "Tr" if index < cases else "Ts"
        image, zones, front = _case_maps(index)
        write_image(image[None], _GEOMETRY, root / f"images{split}" / f"c{index}_0000.mha")
        write_segmentation(zones, _GEOMETRY, root / f"labels{split}" / "zones" / f"c{index}.mha")
        write_segmentation(front, _GEOMETRY, root / f"labels{split}" / "front" / f"c{index}.mha")
    (root / "dataset.json").write_text(json.dumps(_json(numTraining=cases)))
    return root


def test_raw_dataset_has_one_label_file_per_task_in_task_order(tmp_path: Path) -> None:
    root = make_multitask(tmp_path / "Dataset900_Multi")
    dataset = load_raw_dataset(root)
    assert [c.case_id for c in dataset.cases] == ["c0", "c1"]
    assert dataset.cases[0].label_files == (root / "labelsTr/zones/c0.mha", root / "labelsTr/front/c0.mha")
    (root / "labelsTr/front/c1.mha").unlink()
    with pytest.raises(DatasetError, match="has no label file"):
        load_raw_dataset(root)


def test_clean_multitask_dataset_verifies(tmp_path: Path) -> None:
    report = verify_dataset(make_multitask(tmp_path / "Dataset900_Multi"))
    assert report.ok, report.problems
    assert report.summary is not None and report.summary.num_test_cases == 1
    assert report.summary.labels["front/front"] == 1 and report.summary.labels["zones/ocean"] == 3
    assert report.summary.cases_per_label["front/front"] == 2


def _problems(root: Path) -> list[tuple[str, str]]:
    return [(str(p.path.relative_to(root)), p.message) for p in verify_dataset(root).problems]


def _only(problems: list[tuple[str, str]], path: str, text: str) -> None:
    assert len(problems) == 1, problems
    assert problems[0][0] == path and text in problems[0][1], problems


def test_missing_map_of_one_task(tmp_path: Path) -> None:
    root = make_multitask(tmp_path / "D")
    (root / "labelsTr/front/c1.mha").unlink()
    _only(_problems(root), "labelsTr/front/c1.mha", "has images but no label file")


def test_missing_task_folder(tmp_path: Path) -> None:
    root = make_multitask(tmp_path / "D")
    for path in (root / "labelsTs/front").iterdir():
        path.unlink()
    (root / "labelsTs/front").rmdir()
    _only(_problems(root), "labelsTs/front", "missing folder labelsTs/front/")


def test_stray_label_file_and_undeclared_folder_and_loose_file(tmp_path: Path) -> None:
    root = make_multitask(tmp_path / "D")
    _, zones, _ = _case_maps(0)
    write_segmentation(zones, _GEOMETRY, root / "labelsTr/zones/c9.mha")
    write_segmentation(zones, _GEOMETRY, root / "labelsTr/c0.mha")
    (root / "labelsTr/bergs").mkdir()
    problems = sorted(_problems(root))
    assert [p[0] for p in problems] == ["labelsTr/bergs", "labelsTr/c0.mha", "labelsTr/zones/c9.mha"]
    assert "not a task of dataset.json" in problems[0][1]
    assert "directly in labelsTr/" in problems[1][1]
    assert "label without images" in problems[2][1]


def test_value_declared_by_another_task_only(tmp_path: Path) -> None:
    root = make_multitask(tmp_path / "D")
    _, zones, _ = _case_maps(1)
    write_segmentation(zones, _GEOMETRY, root / "labelsTr/front/c1.mha")  # zone values 2, 3 in the front map
    _only(_problems(root), "labelsTr/front/c1.mha", "label values [2, 3] not declared")


def test_map_geometry_must_match_the_image(tmp_path: Path) -> None:
    root = make_multitask(tmp_path / "D")
    _, _, front = _case_maps(0)
    write_segmentation(front, ImageGeometry(spacing=(40.0, 40.0), origin=(0.0, 0.0),
                                            direction=((1.0, 0.0), (0.0, 1.0)), world_frame="LPS"),
                       root / "labelsTr/front/c0.mha")
    _only(_problems(root), "labelsTr/front/c0.mha", "label geometry differs")
    write_segmentation(front[:6], _GEOMETRY, root / "labelsTs/zones/c2.mha")
    assert ("labelsTs/zones/c2.mha", "label shape (6, 8) differs from image shape (8, 8) of c2_0000.mha") in \
        _problems(root)


def test_messages_name_the_task_and_the_test_folder(tmp_path: Path) -> None:
    root = make_multitask(tmp_path / "D")
    _, zones, _ = _case_maps(1)
    write_segmentation(zones, _GEOMETRY, root / "labelsTr/front/c1.mha")
    write_segmentation(zones, _GEOMETRY, root / "labelsTs/zones/c7.mha")
    problems = dict(_problems(root))
    assert "add them to task 'front' labels" in problems["labelsTr/front/c1.mha"]
    assert "no imagesTs/c7_0000.mha" in problems["labelsTs/zones/c7.mha"]


def test_one_declared_task_is_a_single_map_in_its_folder(tmp_path: Path) -> None:
    description = _parse(_json(tasks={"front": _tasks()["front"]}))
    assert description.has_task_folders and description.single_task.name == "front"
    assert description.foreground_labels == (1,)
    assert OutputLayout.from_description(description).tasks[0].name == "front"
    assert LabelScheme.from_description(description).labels == (0, 1)
    root = make_multitask(tmp_path / "D")
    (root / "dataset.json").write_text(json.dumps(_json(tasks={"front": _tasks()["front"]})))
    for path in (root / "labelsTr/zones").iterdir():
        path.unlink()
    (root / "labelsTr/zones").rmdir()
    problems = _problems(root)
    assert [p[0] for p in problems] == ["labelsTs/zones"] and "not a task of dataset.json" in problems[0][1]
    assert load_raw_dataset(root).cases[1].label_files == (root / "labelsTr/front/c1.mha",)
