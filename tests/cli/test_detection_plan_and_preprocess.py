"""``autounet plan-and-preprocess`` on the detection toy: 3d_det / 2d_det plans and stacked label maps."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autounet.cli.main import main
from autounet.data import BatchAugmenter, default_augmentation
from autounet.data.loader import BatchLoader
from autounet.data.sampler import PatchSampler, SamplerSettings
from autounet.dataset._synthetic_detection import DetectionToyOptions, generate_detection_toy, toy_case
from autounet.detection.boxes import instances_to_boxes
from autounet.detection.targets import boxes_from_maps
from autounet.io.geometry import ImageGeometry
from autounet.io.images import write_image, write_segmentation
from autounet.io.jsonio import write_json
from autounet.planning import load_plans
from autounet.preprocessing import load_case


def _toy(tmp_path: Path, shape: tuple[int, ...]) -> Path:
    options = DetectionToyOptions(num_cases=4, num_test_cases=0, shape=shape, edge=(5, 8), wall=1, max_objects=2)
    if len(shape) == 3:
        return generate_detection_toy(tmp_path / "raw", options)
    return _toy_2d_png(tmp_path / "raw" / "Dataset505_ExampleDetection", options)


def _toy_2d_png(root: Path, options: DetectionToyOptions) -> Path:
    """The toy's 2D cases as PNG files (the toy writer's NIfTI needs 3D)."""
    geometry = ImageGeometry(spacing=(1.0, 1.0), origin=(0.0, 0.0), direction=((1.0, 0.0), (0.0, 1.0)),
                             world_frame="RAS")
    for index in range(options.num_cases):
        image, instance_map, instances = toy_case(np.random.default_rng([7, index]), options)
        write_image(image, geometry, root / "imagesTr" / f"toy_{index:04d}_0000.png")
        write_segmentation(instance_map, geometry, root / "labelsTr" / f"toy_{index:04d}.png")
        instances_json = {"instances": {str(k): v for k, v in instances.items()}}
        write_json(root / "labelsTr" / f"toy_{index:04d}.json", instances_json)
    write_json(root / "dataset.json", {"channel_names": {"0": "noise"}, "file_ending": ".png", "instance_labels": True,
                                       "labels": {"background": 0, "square": 1, "square_hole": 2},
                                       "numTraining": options.num_cases, "dim": 2})
    return root


@pytest.mark.parametrize(("shape", "name", "segmentation"), [((16, 16, 16), "3d_det", "3d_fullres"),
                                                             ((24, 24), "2d_det", "2d")])
def test_plan_and_preprocess_the_detection_toy(tmp_path: Path, shape: tuple[int, ...], name: str,
                                               segmentation: str) -> None:
    raw = _toy(tmp_path, shape)
    assert main(["plan-and-preprocess", "-d", "505", "-np", "1", "--data-root", str(tmp_path)]) == 0
    folder = tmp_path / "preprocessed" / raw.name
    plans = load_plans(folder / "plans.json")
    assert {name, segmentation} <= set(plans.configurations)
    det, seg_config = plans.configuration(name), plans.configuration(segmentation)
    assert det.patch_size == seg_config.patch_size and det.batch_size == seg_config.batch_size
    assert det.network == seg_config.network and seg_config.detection is None
    assert det.data_identifier != seg_config.data_identifier
    assert det.resampling.label_order == 0
    plan = det.detection
    assert plan is not None and plan.num_classes == 2
    assert plan.head_levels[-1] == det.network.num_stages - 1
    assert len(plan.anchor_shapes) == len(plan.strides) == len(plan.head_levels)
    assert all(len(s) == len(shape) for level in plan.anchor_shapes for s in level)
    assert 0.5 < plan.anchor_mean_best_iou <= 1.0
    fingerprint = json.loads((folder / "fingerprint.json").read_text())
    assert len(fingerprint["boxes_per_case"]) == 4 and sum(fingerprint["boxes_per_case"]) > 0
    instances_seen = 0
    for case in range(4):
        case_id = f"toy_{case:04d}"
        instances = json.loads((raw / "labelsTr" / f"{case_id}.json").read_text())["instances"]
        _, maps, properties = load_case(folder / det.data_identifier, case_id)
        assert maps.shape == (2, *shape)
        semantic, instance = np.asarray(maps[0]), np.asarray(maps[1])
        assert set(np.unique(instance[instance > 0]).tolist()) == {int(k) for k in instances}
        for key, class_id in instances.items():
            assert set(np.unique(semantic[instance == int(key)]).tolist()) == {class_id + 1}
        assert np.array_equal(semantic > 0, instance > 0)
        boxes, _ = instances_to_boxes(np.where(instance > 0, instance, 0))
        assert len(boxes) == len(instances)
        instances_seen += len(instances)
        # oversampling uses the semantic map's classes
        assert set(properties.class_locations) == {1, 2}
        for label, coords in properties.class_locations.items():
            assert all(semantic[tuple(c)] == label for c in coords)
        _, single, _ = load_case(folder / seg_config.data_identifier, case_id)
        assert np.array_equal(np.asarray(single), semantic)
    assert instances_seen > 0
    with_objects = [p.stem for p in sorted((raw / "labelsTr").glob("*.json")) if json.loads(p.read_text())["instances"]]
    _check_sampler(folder / det.data_identifier, det.patch_size, with_objects)


def _check_sampler(folder: Path, patch: tuple[int, ...], cases: list[str]) -> None:
    """Batches of detection data carry both maps, cut at the same place; forced samples hold an object."""
    sampler = PatchSampler(folder, cases, SamplerSettings(patch, 3, 1.0))
    assert sampler.num_label_channels == 2
    for seed in range(5):
        image, seg = sampler.sample_batch(np.random.default_rng(seed))
        assert seg.shape == (3, 2, *patch) and seg.dtype == np.int16 and image.shape[:2] == (3, 1)
        assert np.array_equal(seg[:, 0] > 0, seg[:, 1] > 0)
        assert all((sample[0] > 0).any() for sample in seg)
    _, single = sampler.sample_patch(cases[0], True, np.random.default_rng(0))
    assert single.shape == (2, *patch)
    # the loader augments both maps with one nearest-neighbour warp: boxes and classes follow the objects
    config = dataclasses.replace(default_augmentation(patch, len(patch)), seg_linear_interpolation=False,
                                 p_rotation=1.0, p_scaling=1.0)
    larger = PatchSampler(folder, cases, SamplerSettings(config.sampling_patch_size, 3, 1.0, final_patch_size=patch))
    loader = BatchLoader(larger, 3, num_workers=0, augment=BatchAugmenter(config, torch.device("cpu")))
    try:
        for _, seg in loader.epoch(0, 3):
            assert seg.shape == (3, 2, *patch) and seg.dtype == np.int16
            assert np.array_equal(seg[:, 0] > 0, seg[:, 1] > 0)
            for boxes, classes in boxes_from_maps(seg[:, 0], seg[:, 1]):
                assert len(boxes) == len(classes) and set(classes.tolist()) <= {0, 1}
    finally:
        loader.close()


def test_verify_reports_a_broken_instance_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    raw = _toy(tmp_path, (16, 16, 16))
    json_file = raw / "labelsTr" / "toy_0001.json"
    data = json.loads(json_file.read_text())
    data["instances"]["9"] = 0
    json_file.write_text(json.dumps(data))
    assert main(["verify", "-d", "505", "--data-root", str(tmp_path)]) == 1
    err = capsys.readouterr()
    text = err.out + err.err
    assert "toy_0001.json" in text and "not consecutive" in text
