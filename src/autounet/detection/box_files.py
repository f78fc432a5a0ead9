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
from autounet.io.schema import Fields, ListOf, Number, check_json

__all__ = ["BOXES_SCHEMA_VERSION", "BOX_FILE_SUFFIX", "BOX_MAP_SUFFIX", "OriginalBox", "box_file_name",
           "box_map_name", "boxes_in_world", "paint_boxes", "read_boxes_json", "write_boxes_json"]

BOXES_SCHEMA_VERSION = 1
BOX_FILE_SUFFIX = "_boxes.json"
BOX_MAP_SUFFIX = "_boxes"
# Class indices index per-class results; beyond this a value is a foreign or damaged file, not a class.
MAX_BOX_CLASS = 2**16 - 1
_BOX = Fields(required={"voxel_box": ListOf(Number()), "score": Number(),
                        "class": Number(integer=True, minimum=0, maximum=MAX_BOX_CLASS)})


def box_file_name(case_id: str) -> str:
    """The box file of a case: ``<case>_boxes.json``."""
    return f"{case_id}{BOX_FILE_SUFFIX}"


def box_map_name(case_id: str, file_ending: str) -> str:
    """The label map of a case's boxes: ``<case>_boxes<file ending>``."""
    return f"{case_id}{BOX_MAP_SUFFIX}{file_ending}"


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


def paint_boxes(boxes: Sequence[OriginalBox], shape: Sequence[int], min_score: float = 0.5) -> np.ndarray:
    """A label map of the boxes scoring at least ``min_score``: each box's voxels (those whose centres lie
    inside it) get its class's label (class + 1); where boxes overlap, the higher score wins.

    Args:
        boxes: A case's boxes in its voxel grid (voxel-edge coordinates, half-open).
        shape: The image's spatial shape.
        min_score: Boxes scoring lower are not painted.

    Returns:
        ``uint8`` (``uint16`` beyond 254 classes) map of ``shape``, 0 outside every box.
    """
    kept = sorted((box for box in boxes if box.score >= min_score), key=lambda box: box.score)
    top = max((box.class_index for box in kept), default=0) + 1
    label_map = np.zeros(tuple(shape), dtype=np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16)
    ndim = len(label_map.shape)
    for box in kept:  # by increasing score: higher scores are painted over lower ones
        # Voxel i spans the edges [i, i + 1): inside when its centre i + 0.5 lies in [lower, upper).
        lower = np.ceil(np.asarray(box.voxel_box[:ndim]) - 0.5).astype(np.int64)
        upper = np.ceil(np.asarray(box.voxel_box[ndim:]) - 0.5).astype(np.int64)
        window = tuple(slice(max(int(a), 0), max(int(b), 0)) for a, b in zip(lower, upper, strict=True))
        label_map[window] = box.class_index + 1
    return label_map


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
        DatasetError: Unreadable JSON, a newer schema, or boxes without the expected fields and shapes (finite
            numbers, classes integers from 0, upper corners not below lower ones), naming the field.
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
        check_json(data["boxes"], ListOf(_BOX), path, "boxes")
    except ConfigError as error:
        raise DatasetError(error.problem, path) from None
    boxes_list = data["boxes"]
    scores = np.asarray([float(box["score"]) for box in boxes_list], dtype=np.float64)
    classes = np.asarray([int(box["class"]) for box in boxes_list], dtype=np.int64)
    if not boxes_list:
        return np.zeros((0, 4)), scores, classes
    lengths = {len(box["voxel_box"]) for box in boxes_list}
    if len(lengths) != 1 or not lengths <= {4, 6}:
        raise DatasetError("voxel boxes must have 4 (2D) or 6 (3D) numbers, the same count in every box", path)
    boxes = np.asarray([[float(v) for v in box["voxel_box"]] for box in boxes_list], dtype=np.float64)
    ndim = boxes.shape[1] // 2
    inverted = np.flatnonzero((boxes[:, ndim:] < boxes[:, :ndim]).any(axis=1))
    if len(inverted):
        raise DatasetError(f"box {int(inverted[0])} ends before it starts ({boxes[inverted[0]].tolist()}); boxes "
                           "are (lower corner, upper corner)", path)
    return boxes, scores, classes
