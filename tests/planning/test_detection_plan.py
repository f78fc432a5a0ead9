"""The detection configuration: head levels, strides, anchors fitted to the fingerprint's boxes, plans I/O."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from autounet.errors import PlanError
from autounet.planning.anchor_fit import fit_anchor_sizes, mean_best_iou
from autounet.planning.detection import head_levels, level_strides
from autounet.planning.planner import plan_experiment
from autounet.planning.plans import load_plans, save_plans
from tests.planning.fingerprints import description, jittered, make_fingerprint


def _detection_dataset(spacing: tuple[float, ...], shape: tuple[int, ...], boxes_mm: list[tuple[float, ...]],
                       n: int = 10):
    fingerprint = make_fingerprint(*jittered(spacing, shape, n, seed=3, spacing_jitter=0.0, shape_jitter=0.0))
    per_case = [len(boxes_mm) // n + (1 if i < len(boxes_mm) % n else 0) for i in range(n)]
    fingerprint = dataclasses.replace(fingerprint, boxes_per_case=tuple(per_case), box_sizes_mm=tuple(boxes_mm))
    dataset = dataclasses.replace(description(num_labels=2, n=n, ending=".nii.gz" if len(shape) == 3 else ".png"),
                                  instance_labels=True)
    return fingerprint, dataset


def test_head_levels_start_at_p2_and_end_at_the_bottleneck() -> None:
    assert head_levels(6) == (2, 3, 4, 5)
    assert head_levels(3) == (2,)
    assert head_levels(2) == (1,)


def test_level_strides_multiply_stage_strides() -> None:
    stages = ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2))
    assert level_strides(stages, (2, 3)) == ((2, 4, 4), (4, 8, 8))


def test_3d_det_reuses_fullres_and_fits_anchors() -> None:
    rng = np.random.default_rng(0)
    # roughly cubic objects of edges 6..20 voxels, as nodules or the toy's squares
    boxes = [tuple(float(v) for v in rng.uniform(6, 20) * rng.uniform(0.9, 1.1, size=3)) for _ in range(40)]
    fingerprint, dataset = _detection_dataset((1.0, 1.0, 1.0), (96, 96, 96), boxes)
    plans = plan_experiment(fingerprint, dataset, "Dataset505_Toy")
    fullres, det = plans.configuration("3d_fullres"), plans.configuration("3d_det")
    assert "2d" in plans.configurations and "2d_det" not in plans.configurations
    assert (det.patch_size, det.batch_size, det.network, det.spacing) == (fullres.patch_size, fullres.batch_size,
                                                                          fullres.network, fullres.spacing)
    plan = det.detection
    assert plan is not None and plan.num_classes == 2
    assert plan.head_levels == tuple(range(2, det.network.num_stages))
    assert plan.strides == level_strides(det.network.strides, plan.head_levels)
    first = np.asarray(plan.anchor_shapes[0])
    for level, stride in zip(plan.anchor_shapes, plan.strides, strict=True):
        ratio = np.asarray(stride) / np.asarray(plan.strides[0])
        assert np.allclose(np.asarray(level), first * ratio, rtol=1e-3)
    scales = [np.asarray(s) / np.asarray(plan.strides[0]) for s in plan.strides]
    assert plan.anchor_mean_best_iou == pytest.approx(mean_best_iou(np.asarray(boxes), first, scales), abs=1e-3)
    assert plan.anchor_mean_best_iou > 0.8
    assert plan.anchor_mean_best_iou > mean_best_iou(np.asarray(boxes), np.full((1, 3), 12.0), scales) + 0.05
    assert det.resampling.label_order == 0 and fullres.resampling.label_order == 1
    assert det.data_identifier != fullres.data_identifier


def test_box_sizes_follow_spacing_and_axis_order() -> None:
    # 3 mm slices: a box of 6 x 3 x 3 mm is 2 x 3 x 3 voxels; the planner keeps axis 0 first here.
    boxes = [(6.0, 3.0, 3.0)] * 10
    fingerprint, dataset = _detection_dataset((3.0, 1.0, 1.0), (40, 160, 160), boxes)
    plans = plan_experiment(fingerprint, dataset, "Dataset505_Toy")
    plan = plans.configuration("3d_det").detection
    assert plans.axis_order == (0, 1, 2) and plan is not None
    assert plan.anchor_mean_best_iou == pytest.approx(1.0, abs=1e-3)
    best = max(plan.anchor_shapes[0], key=lambda s: -abs(np.prod(s) - 18))
    assert best == pytest.approx((2.0, 3.0, 3.0), rel=0.02)


def test_2d_data_get_2d_det() -> None:
    fingerprint, dataset = _detection_dataset((1.0, 1.0), (256, 256), [(10.0, 20.0), (12.0, 24.0), (30.0, 30.0)])
    plans = plan_experiment(fingerprint, dataset, "Dataset505_Toy")
    assert set(plans.configurations) == {"2d", "2d_det"}
    plan = plans.configuration("2d_det").detection
    assert plan is not None and all(len(shape) == 2 for level in plan.anchor_shapes for shape in level)


def test_detection_needs_boxes() -> None:
    fingerprint, dataset = _detection_dataset((1.0, 1.0, 1.0), (64, 64, 64), [])
    with pytest.raises(PlanError, match="no instance in any training case"):
        plan_experiment(fingerprint, dataset, "Dataset505_Toy")
    with pytest.raises(PlanError, match="no box statistics"):
        plan_experiment(dataclasses.replace(fingerprint, boxes_per_case=()), dataset, "Dataset505_Toy")


def test_plans_round_trip_and_segmentation_plans_unchanged(tmp_path: Path) -> None:
    fingerprint, dataset = _detection_dataset((1.0, 1.0, 1.0), (64, 64, 64), [(8.0, 8.0, 8.0), (12.0, 9.0, 9.0)])
    plans = plan_experiment(fingerprint, dataset, "Dataset505_Toy")
    save_plans(tmp_path / "plans.json", plans)
    assert load_plans(tmp_path / "plans.json") == plans
    written = json.loads((tmp_path / "plans.json").read_text())["configurations"]
    assert "detection" not in written["3d_fullres"] and written["3d_det"]["detection"]["head_levels"]
    segmentation = plan_experiment(fingerprint, dataclasses.replace(dataset, instance_labels=False), "D")
    assert "3d_det" not in segmentation.configurations
    assert segmentation.configuration("3d_fullres") == plans.configuration("3d_fullres")


def test_anchor_fit_accepts_per_axis_level_scales() -> None:
    sizes = np.array([[4.0, 8.0, 8.0], [8.0, 16.0, 16.0], [5.0, 9.0, 11.0]])
    scalar = fit_anchor_sizes(sizes, 2, (1.0, 2.0))
    per_axis = fit_anchor_sizes(sizes, 2, ((1.0, 1.0, 1.0), (2.0, 2.0, 2.0)))
    assert scalar == per_axis
    assert mean_best_iou(sizes, np.array(scalar), (1.0, 2.0)) == mean_best_iou(sizes, np.array(scalar),
                                                                               ((1.0,) * 3, (2.0,) * 3))
    # anisotropic levels (the second only doubles in-plane): one shape fits boxes of both levels exactly
    flat = np.array([[4.0, 8.0, 8.0], [4.0, 16.0, 16.0]])
    levels = ((1.0, 1.0, 1.0), (1.0, 2.0, 2.0))
    anisotropic = fit_anchor_sizes(flat, 1, levels)
    assert mean_best_iou(flat, np.array(anisotropic), levels) == pytest.approx(1.0, abs=0.02)
    assert mean_best_iou(flat, np.array(fit_anchor_sizes(flat, 1, (1.0, 2.0))), (1.0, 2.0)) < 0.9
