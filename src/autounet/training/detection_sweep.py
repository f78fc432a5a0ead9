"""Choosing a detector's inference parameters on its fold's validation predictions (nnDetection's sweep).

The final validation runs the network once per validation case and keeps every window pass's candidate boxes
(:class:`~autounet.inference.box_prediction.WindowDetections`, decoded with :func:`raw_window_settings`: no
NMS, nothing dropped that any swept value would keep). Every tried parameter set then only re-selects and
re-fuses those boxes, exactly as ``autounet predict`` would with that set, and is scored by AP at IoU 0.1
over the cases. The parameters are chosen one after the other (:data:`SWEEP_GRID`, in the order of
:data:`~autounet.detection.inference_parameters.SWEPT_PARAMETERS`), each keeping the others as chosen so far;
a value replaces the current one only when it scores strictly higher, and values are tried nearest to the
plan's default first, so ties stay with the defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from autounet.detection.detections import fusion_settings
from autounet.detection.inference_parameters import SWEPT_PARAMETERS, SweepTrial, SweptInference
from autounet.detection.retina_unet import PostprocessSettings, window_settings
from autounet.evaluation.detection import ImageDetections, evaluate_detections
from autounet.inference.box_prediction import WindowDetections
from autounet.planning.plans import DetectionInference

__all__ = ["SWEEP_GRID", "SweepCase", "evaluate_parameters", "raw_window_settings", "sweep_inference_parameters"]

SWEEP_GRID: Mapping[str, tuple[float, ...]] = {
    "score_threshold": (0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
    "nms_iou": (0.0, 0.1, 0.2, 0.4, 0.6),
    "cluster_iou": (0.0, 0.1, 0.2, 0.4, 0.6),
    "min_size": (0.0, 1.0, 2.0, 4.0),
    "detections_per_image": (5, 20, 100),
}
"""Values tried per parameter (the plan's default is always tried too)."""

_MIN_GAIN = 1e-9  # AP differences below this are rounding, not improvements (they would leave the defaults)
_RAW_SCORE_THRESHOLD = 0.01  # the lowest per-window threshold any parameter set decodes with (window_settings)


@dataclass(frozen=True)
class SweepCase:
    """One validation case: its window passes' candidate boxes and its reference boxes (same voxel grid).

    Attributes:
        windows: Candidates of every window pass, decoded with :func:`raw_window_settings`.
        gt_boxes: ``(M, 2 * ndim)`` reference boxes.
        gt_classes: ``(M,)`` their classes (from 0).
    """

    windows: WindowDetections
    gt_boxes: np.ndarray
    gt_classes: np.ndarray


def raw_window_settings(defaults: DetectionInference, class_evidence: bool) -> PostprocessSettings:
    """Per-window decoding that keeps every box any swept parameter set could keep: the lowest score threshold
    and size of :func:`~autounet.detection.retina_unet.window_settings`, the plan's candidates per level, no
    NMS and no limit per window."""
    return PostprocessSettings(score_threshold=_RAW_SCORE_THRESHOLD, topk_per_level=defaults.candidates_per_level,
                               nms_iou=1.0, detections_per_image=2**31 - 1, min_size=0.01,
                               class_evidence=class_evidence)


def evaluate_parameters(cases: Sequence[SweepCase], parameters: DetectionInference, num_classes: int) -> float:
    """AP at IoU 0.1 over the cases with the boxes ``autounet predict`` would keep with ``parameters``
    (NaN when no case has a reference box)."""
    select, fusion = window_settings(parameters), fusion_settings(parameters)
    images = []
    for case in cases:
        found = case.windows.fuse(fusion, select)
        images.append(ImageDetections(found.boxes.numpy(), found.scores.numpy(), found.classes.numpy(),
                                      case.gt_boxes, case.gt_classes))
    return evaluate_detections(images, classes=range(num_classes)).ap_at_0_1


def sweep_inference_parameters(cases: Sequence[SweepCase], defaults: DetectionInference, num_classes: int,
                               grid: Mapping[str, Sequence[float]] = SWEEP_GRID) -> SweptInference:
    """Choose the inference parameters maximising the validation AP at IoU 0.1 (see the module docstring).

    Args:
        cases: The validation cases.
        defaults: The plan's parameters: the starting point, and the winner of every tie.
        num_classes: Object classes.
        grid: Values tried per parameter; parameters it does not name keep their default.

    Returns:
        The chosen parameters with the default and chosen APs and every trial; the defaults unchanged (APs
        ``None``) when no validation case has a reference box.
    """
    best = evaluate_parameters(cases, defaults, num_classes)
    if math.isnan(best):
        return SweptInference(parameters=defaults, num_cases=len(cases))
    ap_default, chosen, trials = best, defaults, []
    for name in SWEPT_PARAMETERS:
        current = getattr(chosen, name)
        values = sorted({*grid.get(name, ()), current}, key=lambda value: (abs(value - current), value))
        for value in values:
            candidate = replace(chosen, **{name: type(current)(value)})
            ap = best if value == current else evaluate_parameters(cases, candidate, num_classes)
            trials.append(SweepTrial(name, float(value), None if math.isnan(ap) else ap))
            if ap > best + _MIN_GAIN:
                best, chosen = ap, candidate
    return SweptInference(parameters=chosen, ap_default=ap_default, ap_swept=best, num_cases=len(cases),
                          trials=tuple(trials))
