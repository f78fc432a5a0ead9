"""The label arrays of instance-label cases: semantic for segmentation, semantic + instances for detection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autounet.dataset import load_raw_dataset
from autounet.dataset._synthetic_detection import DetectionToyOptions, generate_detection_toy
from autounet.errors import ConfigError
from autounet.io.images import read_segmentation
from autounet.preprocessing.dataset import case_label_maps


def test_label_maps_of_instance_and_plain_cases(tmp_path: Path, tiny_dataset) -> None:
    options = DetectionToyOptions(num_cases=3, num_test_cases=0, shape=(12, 12, 12), edge=(4, 6), wall=1,
                                  max_objects=3)
    dataset = load_raw_dataset(generate_detection_toy(tmp_path / "toy", options))
    for case in dataset.cases:
        instance_map, _ = read_segmentation(case.label_file)
        instances = {int(k): v for k, v in json.loads(case.instances_file.read_text())["instances"].items()}
        semantic = case_label_maps(case, dataset.description)
        expected = np.zeros(instance_map.shape, dtype=np.int64)
        for instance, class_id in instances.items():
            expected[instance_map == instance] = class_id + 1
        assert np.array_equal(semantic, expected)
        stacked = case_label_maps(case, dataset.description, detection=True)
        assert stacked.shape == (2, *instance_map.shape) and stacked.dtype.kind in "iu"
        assert np.array_equal(stacked[0], expected) and np.array_equal(stacked[1], instance_map)
    plain = load_raw_dataset(tiny_dataset(num_cases=1, shape=(4, 6, 6)))
    label, _ = read_segmentation(plain.cases[0].label_file)
    assert np.array_equal(case_label_maps(plain.cases[0], plain.description), label)
    with pytest.raises(ConfigError, match="needs a dataset with instance labels"):
        case_label_maps(plain.cases[0], plain.description, detection=True)
