"""Detection metrics: COCO-style average precision at low IoU (nnDetection's main metric) and FROC.

Boxes follow :mod:`autounet.detection.boxes` (``(y1, x1, y2, x2)`` or ``(z1, y1, x1, z2, y2, x2)``,
half-open, voxels). Matching is COCO's, per image and class: detections by decreasing score (at most
``max_detections`` per image and class) each take the still unmatched ground-truth box of highest IoU at
or above the threshold (ties: the later box). Precision and recall are pooled over images;
:func:`average_precision` is COCO's 101-point interpolated AP. A class without ground truth in any image
has no AP (NaN) and is left out of the means, as pycocotools does.

FROC (free-response ROC): sensitivity against false positives per image (FPPI) over the same matches at
IoU 0.1; the sensitivity at an FPPI ``f`` is the highest reached with at most ``f`` FPPI (a step curve,
never interpolated upwards); the FROC score is the mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 FPPI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from autounet.detection.boxes import box_iou

__all__ = [
    "FROC_FPPI",
    "MAP_IOU_THRESHOLDS",
    "ClassMatches",
    "DetectionMetrics",
    "ImageDetections",
    "average_precision",
    "evaluate_detections",
    "froc_sensitivities",
    "match_class",
]

FROC_FPPI: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
MAP_IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 + 0.05 * i, 2) for i in range(9))  # 0.1 .. 0.5
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class ImageDetections:
    """Predicted and ground-truth boxes of one image (one case).

    Attributes:
        pred_boxes: ``(P, 2 * ndim)`` predicted boxes.
        pred_scores: ``(P,)`` confidence scores.
        pred_classes: ``(P,)`` integer classes.
        gt_boxes: ``(G, 2 * ndim)`` ground-truth boxes.
        gt_classes: ``(G,)`` integer classes.
    """

    pred_boxes: np.ndarray
    pred_scores: np.ndarray
    pred_classes: np.ndarray
    gt_boxes: np.ndarray
    gt_classes: np.ndarray


@dataclass(frozen=True)
class ClassMatches:
    """The detections of one class over all images, matched at one IoU threshold.

    Attributes:
        scores: ``(D,)`` scores of the detections kept (at most ``max_detections`` per image).
        true_positive: ``(D,)`` whether each detection matched a ground-truth box.
        num_gt: Number of ground-truth boxes of the class over all images.
        num_images: Number of images evaluated.
    """

    scores: np.ndarray
    true_positive: np.ndarray
    num_gt: int
    num_images: int


def _iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    if len(pred) == 0 or len(gt) == 0:
        return np.zeros((len(pred), len(gt)))
    return box_iou(torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(gt, dtype=torch.float64)).numpy()


def _match_image(image: ImageDetections, class_id: int, iou_threshold: float, max_detections: int
                 ) -> tuple[np.ndarray, np.ndarray, int]:
    pred = np.asarray(image.pred_classes) == class_id
    gt_boxes = np.asarray(image.gt_boxes, dtype=np.float64)[np.asarray(image.gt_classes) == class_id]
    scores = np.asarray(image.pred_scores, dtype=np.float64)[pred]
    order = np.argsort(-scores, kind="mergesort")[:max_detections]
    scores = scores[order]
    overlaps = _iou(np.asarray(image.pred_boxes, dtype=np.float64)[pred][order], gt_boxes)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    hits = np.zeros(len(scores), dtype=bool)
    threshold = min(iou_threshold, 1 - 1e-10)
    for detection in range(len(scores)):
        candidates = np.where(taken, -1.0, overlaps[detection])
        if len(candidates) and candidates.max() >= threshold:
            best = len(candidates) - 1 - int(np.argmax(candidates[::-1]))  # ties go to the later box
            taken[best] = hits[detection] = True
    return scores, hits, len(gt_boxes)


def match_class(images: Sequence[ImageDetections], class_id: int, iou_threshold: float,
                max_detections: int = 100) -> ClassMatches:
    """Match the detections of one class to its ground truth in every image and pool the results.

    Args:
        images: Predictions and ground truth per image.
        class_id: The class evaluated.
        iou_threshold: Minimum IoU of a match.
        max_detections: Highest-scoring detections kept per image for this class.

    Returns:
        Pooled matches, detections ordered by decreasing score (stable over image order).
    """
    per_image = [_match_image(image, class_id, iou_threshold, max_detections) for image in images]
    scores = np.concatenate([s for s, _, _ in per_image]) if per_image else np.zeros(0)
    hits = np.concatenate([h for _, h, _ in per_image]) if per_image else np.zeros(0, dtype=bool)
    order = np.argsort(-scores, kind="mergesort")
    return ClassMatches(scores[order], hits[order], sum(n for _, _, n in per_image), len(images))


def average_precision(matches: ClassMatches) -> float:
    """COCO's 101-point interpolated average precision; NaN without ground truth."""
    if matches.num_gt == 0:
        return math.nan
    if len(matches.scores) == 0:
        return 0.0
    true_positives = np.cumsum(matches.true_positive)
    false_positives = np.cumsum(~matches.true_positive)
    recall = true_positives / matches.num_gt
    precision = true_positives / (true_positives + false_positives + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # precision envelope, non-increasing
    found = np.searchsorted(recall, _RECALL_POINTS, side="left")
    sampled = np.where(found < len(precision), precision[np.minimum(found, len(precision) - 1)], 0.0)
    return float(sampled.mean())


def froc_sensitivities(matches: ClassMatches, fppi: Sequence[float] = FROC_FPPI) -> tuple[float, ...]:
    """Sensitivity at each false-positives-per-image level (step curve); NaN without ground truth."""
    if matches.num_gt == 0:
        return tuple(math.nan for _ in fppi)
    sensitivity = np.concatenate([[0.0], np.cumsum(matches.true_positive) / matches.num_gt])
    false_per_image = np.concatenate([[0.0], np.cumsum(~matches.true_positive) / max(matches.num_images, 1)])
    return tuple(float(sensitivity[false_per_image <= level].max()) for level in fppi)


def _pooled(matches: Sequence[ClassMatches]) -> ClassMatches:
    scores = np.concatenate([m.scores for m in matches])
    hits = np.concatenate([m.true_positive for m in matches])
    order = np.argsort(-scores, kind="mergesort")
    return ClassMatches(scores[order], hits[order], sum(m.num_gt for m in matches), matches[0].num_images)


@dataclass(frozen=True)
class DetectionMetrics:
    """Detection metrics per class and summarised.

    Attributes:
        ap_per_class: Class -> AP at IoU 0.1 (NaN without ground truth).
        map_per_class: Class -> AP averaged over IoU 0.1:0.5:0.05.
        froc_per_class: Class -> sensitivity at each of :data:`FROC_FPPI`.
        froc_pooled: Sensitivities with the matches of all classes pooled.
        ap_at_0_1: Mean AP at IoU 0.1 over classes with ground truth (nnDetection's main metric).
        mean_ap: Mean of ``map_per_class`` over classes with ground truth.
        froc_score: Mean of ``froc_pooled``.
    """

    ap_per_class: dict[int, float]
    map_per_class: dict[int, float]
    froc_per_class: dict[int, tuple[float, ...]]
    froc_pooled: tuple[float, ...]
    ap_at_0_1: float
    mean_ap: float
    froc_score: float

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready content; NaN (no ground truth) becomes ``None``."""
        def clean(value: float) -> float | None:
            return None if math.isnan(value) else value
        return {"AP_IoU_0.10_MaxDet_100": clean(self.ap_at_0_1), "mAP_IoU_0.10_0.50_0.05_MaxDet_100":
                clean(self.mean_ap), "FROC_score_IoU_0.10": clean(self.froc_score),
                "FROC_fppi": list(FROC_FPPI), "FROC_sensitivity": [clean(v) for v in self.froc_pooled],
                "per_class": {str(c): {"AP_IoU_0.10": clean(self.ap_per_class[c]),
                                       "mAP_IoU_0.10_0.50": clean(self.map_per_class[c]),
                                       "FROC_sensitivity": [clean(v) for v in self.froc_per_class[c]]}
                              for c in sorted(self.ap_per_class)}}


def _nan_mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def evaluate_detections(images: Sequence[ImageDetections], classes: Sequence[int] | None = None,
                        max_detections: int = 100) -> DetectionMetrics:
    """AP at IoU 0.1, mAP over IoU 0.1:0.5:0.05 and FROC for a set of images.

    Args:
        images: Predictions and ground truth per image; images without either still count for FPPI.
        classes: Classes to evaluate; by default every class seen in ground truth or predictions.
        max_detections: Detections kept per image and class (COCO's ``maxDets``; 100 as in nnDetection).

    Returns:
        The metrics per class and summarised.
    """
    if not images:
        raise ValueError("no images to evaluate")
    if classes is None:
        seen = set()
        for image in images:
            seen.update(int(c) for c in np.asarray(image.gt_classes))
            seen.update(int(c) for c in np.asarray(image.pred_classes))
        classes = sorted(seen)
    ap, mean_ap, froc, at_0_1 = {}, {}, {}, []
    for class_id in classes:
        by_threshold = [match_class(images, class_id, t, max_detections) for t in MAP_IOU_THRESHOLDS]
        ap[class_id] = average_precision(by_threshold[0])
        mean_ap[class_id] = _nan_mean([average_precision(m) for m in by_threshold])
        froc[class_id] = froc_sensitivities(by_threshold[0])
        at_0_1.append(by_threshold[0])
    pooled = froc_sensitivities(_pooled(at_0_1)) if at_0_1 else tuple(math.nan for _ in FROC_FPPI)
    return DetectionMetrics(ap, mean_ap, froc, pooled, _nan_mean(list(ap.values())),
                            _nan_mean(list(mean_ap.values())), _nan_mean(list(pooled)))
