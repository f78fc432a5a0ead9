"""Datasets with instance labels in autounet's layout: description, raw cases, and verify's instance checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from autounet.dataset._instances import check_instance_label
from autounet.dataset._synthetic_detection import DetectionToyOptions, generate_detection_toy
from autounet.dataset.description import parse_dataset_json
from autounet.dataset.raw import load_raw_dataset
from autounet.dataset.verify import verify_dataset
from autounet.errors import DatasetError
from autounet.io.images import read_segmentation, write_segmentation

SMALL = DetectionToyOptions(num_cases=4, num_test_cases=1, shape=(16, 16, 16), edge=(5, 8), wall=1, max_objects=2)
BASE = {"channel_names": {"0": "noise"}, "labels": {"background": 0, "square": 1, "square_hole": 2},
        "numTraining": 1, "file_ending": ".nii.gz"}


@pytest.fixture()
def toy(tmp_path: Path) -> Path:
    return generate_detection_toy(tmp_path / "raw", SMALL)


def test_description_types_instance_labels(tmp_path: Path) -> None:
    description = parse_dataset_json(BASE | {"instance_labels": True, "dim": 3}, tmp_path / "dataset.json")
    assert description.instance_labels is True and "instance_labels" not in description.extra
    assert description.instance_classes == {0: "square", 1: "square_hole"}
    assert description.to_json_dict()["instance_labels"] is True
    plain = parse_dataset_json(BASE, tmp_path / "dataset.json")
    assert plain.instance_labels is False and "instance_labels" not in plain.to_json_dict()
    with pytest.raises(DatasetError, match="'instance_labels' must be true or false"):
        parse_dataset_json(BASE | {"instance_labels": "yes"}, tmp_path / "dataset.json")
    regions = BASE | {"labels": {"background": 0, "a": [1, 2], "b": 2}, "regions_class_order": [1, 2],
                      "instance_labels": True}
    with pytest.raises(DatasetError, match="one plain label per class"):
        parse_dataset_json(regions, tmp_path / "dataset.json")


def test_raw_cases_know_their_instance_file(toy: Path) -> None:
    dataset = load_raw_dataset(toy)
    assert all(case.instances_file == toy / "labelsTr" / f"{case.case_id}.json" for case in dataset.cases)
    (toy / "labelsTr" / "toy_0002.json").unlink()
    with pytest.raises(DatasetError, match="no instance file toy_0002.json"):
        load_raw_dataset(toy)


def test_the_toy_verifies(toy: Path) -> None:
    report = verify_dataset(toy)
    assert report.ok, report.problems
    assert report.summary is not None and report.summary.cases_per_label["background"] == 4
    counts = {0: 0, 1: 0}
    for path in (toy / "labelsTr").glob("*.json"):
        for class_id in set(json.loads(path.read_text())["instances"].values()):
            counts[class_id] += 1
    assert report.summary.cases_per_label["square"] == counts[0]
    assert report.summary.cases_per_label["square_hole"] == counts[1]


def _case_with(toy: Path, count: int) -> str:
    for path in sorted((toy / "labelsTr").glob("*.json")):
        if len(json.loads(path.read_text())["instances"]) == count:
            return path.stem
    raise AssertionError(f"no case with {count} instance(s)")


@pytest.mark.parametrize(("content", "problem", "named"), [
    (None, "instance file missing", "json"),
    ("{not json", "(?i)json", "json"),
    ('{"objects": {}}', 'must hold an "instances" object', "json"),
    ({"1": 0, "3": 1}, "not consecutive from 1", "json"),
    ({"1": 0, "2": 5}, "class 5, but dataset labels declare classes 0, 1", "json"),
    ({"1": 0, "2": 1, "3": 0}, r"instance\(s\) \[3\] .* have no voxels", "nii.gz"),
    ({"1": 0}, r"instance id\(s\) \[2\] that .* does not list", "nii.gz"),
])
def test_verify_checks_instances_against_their_json(toy: Path, content: object, problem: str, named: str) -> None:
    case = _case_with(toy, 2)
    path = toy / "labelsTr" / f"{case}.json"
    if content is None:
        path.unlink()
    else:
        path.write_text(content if isinstance(content, str) else json.dumps({"instances": content}))
    report = verify_dataset(toy)
    assert len(report.problems) == 1, report.problems
    found = report.problems[0]
    assert found.path.name == f"{case}.{named}" and "\n" not in found.message
    assert re.search(problem, found.message)


def test_verify_checks_the_instance_map_geometry(toy: Path) -> None:
    case = _case_with(toy, 1)
    label = toy / "labelsTr" / f"{case}.nii.gz"
    instance_map, geometry = read_segmentation(label)
    write_segmentation(instance_map[:, :, :12].copy(), geometry, label)
    report = verify_dataset(toy)
    assert any(p.path == label and "shape" in p.message for p in report.problems)


def test_verify_rejects_stray_files_beside_instance_files(toy: Path) -> None:
    (toy / "labelsTr" / "notes.txt").write_text("x")
    (toy / "labelsTr" / "orphan.json").write_text("{}")
    names = {p.path.name for p in verify_dataset(toy).problems}
    assert names == {"notes.txt", "orphan.json"}


def test_negative_instance_ids_are_a_problem(tmp_path: Path) -> None:
    label, json_file = tmp_path / "a.nii.gz", tmp_path / "a.json"
    json_file.write_text('{"instances": {"1": 0}}')
    semantic, problems, _ = check_instance_label(label, frozenset({-2, 0, 1}), json_file, {0: "a"})
    assert semantic is None and problems == [(label, "negative instance id(s) [-2]; instance maps hold 0 and 1..N")]
    semantic, problems, warnings = check_instance_label(label, frozenset({0, 1}), json_file, {0: "a"})
    assert semantic == {0, 1} and not problems and not warnings


def test_plain_datasets_still_reject_json_in_labels(tmp_path: Path, toy: Path) -> None:
    data = json.loads((toy / "dataset.json").read_text())
    del data["instance_labels"]
    (toy / "dataset.json").write_text(json.dumps(data))
    messages = [p.message for p in verify_dataset(toy).problems]
    assert any("not a '.nii.gz' file" in m for m in messages)
