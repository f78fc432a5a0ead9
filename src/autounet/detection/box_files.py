"""Box files: a case's detections as JSON, written by ``predict`` and read by ``evaluate``.

``<case>_boxes.json`` holds ``{"schema_version": 1, "boxes": [{"voxel_box", "world_center", "world_size",
"class", "label", "score"}, ...]}`` by decreasing score; ``voxel_box`` is half-open in the input image's array
axes and voxel-edge coordinates, so boxes from a detector and from a segmentation (connected components of
its probabilities) are scored alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autounet.errors import ConfigError, DatasetError
from autounet.io.geometry import ImageGeometry
from autounet.io.jsonio import read_json, write_json

__all__ = ["BOXES_SCHEMA_VERSION", "BOX_FILE_SUFFIX", "OriginalBox", "box_file_name", "boxes_in_world",
           "read_boxes_json", "write_boxes_json"]

BOXES_SCHEMA_VERSION = 1
BOX_FILE_SUFFIX = "_boxes.json"


def box_file_name(case_id: str) -> str:
    """The box file of a case: ``<case>_boxes.json``."""
    return f"{case_id}{BOX_FILE_SUFFIX}"


@dataclass(frozen=True)
class OriginalBox:
    """One detection in the input image.

    Attributes:
        voxel_box: Half-open box in the input's array axes and voxel-edge coordinates (``(z1, y1, x1, z2, y2,
            x2)`` for ``(Z, Y, X)`` arrays), fractional.
        world_center: The box centre in world coordinates (mm, in the image's world frame).
        world_size: The box's extent along each array axis in mm (spacing times voxels).
        class_index: Class counting from 0.
        score: Confidence in ``[0, 1]``.
    """

    voxel_box: tuple[float, ...]
    world_center: tuple[float, ...]
    world_size: tuple[float, ...]
    class_index: int
    score: float


def write_boxes_json(path: Path, boxes: Sequence[OriginalBox], class_names: dict[int, str],
                     source: str | None = None) -> None:
    """Write a case's detections as JSON (atomically): ``{"schema_version", "boxes": [{"voxel_box",
    "world_center", "world_size", "class", "label", "score"}, ...]}`` by decreasing score."""
    data: dict[str, Any] = {"schema_version": BOXES_SCHEMA_VERSION, "boxes": [
        {"voxel_box": list(box.voxel_box), "world_center": list(box.world_center),
         "world_size": list(box.world_size), "class": box.class_index,
         "label": class_names.get(box.class_index, str(box.class_index)), "score": box.score}
        for box in sorted(boxes, key=lambda b: -b.score)]}
    if source is not None:
        data["model"] = source
    write_json(path, data)


def boxes_in_world(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                   geometry: ImageGeometry) -> list[OriginalBox]:
    """Voxel boxes of an image (its array axes, voxel-edge coordinates) with their world centres and sizes.

    Args:
        boxes: ``(N, 2 * ndim)`` half-open voxel boxes.
        scores: ``(N,)`` scores.
        classes: ``(N,)`` classes.
        geometry: The image's geometry.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(len(scores), 2 * geometry.ndim)
    lower, upper = boxes[:, :geometry.ndim], boxes[:, geometry.ndim:]
    to_world = geometry.index_to_world()
    # Voxel-edge coordinate e is array index e - 0.5 (indices address voxel centres).
    centres = (lower + upper) / 2 - 0.5
    world = (to_world[:geometry.ndim, :geometry.ndim] @ centres.T).T + to_world[:geometry.ndim, geometry.ndim]
    sizes = (upper - lower) * np.asarray(geometry.spacing, dtype=np.float64)
    return [OriginalBox(tuple(float(v) for v in box), tuple(float(v) for v in centre),
                        tuple(float(v) for v in size), int(class_index), float(score))
            for box, centre, size, class_index, score in zip(boxes, world, sizes, np.asarray(classes).tolist(),
                                                             np.asarray(scores).tolist(), strict=True)]


def read_boxes_json(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel boxes ``(N, 2 * ndim)``, scores ``(N,)`` and classes ``(N,)`` of a box file.

    Raises:
        DatasetError: Unreadable JSON, a newer schema, or boxes without the expected fields and shapes.
    """
    try:
        data = read_json(path)
    except ConfigError as error:
        raise DatasetError(error.problem, path) from None
    if not isinstance(data, dict) or not isinstance(data.get("boxes"), list):
        raise DatasetError('must hold a "boxes" list', path)
    if not isinstance(data.get("schema_version"), int) or data["schema_version"] > BOXES_SCHEMA_VERSION:
        raise DatasetError(f"box file schema_version {data.get('schema_version')!r} is not one this autounet "
                           f"reads (<= {BOXES_SCHEMA_VERSION})", path)
    try:
        boxes = np.asarray([[float(v) for v in box["voxel_box"]] for box in data["boxes"]], dtype=np.float64)
        scores = np.asarray([float(box["score"]) for box in data["boxes"]], dtype=np.float64)
        classes = np.asarray([int(box["class"]) for box in data["boxes"]], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as error:
        raise DatasetError(f"a box lacks voxel_box, score or class, or has a non-number there ({error})",
                           path) from None
    if not len(scores):
        return np.zeros((0, 4)), scores, classes
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 6) or not (np.isfinite(boxes).all() and
                                                              np.isfinite(scores).all()):
        raise DatasetError("voxel boxes must all have 4 (2D) or 6 (3D) finite numbers, scores finite", path)
    return boxes, scores, classes
