"""Box statistics of instance-label datasets in the fingerprint."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from autounet.dataset import load_raw_dataset
from autounet.dataset._synthetic_detection import DetectionToyOptions, generate_detection_toy
from autounet.fingerprint import extract_fingerprint, load_fingerprint, save_fingerprint
from autounet.fingerprint.extract import ensure_fingerprint, instance_box_sizes_mm
from autounet.io.images import read_segmentation


def test_instance_box_sizes_in_mm() -> None:
    instance_map = np.zeros((6, 8, 10), dtype=np.uint8)
    instance_map[1:3, 2:7, 0:4] = 1
    instance_map[5, 7, 9] = 3
    sizes = instance_box_sizes_mm(instance_map, (3.0, 1.0, 0.5))
    assert sizes == ((6.0, 5.0, 2.0), (3.0, 1.0, 0.5))  # id 2 is absent: no row


def test_fingerprint_of_the_toy_records_every_box(tmp_path: Path) -> None:
    options = DetectionToyOptions(num_cases=4, num_test_cases=0, shape=(16, 16, 16), edge=(5, 8), wall=1,
                                  max_objects=2)
    root = generate_detection_toy(tmp_path / "raw", options)
    dataset = load_raw_dataset(root)
    fingerprint = extract_fingerprint(dataset, samples_per_case=50)
    expected_counts, expected_sizes = [], []
    for case in dataset.cases:
        instance_map, _ = read_segmentation(case.label_file)
        expected_counts.append(len(json.loads(case.instances_file.read_text())["instances"]))
        expected_sizes.extend(instance_box_sizes_mm(instance_map, (1.0, 1.0, 1.0)))
    assert fingerprint.boxes_per_case == tuple(expected_counts) and sum(expected_counts) > 0
    assert fingerprint.box_sizes_mm == tuple(expected_sizes)
    assert all(5.0 <= v <= 8.0 for box in fingerprint.box_sizes_mm for v in box)
    save_fingerprint(tmp_path / "f.json", fingerprint)
    assert load_fingerprint(tmp_path / "f.json") == fingerprint


def test_segmentation_fingerprints_have_no_box_fields(tiny_dataset, tmp_path: Path) -> None:
    dataset = load_raw_dataset(tiny_dataset(num_cases=2, shape=(6, 8, 8)))
    fingerprint = extract_fingerprint(dataset, samples_per_case=20)
    assert fingerprint.boxes_per_case == () and fingerprint.box_sizes_mm == ()
    save_fingerprint(tmp_path / "f.json", fingerprint)
    assert not {"boxes_per_case", "box_sizes_mm"} & set(json.loads((tmp_path / "f.json").read_text()))
    assert load_fingerprint(tmp_path / "f.json") == fingerprint


def test_a_fingerprint_without_boxes_is_extracted_again_for_detection(tmp_path: Path) -> None:
    options = DetectionToyOptions(num_cases=3, num_test_cases=0, shape=(16, 16, 16), edge=(5, 8), wall=1,
                                  max_objects=2)
    dataset = load_raw_dataset(generate_detection_toy(tmp_path / "raw", options))
    old = extract_fingerprint(dataset, samples_per_case=20)
    save_fingerprint(tmp_path / "fingerprint.json", dataclasses.replace(old, boxes_per_case=(), box_sizes_mm=()))
    again = ensure_fingerprint(dataset, tmp_path, num_processes=1)
    assert again.boxes_per_case == old.boxes_per_case
    assert load_fingerprint(tmp_path / "fingerprint.json").boxes_per_case == old.boxes_per_case
