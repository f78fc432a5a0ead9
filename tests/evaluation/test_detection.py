from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest

from autounet.evaluation.detection import (
    MAP_IOU_THRESHOLDS,
    ImageDetections,
    average_precision,
    evaluate_detections,
    match_class,
)


def _image(pred: list[list[float]], scores: list[float], pred_classes: list[int], gt: list[list[float]],
           gt_classes: list[int], ndim: int = 3) -> ImageDetections:
    return ImageDetections(np.array(pred, dtype=float).reshape(-1, 2 * ndim), np.array(scores, dtype=float),
                           np.array(pred_classes, dtype=int), np.array(gt, dtype=float).reshape(-1, 2 * ndim),
                           np.array(gt_classes, dtype=int))


def _hand_made_3d() -> list[ImageDetections]:
    # Image 1: p1 overlaps g1 with IoU 800/1200 (score 0.9); p2 is a false positive (0.8).
    # Image 2: p3 overlaps g2 with IoU 500/1500 (0.7); a class-1 false positive (0.85), no class-1 truth.
    first = _image([[0, 0, 2, 10, 10, 12], [50, 50, 50, 54, 54, 54]], [0.9, 0.8], [0, 0],
                   [[0, 0, 0, 10, 10, 10]], [0])
    second = _image([[20, 20, 25, 30, 30, 35], [60, 60, 60, 62, 62, 62]], [0.7, 0.85], [0, 1],
                    [[20, 20, 20, 30, 30, 30]], [0])
    return [first, second]


def test_hand_computed_3d() -> None:
    metrics = evaluate_detections(_hand_made_3d())
    # IoU <= 1/3: TP, FP, TP -> precision envelope 1 up to recall 0.5 (51 points), 2/3 above (50 points).
    high = (51 + 50 * 2 / 3) / 101
    low = 51 / 101  # above IoU 1/3 p3 misses: recall stops at 0.5
    assert metrics.ap_per_class[0] == pytest.approx(high)
    assert math.isnan(metrics.ap_per_class[1]) and metrics.ap_at_0_1 == pytest.approx(high)
    assert sum(t <= 1 / 3 for t in MAP_IOU_THRESHOLDS) == 5
    assert metrics.mean_ap == pytest.approx((5 * high + 4 * low) / 9)
    # Class 0 alone: 1 FP in 2 images before the second hit -> sensitivity 0.5 below 1/2 FPPI, 1 from 1/2 on.
    assert metrics.froc_per_class[0] == pytest.approx((0.5, 0.5, 1, 1, 1, 1, 1))
    # Pooled with the class-1 FP (0.85): the second hit comes at 1 FPPI.
    assert metrics.froc_pooled == pytest.approx((0.5, 0.5, 0.5, 1, 1, 1, 1))
    assert metrics.froc_score == pytest.approx(5.5 / 7)
    assert metrics.to_json_dict()["per_class"]["1"]["AP_IoU_0.10"] is None


def test_max_detections_per_image_and_empty_cases() -> None:
    gt = [[0, 0, 0, 4, 4, 4]]
    image = _image([[10, 10, 10, 12, 12, 12], [11, 11, 11, 13, 13, 13], [0, 0, 0, 4, 4, 4]], [0.9, 0.8, 0.7],
                   [0, 0, 0], gt, [0])
    assert average_precision(match_class([image], 0, 0.1, max_detections=2)) == 0.0
    assert average_precision(match_class([image], 0, 0.1, max_detections=3)) == pytest.approx(1 / 3)
    missed = _image([], [], [], gt, [0])
    assert evaluate_detections([missed]).ap_at_0_1 == 0.0
    assert evaluate_detections([missed]).froc_score == 0.0


def _random_2d_images(seed: int, num_images: int = 6, num_classes: int = 3) -> list[ImageDetections]:
    rng = np.random.default_rng(seed)
    images = []
    for index in range(num_images):
        count = int(rng.integers(0, 6))
        low = rng.uniform(0, 80, (count, 2))
        gt = np.concatenate([low, low + rng.uniform(3, 25, (count, 2))], axis=1)
        gt_classes = rng.integers(0, num_classes, count)
        keep = rng.random(count) < 0.8
        pred = gt[keep] + rng.normal(0, 3, (int(keep.sum()), 4))
        pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
        extra = 130 if index == 0 else int(rng.integers(0, 5))  # > 100 detections exercise MaxDet
        low = rng.uniform(0, 90, (extra, 2))
        pred = np.concatenate([pred, np.concatenate([low, low + rng.uniform(2, 20, (extra, 2))], axis=1)])
        classes = np.concatenate([gt_classes[keep], rng.integers(0, num_classes, extra)])
        if index == 0:
            classes[-extra:] = 0
        images.append(ImageDetections(pred, rng.random(len(pred)), classes, gt, gt_classes))
    return images


def _coco_ap(images: list[ImageDetections], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' AP per IoU threshold and class (NaN where a class has no ground truth)."""
    coco_module = pytest.importorskip("pycocotools.coco")
    cocoeval_module = pytest.importorskip("pycocotools.cocoeval")

    def xywh(box: np.ndarray) -> list[float]:
        y1, x1, y2, x2 = (float(v) for v in box)
        return [x1, y1, x2 - x1, y2 - y1]

    annotations, results = [], []
    for image_id, image in enumerate(images, start=1):
        for box, category in zip(image.gt_boxes, image.gt_classes, strict=True):
            bbox = xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(category) + 1,
                                "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})
        for box, score, category in zip(image.pred_boxes, image.pred_scores, image.pred_classes, strict=True):
            results.append({"image_id": image_id, "category_id": int(category) + 1, "bbox": xywh(box),
                            "score": float(score)})
    with contextlib.redirect_stdout(io.StringIO()):
        truth = coco_module.COCO()
        truth.dataset = {"images": [{"id": i} for i in range(1, len(images) + 1)], "annotations": annotations,
                         "categories": [{"id": c + 1} for c in range(num_classes)]}
        truth.createIndex()
        evaluation = cocoeval_module.COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.params.iouThrs = np.array(MAP_IOU_THRESHOLDS)
        evaluation.params.maxDets = [100]
        evaluation.params.areaRng = [[0, 1e10]]
        evaluation.params.areaRngLbl = ["all"]
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][:, :, :, 0, 0]  # (T, R, K)
    valid = (precision > -1).any(axis=1)
    return np.where(valid, np.where(precision > -1, precision, 0).mean(axis=1), np.nan), valid


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_pycocotools(seed: int) -> None:
    images = _random_2d_images(seed)
    expected, valid = _coco_ap(images, 3)
    for class_id in range(3):
        for t, threshold in enumerate(MAP_IOU_THRESHOLDS):
            ours = average_precision(match_class(images, class_id, threshold))
            if valid[t, class_id]:
                assert ours == pytest.approx(expected[t, class_id], abs=1e-12), (class_id, threshold)
            else:
                assert math.isnan(ours)
    metrics = evaluate_detections(images, classes=[0, 1, 2])
    assert metrics.ap_at_0_1 == pytest.approx(np.nanmean(expected[0]), abs=1e-12)
    assert metrics.mean_ap == pytest.approx(np.nanmean(expected.mean(axis=0)), abs=1e-12)
