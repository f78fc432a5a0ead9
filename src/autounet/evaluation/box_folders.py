"""Detection scores of a folder of box files against a folder of instance references.

References are instance maps with their per-case JSON (``<case><ending>`` + ``<case>.json``, nnDetection's and
autounet's ``labelsTs`` layout); their boxes are the exact boxes of the instances. Predictions are box files
(``<case>_boxes.json``, :mod:`autounet.detection.box_files`) from a detector or from a segmentation's
connected components. Every reference case counts, also one without a box file (no detections), so false
positives per image are per reference image, as nnDetection counts them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autounet.dataset.nndet import read_instances_json
from autounet.detection.box_files import BOX_FILE_SUFFIX, read_boxes_json
from autounet.detection.boxes import instances_to_boxes
from autounet.errors import DatasetError
from autounet.evaluation.detection import DetectionMetrics, ImageDetections, evaluate_detections
from autounet.io.images import read_segmentation, split_ending
from autounet.io.jsonio import write_json
from autounet.progress import progress

__all__ = ["DETECTION_SUMMARY_FILE", "BoxEvaluation", "evaluate_box_folders"]

logger = logging.getLogger(__name__)

DETECTION_SUMMARY_FILE = "detection_summary.json"
# Boxes are found per instance id up to the largest one (a list that long); instance maps number their
# instances 1, 2, ..., so a larger id is not an instance map (a CT in HU, a probability map).
MAX_INSTANCE_ID = 2**20


@dataclass(frozen=True)
class BoxEvaluation:
    """What :func:`evaluate_box_folders` found.

    Attributes:
        metrics: AP, mAP and FROC per class and summarised.
        cases: Reference cases scored (with or without a box file).
        without_predictions: Reference cases that had no box file (scored as no detections).
        summary_file: Where the JSON went.
    """

    metrics: DetectionMetrics
    cases: tuple[str, ...]
    without_predictions: tuple[str, ...]
    summary_file: Path


def _references(reference_dir: Path) -> dict[str, tuple[Path, Path]]:
    """Case id -> (instance map, instance JSON) of every labelled case in the folder."""
    if not reference_dir.is_dir():
        raise DatasetError("folder not found", reference_dir)
    found = {}
    for path in sorted(reference_dir.iterdir()):
        parts = split_ending(path.name)
        if parts is None or not path.is_file() or path.name.startswith("."):
            continue
        json_file = reference_dir / f"{parts[0]}.json"
        if json_file.is_file():
            found[parts[0]] = (path, json_file)
    if not found:
        raise DatasetError("no instance references (<case><ending> with <case>.json) found", reference_dir)
    return found


def _instance_map(path: Path) -> np.ndarray:
    """A reference instance map, checked: integer ids from 0 (background) to :data:`MAX_INSTANCE_ID`.

    Raises:
        DatasetError: Non-integer, negative or absurdly large values, naming the file.
    """
    instance_map, _ = read_segmentation(path)
    if not instance_map.size:
        return instance_map.astype(np.int64)
    if instance_map.dtype.kind not in "iub" and not np.array_equal(instance_map, np.round(instance_map)):
        raise DatasetError("instance map holds non-integer values; instance ids are integers", path)
    low, high = instance_map.min(), instance_map.max()
    if low < 0 or high > MAX_INSTANCE_ID:
        raise DatasetError(f"instance map holds the value {low if low < 0 else high:g}; instance ids run from 1 "
                           f"(0 is background) to at most {MAX_INSTANCE_ID}: is it an instance map?", path)
    return instance_map.astype(np.int64)


def evaluate_box_folders(reference_dir: Path, prediction_dir: Path, output_dir: Path | None = None,
                         classes: tuple[int, ...] | None = None, max_detections: int = 100) -> BoxEvaluation:
    """AP at IoU 0.1, mAP over IoU 0.1:0.5 and FROC of the box files in ``prediction_dir``; writes
    :data:`DETECTION_SUMMARY_FILE`.

    Args:
        reference_dir: Instance maps and their JSON.
        prediction_dir: ``<case>_boxes.json`` files.
        output_dir: Where the summary goes (default: ``prediction_dir``).
        classes: Classes to score (from 0); default: every class seen.
        max_detections: Detections kept per image and class.

    Raises:
        DatasetError: A missing folder, no references, unreadable files, a reference that is no instance map,
            or box files of another dimensionality than their reference.
    """
    reference_dir, prediction_dir = Path(reference_dir), Path(prediction_dir)
    if not prediction_dir.is_dir():
        raise DatasetError("folder not found", prediction_dir)
    references = _references(reference_dir)
    predicted = {p.name[:-len(BOX_FILE_SUFFIX)]: p for p in prediction_dir.glob(f"*{BOX_FILE_SUFFIX}")}
    strays = sorted(set(predicted) - set(references))
    if strays:
        logger.warning("%d box file(s) have no reference and are not scored: %s", len(strays), ", ".join(strays))
    images, missing = [], []
    for case_id, (label_file, json_file) in progress(references.items(), "Scoring boxes", total=len(references)):
        instance_map = _instance_map(label_file)
        gt_boxes, ids = instances_to_boxes(instance_map)
        classes_of = read_instances_json(json_file)
        gt_classes = np.asarray([classes_of.get(int(i), -1) for i in ids.tolist()], dtype=np.int64)
        ndim = gt_boxes.shape[1] // 2 if len(gt_boxes) else instance_map.ndim
        if case_id in predicted:
            boxes, scores, pred_classes = read_boxes_json(predicted[case_id])
            if len(boxes) and boxes.shape[1] != 2 * ndim:
                raise DatasetError(f"{boxes.shape[1] // 2}D boxes for a {ndim}D reference ({label_file})",
                                   predicted[case_id])
        else:
            missing.append(case_id)
            boxes, scores, pred_classes = np.zeros((0, 2 * ndim)), np.zeros(0), np.zeros(0, dtype=np.int64)
        images.append(ImageDetections(boxes.reshape(-1, 2 * ndim), scores, pred_classes,
                                      gt_boxes.numpy().astype(np.float64).reshape(-1, 2 * ndim), gt_classes))
    if missing:
        logger.warning("%d reference case(s) have no box file and count as without detections: %s", len(missing),
                       ", ".join(missing))
    metrics = evaluate_detections(images, classes, max_detections)
    output = Path(output_dir) if output_dir is not None else prediction_dir
    summary_file = output / DETECTION_SUMMARY_FILE
    write_json(summary_file, {**metrics.to_json_dict(), "cases": len(images), "without_predictions": missing})
    return BoxEvaluation(metrics, tuple(references), tuple(missing), summary_file)
