"""nnDetection raw tasks: reading (JSON and YAML descriptions), instance checks, conversion, the toy problem."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from autounet.cli.main import main
from autounet.dataset import load_dataset_json
from autounet.dataset._simple_yaml import parse_simple_yaml
from autounet.dataset._synthetic_detection import (
    DetectionToyOptions,
    generate_detection_toy,
    toy_case,
    write_nndet_toy_task,
)
from autounet.dataset.nndet import convert_nndet, instances_to_semantic, load_nndet_task
from autounet.detection.boxes import instances_to_boxes
from autounet.errors import DatasetError
from autounet.io import read_segmentation

SMALL = DetectionToyOptions(num_cases=4, num_test_cases=2, shape=(16, 16, 16), edge=(5, 8), wall=1, max_objects=2)

YAML = """# nnDetection task description
task: Task007_Toy
name: "Toy"
target_class: null
test_labels: True
dim: 3
labels:
  "0": "square"   # class 0
  '1': square_hole
modalities:
  "0": "noise"
"""


@pytest.fixture()
def task(tmp_path: Path) -> Path:
    return write_nndet_toy_task(tmp_path / "Task007_Toy", SMALL)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "dataset.json"}


def test_yaml_description_is_read(task: Path) -> None:
    (task / "dataset.json").unlink()
    (task / "dataset.yaml").write_text(YAML, encoding="utf-8")
    loaded = load_nndet_task(task)
    assert loaded.dim == 3 and loaded.classes == {0: "square", 1: "square_hole"} and loaded.modalities == {0: "noise"}
    assert [c.split for c in loaded.cases] == ["Tr"] * 4 + ["Ts"] * 2
    assert loaded.extra == {"name": "Toy", "task": "Task007_Toy", "target_class": None, "test_labels": True}


def test_simple_yaml_rejects_what_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "dataset.yaml"
    assert parse_simple_yaml("a:\n  - 1\n  - x\nb: {\"0\": 2.5}\n", path) == {"a": [1, "x"], "b": {"0": 2.5}}
    for text, problem in [("a: 1\na: 2\n", "appears twice"), ("a: &anchor 1\n", "not supported"),
                          ("a: 1\n   b: 2\n", "unexpected indentation"), ("just text\n", "expected 'key: value'")]:
        with pytest.raises(DatasetError, match=problem) as error:
            parse_simple_yaml(text, path)
        assert "dataset.yaml" in str(error.value) and "\n" not in str(error.value)


def test_convert_equals_the_generated_layout(task: Path, tmp_path: Path) -> None:
    converted = convert_nndet(task, tmp_path / "raw")
    assert converted.name == "Dataset007_Toy"
    generated = generate_detection_toy(tmp_path / "generated", SMALL)
    assert _files(converted) == _files(generated)  # images byte for byte, instance maps, per-case JSON
    description = load_dataset_json(converted / "dataset.json")
    assert description.labels == {"background": 0, "square": 1, "square_hole": 2}
    assert description.instance_labels is True and description.extra["dim"] == 3
    assert description.num_training == 4 and description.extra["numTest"] == 2


def test_float_instance_maps_become_integers(task: Path, tmp_path: Path) -> None:
    # nnDetection's own example writes its masks as float64; the converter stores them as integers.
    label = task / "raw_splitted" / "labelsTr" / "toy_0000.nii.gz"
    original = nib.load(label)
    values = np.asarray(original.dataobj)
    nib.save(nib.Nifti1Image(values.astype(np.float64), original.affine), label)
    converted, _ = read_segmentation(convert_nndet(task, tmp_path / "raw") / "labelsTr" / "toy_0000.nii.gz")
    assert np.issubdtype(converted.dtype, np.integer) and np.array_equal(converted, np.asarray(values).T)


def test_cli_convert_nndet(task: Path, tmp_path: Path) -> None:
    assert main(["convert", "nndet", str(task), "-d", "77", "--data-root", str(tmp_path / "d")]) == 0
    assert len(list((tmp_path / "d").rglob("Dataset077_Toy/labelsTr/*.json"))) == 4
    assert main(["convert", "nndet", str(tmp_path / "missing"), "--data-root", str(tmp_path / "d")]) == 1


def _edit_json(task: Path, case: str, instances: dict[str, int] | None) -> Path:
    path = task / "raw_splitted" / "labelsTr" / f"{case}.json"
    if instances is None:
        path.unlink()
    else:
        path.write_text(json.dumps({"instances": instances}), encoding="utf-8")
    return path


def _labelled_case(task: Path, count: int) -> str:
    for path in sorted((task / "raw_splitted" / "labelsTr").glob("*.json")):
        if len(json.loads(path.read_text())["instances"]) == count:
            return path.stem
    raise AssertionError(f"no case with {count} instance(s)")


@pytest.mark.parametrize(("edit", "problem", "named"), [
    (None, "instance file .* not found beside the label", "nii.gz"),
    ({"1": 0, "3": 1}, "not consecutive from 1", "json"),
    ({"1": 0, "2": 5}, "class 5, but dataset labels declare classes 0, 1", "json"),
    ({"1": 0, "2": 1, "3": 0}, r"instance\(s\) \[3\] .* have no voxels", "nii.gz"),
    ({"1": 0}, r"instance id\(s\) \[2\] that .* does not list", "nii.gz"),
    ({"1": "big", "2": 0}, "classes are integers", "json"),
])
def test_instance_checks_name_the_file(task: Path, tmp_path: Path, edit: dict[str, object] | None, problem: str,
                                       named: str) -> None:
    case = _labelled_case(task, 2)
    _edit_json(task, case, edit)  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match=problem) as error:
        convert_nndet(task, tmp_path / "raw")
    message = str(error.value)
    assert "\n" not in message and f"{case}.{named}" in message
    assert not (tmp_path / "raw" / "Dataset007_Toy").exists()


def test_description_checks(task: Path) -> None:
    description = task / "dataset.json"
    data = json.loads(description.read_text())
    for change, problem in [({"dim": 4}, "'dim' must be 2 or 3"), ({"labels": {"1": "a"}}, "count from 0"),
                            ({"modalities": {"0": "a", "1": "b"}}, "modality 1 of case")]:
        description.write_text(json.dumps(data | change), encoding="utf-8")
        with pytest.raises(DatasetError, match=problem):
            load_nndet_task(task)
    description.unlink()
    with pytest.raises(DatasetError, match="no dataset.json or dataset.yaml"):
        load_nndet_task(task)


def test_toy_cases_and_semantic_labels() -> None:
    options = DetectionToyOptions(shape=(20, 20, 20), edge=(6, 9), wall=2, max_objects=3)
    seen: set[int] = set()
    for index in range(12):
        image, instance_map, instances = toy_case(np.random.default_rng(index), options)
        boxes, ids = instances_to_boxes(instance_map)
        assert ids.tolist() == sorted(instances)
        for box, instance in zip(boxes.int().tolist(), ids.tolist(), strict=True):
            extents = [high - low for low, high in zip(box[:3], box[3:], strict=True)]
            assert len(set(extents)) == 1 and 6 <= extents[0] <= 9  # cubes of the drawn edge
            filled = (instance_map == instance).sum() == extents[0] ** 3
            assert filled == (instances[instance] == 0)  # squares are full, squares with hole are not
            seen.add(instances[instance])
        assert image.dtype == np.uint8 and image[instance_map > 0].mean() > image[instance_map == 0].mean()
        semantic = instances_to_semantic(instance_map, instances)
        assert set(np.unique(semantic[instance_map > 0]).tolist()) <= {1, 2}
        assert (semantic[instance_map == 0] == 0).all()
    assert seen == {0, 1}


def test_toy_is_deterministic_and_validated(tmp_path: Path) -> None:
    first = generate_detection_toy(tmp_path / "a", SMALL)
    second = generate_detection_toy(tmp_path / "b", SMALL)
    assert _files(first) == _files(second)
    label, _ = read_segmentation(first / "labelsTr" / "toy_0000.nii.gz")
    assert label.shape == (16, 16, 16)
    with pytest.raises(DatasetError, match="must exceed twice the wall"):
        generate_detection_toy(tmp_path / "c", DetectionToyOptions(edge=(4, 8), wall=2))


def test_cli_example_detection(tmp_path: Path) -> None:
    args = ["example", "detection", "--num-cases", "2", "--num-test-cases", "1", "--dataset-id", "606",
            "--data-root", str(tmp_path)]
    assert main(args) == 0
    folder = next(tmp_path.rglob("Dataset606_ExampleDetection"))
    assert sorted(p.name for p in (folder / "labelsTs").iterdir()) == ["toy_0002.json", "toy_0002.nii.gz"]
    assert load_dataset_json(folder / "dataset.json").instance_labels is True
    assert main(args) == 1  # exists: needs --overwrite
