"""The inference-parameter sweep: faithful to prediction, maximising validation AP, ties kept at the defaults."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from autounet.detection.detections import Detections, fusion_settings
from autounet.detection.retina_unet import build_retina_unet, postprocess_detections, window_settings
from autounet.inference.box_prediction import WindowDetections, collect_window_detections, predict_boxes_sliding_window
from autounet.inference.sliding_window import SlidingWindowSettings
from autounet.networks.spec import UNetSpec
from autounet.planning.plans import DetectionInference
from autounet.training.detection_sweep import (
    SweepCase,
    evaluate_parameters,
    raw_window_settings,
    sweep_inference_parameters,
)

PATCH = (32, 32)


def _case(boxes: list[list[float]], scores: list[float], truth: list[list[float]]) -> SweepCase:
    found = Detections(torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores),
                       torch.zeros(len(scores), dtype=torch.int64))
    windows = WindowDetections(PATCH, (slice(0, 32), slice(0, 32)), PATCH, (((0, 0), found),))
    return SweepCase(windows, np.asarray(truth, dtype=np.float64).reshape(-1, 4), np.zeros(len(truth), dtype=int))


def _thin_false_positive_cases() -> list[SweepCase]:
    # Case A: its object, found with 0.6. Case B: no object, but a box one voxel thin scoring 0.7 that ranks
    # above it (AP 0.5). No score threshold of the grid drops it without the object; a minimum size of 2 does.
    return [_case([[10, 10, 20, 20]], [0.6], [[10, 10, 20, 20]]), _case([[2, 2, 3, 12]], [0.7], [])]


def test_the_sweep_finds_the_parameters_that_drop_false_positives() -> None:
    defaults = DetectionInference()
    cases = _thin_false_positive_cases()
    swept = sweep_inference_parameters(cases, defaults, num_classes=1)
    assert swept.ap_default == pytest.approx(0.5) and swept.ap_swept == pytest.approx(1.0)
    # Only the minimum size improves; every other tried value ties and leaves its parameter at the default.
    assert swept.parameters == replace(defaults, min_size=2.0)
    assert evaluate_parameters(cases, swept.parameters, 1) == pytest.approx(1.0)
    assert swept.trials[0].parameter == "score_threshold" and swept.trials[0].value == 0.0
    assert swept.num_cases == 2


def test_a_weak_box_of_the_same_pass_no_longer_dilutes_the_object() -> None:
    # The large, unsure box around the object (IoU 0.25) comes from the same window pass: it is absorbed by the
    # object's cluster, so the object keeps 0.9 and ranks above case B's false positive (0.7) with the defaults.
    cases = [_case([[10, 10, 20, 20], [6, 6, 26, 26]], [0.9, 0.2], [[10, 10, 20, 20]]),
             _case([[2, 2, 8, 8]], [0.7], [])]
    assert evaluate_parameters(cases, DetectionInference(), 1) == pytest.approx(1.0)


def test_ties_keep_the_defaults_and_cases_without_objects_change_nothing() -> None:
    defaults = DetectionInference(nms_iou=0.4, cluster_iou=0.3)
    perfect = [_case([[10, 10, 20, 20]], [0.9], [[10, 10, 20, 20]])]
    assert sweep_inference_parameters(perfect, defaults, num_classes=1).parameters == defaults
    empty = sweep_inference_parameters([_case([[1, 1, 5, 5]], [0.5], [])], defaults, num_classes=1)
    assert empty.parameters == defaults and empty.ap_default is None and empty.trials == ()


@pytest.mark.parametrize("parameters", [
    DetectionInference(),
    DetectionInference(score_threshold=0.06, nms_iou=0.2, cluster_iou=0.4, min_size=2.0, detections_per_image=5),
])
def test_replayed_windows_give_what_prediction_gives(parameters: DetectionInference) -> None:
    torch.manual_seed(0)
    spec = UNetSpec(ndim=2, encoder="plain", features_per_stage=(4, 8, 8), kernel_sizes=((3, 3),) * 3,
                    strides=((1, 1), (2, 2), (2, 2)), blocks_per_stage=(1, 1, 1), convs_per_decoder_stage=(1, 1))
    network = build_retina_unet(spec, 1, 2, class_segmentation=True).eval()
    with torch.no_grad():  # scores around the thresholds tried, not at the training prior of 0.01
        network.classification_head.output.weight.mul_(20.0)
        network.classification_head.output.bias.fill_(-3.5)
    image = torch.randn(1, 16, 24)
    settings = SlidingWindowSettings(patch_size=(16, 16), step_size=0.5, mirror_axes=(0, 1))
    network.postprocess = window_settings(parameters, class_evidence=True)
    expected = predict_boxes_sliding_window([network.detect], image, settings, fusion_settings(parameters))
    raw = raw_window_settings(parameters, class_evidence=True)
    windows = collect_window_detections([lambda x: postprocess_detections(network(x), network.coder, raw)], image,
                                        settings)
    replayed = windows.fuse(fusion_settings(parameters), window_settings(parameters))
    assert len(expected) > 0
    torch.testing.assert_close(replayed.boxes, expected.boxes)
    torch.testing.assert_close(replayed.scores, expected.scores)
    assert torch.equal(replayed.classes, expected.classes)
