"""dataset.json (nnU-Net v2) validation, and finding raw dataset folders by id or name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autounet.dataset import find_raw_dataset, load_dataset_json, save_dataset_json
from autounet.errors import DatasetError


def _valid() -> dict[str, Any]:
    return {
        "channel_names": {"0": "CT", "1": "T2"},
        "labels": {"background": 0, "liver": 1, "tumour": 2},
        "numTraining": 3,
        "file_ending": ".nii.gz",
        "name": "Liver",
        "licence": "CC-BY-SA 4.0",
        "overwrite_image_reader_writer": "SimpleITKIO",
    }


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_plain_labels(tmp_path: Path) -> None:
    description = load_dataset_json(_write(tmp_path, _valid()))
    assert description.channel_names == {0: "CT", 1: "T2"} and description.num_channels == 2
    assert description.labels == {"background": 0, "liver": 1, "tumour": 2}
    assert description.num_training == 3 and description.file_ending == ".nii.gz"
    assert not description.is_region_based and description.regions_class_order is None
    assert description.ignore_label is None
    assert description.foreground_labels == (1, 2)
    assert description.allowed_label_values == {0, 1, 2}
    assert description.extra == {"name": "Liver", "licence": "CC-BY-SA 4.0",
                                 "overwrite_image_reader_writer": "SimpleITKIO"}


def test_save_round_trip_keeps_v2_layout(tmp_path: Path) -> None:
    description = load_dataset_json(_write(tmp_path, _valid()))
    save_dataset_json(tmp_path / "out" / "dataset.json", description)
    assert json.loads((tmp_path / "out" / "dataset.json").read_text()) == _valid()
    assert load_dataset_json(tmp_path / "out" / "dataset.json") == description


def _regions() -> dict[str, Any]:
    # nnU-Net's BraTS example: overlapping regions, the innermost given as a plain integer.
    return _valid() | {
        "labels": {"background": 0, "whole tumour": [1, 2, 3], "tumour core": [2, 3], "enhancing tumour": 3},
        "regions_class_order": [1, 2, 3],
    }


def test_region_labels(tmp_path: Path) -> None:
    description = load_dataset_json(_write(tmp_path, _regions()))
    assert description.is_region_based
    assert description.labels["whole tumour"] == (1, 2, 3)
    assert description.regions_class_order == (1, 2, 3)
    assert description.allowed_label_values == {0, 1, 2, 3}
    save_dataset_json(tmp_path / "again.json", description)
    assert json.loads((tmp_path / "again.json").read_text()) == _regions()


def test_region_labels_with_background_as_list(tmp_path: Path) -> None:
    data = _regions()
    data["labels"]["background"] = [0]
    assert load_dataset_json(_write(tmp_path, data)).regions_class_order == (1, 2, 3)


def test_ignore_label(tmp_path: Path) -> None:
    data = _valid() | {"labels": {"background": 0, "liver": 1, "tumour": 2, "ignore": 3}}
    description = load_dataset_json(_write(tmp_path, data))
    assert description.ignore_label == 3
    assert description.foreground_labels == (1, 2)
    assert description.allowed_label_values == {0, 1, 2, 3}
    assert not description.is_region_based


def test_ignore_label_may_leave_a_gap(tmp_path: Path) -> None:
    data = _valid() | {"labels": {"background": 0, "liver": 1, "ignore": 255}}
    assert load_dataset_json(_write(tmp_path, data)).ignore_label == 255


def _without(key: str) -> dict[str, Any]:
    data = _valid()
    del data[key]
    return data


MALFORMED: dict[str, tuple[Any, str]] = {
    "not_json": ('{"labels": {', "not valid JSON"),
    "a_list": ([1, 2], "must hold a JSON object"),
    "v1_modality": ({"modality": {"0": "CT"}, "labels": {"0": "background"}, "numTraining": 1},
                    "nnU-Net v1.*convert msd"),
    "no_channel_names": (_without("channel_names"), "lacks the required key.*channel_names"),
    "no_labels": (_without("labels"), "lacks the required key.*labels"),
    "no_numTraining": (_without("numTraining"), "lacks the required key.*numTraining"),
    "no_file_ending": (_without("file_ending"), "lacks the required key.*file_ending"),
    "channels_empty": (_valid() | {"channel_names": {}}, "channel_names"),
    "channels_a_list": (_valid() | {"channel_names": ["CT"]}, "channel_names"),
    "channels_key": (_valid() | {"channel_names": {"zero": "CT"}}, "channel_names"),
    "channels_name": (_valid() | {"channel_names": {"0": 1}}, "channel_names"),
    "channels_gap": (_valid() | {"channel_names": {"0": "CT", "2": "T2"}}, r"indices must be 0\.\.1"),
    "labels_empty": (_valid() | {"labels": {}}, "'labels' must be a non-empty object"),
    "no_background": (_valid() | {"labels": {"liver": 1}}, "background"),
    "background_not_0": (_valid() | {"labels": {"background": 1, "liver": 0}}, "background"),
    "label_string": (_valid() | {"labels": {"background": 0, "liver": "1"}}, "label 'liver'"),
    "label_bool": (_valid() | {"labels": {"background": 0, "liver": True}}, "label 'liver'"),
    "label_float": (_valid() | {"labels": {"background": 0, "liver": 1.0}}, "label 'liver'"),
    "label_empty_list": (_valid() | {"labels": {"background": 0, "liver": []}}, "label 'liver'"),
    "labels_gap": (_valid() | {"labels": {"background": 0, "liver": 1, "tumour": 3}}, "consecutive"),
    "labels_duplicate": (_valid() | {"labels": {"background": 0, "liver": 1, "tumour": 1}}, "consecutive"),
    "ignore_not_highest": (_valid() | {"labels": {"background": 0, "liver": 1, "ignore": 1}}, "highest"),
    "ignore_a_list": (_valid() | {"labels": {"background": 0, "liver": 1, "ignore": [2]}}, "single integer"),
    "numTraining_negative": (_valid() | {"numTraining": -1}, "numTraining"),
    "numTraining_string": (_valid() | {"numTraining": "3"}, "numTraining"),
    "numTraining_bool": (_valid() | {"numTraining": True}, "numTraining"),
    "ending_jpg": (_valid() | {"file_ending": ".jpg"}, "file_ending"),
    "ending_no_dot": (_valid() | {"file_ending": "nii.gz"}, "file_ending"),
    "ending_not_string": (_valid() | {"file_ending": 3}, "file_ending"),
    "regions_without_order": ({k: v for k, v in _regions().items() if k != "regions_class_order"},
                              "regions_class_order"),
    "regions_order_length": (_regions() | {"regions_class_order": [1, 2]}, "2 entries for 3 regions"),
    "regions_order_strings": (_regions() | {"regions_class_order": ["1", "2", "3"]}, "list of integers"),
    "regions_order_repeats": (_regions() | {"regions_class_order": [1, 2, 2]}, "repeats a value"),
    "regions_order_undeclared": (_regions() | {"regions_class_order": [1, 2, 7]}, "no label declares"),
}


@pytest.mark.parametrize("variant", sorted(MALFORMED))
def test_malformed_dataset_json_names_the_file(tmp_path: Path, variant: str) -> None:
    data, problem = MALFORMED[variant]
    path = _write(tmp_path, data)
    with pytest.raises(DatasetError, match=problem) as info:
        load_dataset_json(path)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_missing_dataset_json(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="file not found") as info:
        load_dataset_json(tmp_path / "dataset.json")
    assert info.value.path == tmp_path / "dataset.json"


@pytest.fixture
def raw_root(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    for name in ("Dataset001_Liver", "Dataset002_Brain", "Dataset102_Brain", "Dataset003_Heart",
                 "Dataset003_Lung", "notes"):
        (root / name).mkdir(parents=True)
    (root / "Dataset999_File.txt").write_text("a file, not a dataset")
    return root


@pytest.mark.parametrize(("spec", "expected"), [
    (1, "Dataset001_Liver"), ("1", "Dataset001_Liver"), ("001", "Dataset001_Liver"),
    ("Dataset001_Liver", "Dataset001_Liver"), ("Liver", "Dataset001_Liver"),
    (102, "Dataset102_Brain"), ("Dataset102_Brain", "Dataset102_Brain"), ("Lung", "Dataset003_Lung"),
])
def test_find_raw_dataset(raw_root: Path, spec: str | int, expected: str) -> None:
    assert find_raw_dataset(raw_root, spec) == raw_root / expected


def test_find_raw_dataset_by_path(raw_root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "MyData"
    elsewhere.mkdir(parents=True)
    (elsewhere / "dataset.json").write_text("{}")
    assert find_raw_dataset(raw_root, str(elsewhere)) == elsewhere


@pytest.mark.parametrize(("spec", "names"), [
    ("Brain", "Dataset002_Brain, Dataset102_Brain"), (3, "Dataset003_Heart, Dataset003_Lung"),
])
def test_find_raw_dataset_ambiguous(raw_root: Path, spec: str | int, names: str) -> None:
    with pytest.raises(DatasetError, match=f"ambiguous: {names}") as info:
        find_raw_dataset(raw_root, spec)
    assert info.value.path == raw_root


@pytest.mark.parametrize("spec", [7, "Kidney", "Dataset001_Kidney", "File.txt"])
def test_find_raw_dataset_missing_lists_what_exists(raw_root: Path, spec: str | int) -> None:
    with pytest.raises(DatasetError, match=f"no dataset '{spec}'") as info:
        find_raw_dataset(raw_root, spec)
    assert "Dataset001_Liver" in str(info.value) and info.value.path == raw_root


def test_find_raw_dataset_without_raw_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"found: none\)") as info:
        find_raw_dataset(tmp_path / "nothing", 1)
    assert info.value.path == tmp_path / "nothing"
