"""Axis-aligned boxes in voxel coordinates for 2D and 3D images: overlap, size, clipping, derivation.

Convention (the one statement of it for ``autounet.detection`` and ``autounet.evaluation.detection``): a
box is the row ``(y1, x1, y2, x2)`` for 2D images and ``(z1, y1, x1, z2, y2, x2)`` for 3D images, in
voxels along the array axes ``(Z, Y, X)`` of ``autounet.typing``, **half-open**: it covers the voxel
indices ``z1 <= z < z2`` (and so on), so an instance occupying voxels 3..5 on an axis has ``(3, 6)`` there,
its extent is ``z2 - z1`` voxels and its volume is the product of the extents. Coordinates are floats so
that predicted boxes may lie between voxel edges; a box with ``z2 <= z1`` on any axis is empty. The number
of spatial axes is ``boxes.shape[-1] // 2``; every function works for 2D and 3D alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "box_centers",
    "box_iou",
    "box_sizes",
    "box_volume",
    "clip_boxes_to_image",
    "flip_boxes",
    "generalized_box_iou",
    "generalized_box_iou_loss",
    "instances_to_boxes",
    "remove_small_boxes",
    "spatial_dims",
]


def spatial_dims(boxes: torch.Tensor) -> int:
    """Number of spatial axes (2 or 3) of boxes of shape ``(..., 2 * ndim)``.

    Raises:
        ValueError: The last axis is not 4 or 6 long.
    """
    width = boxes.shape[-1]
    if width not in (4, 6):
        raise ValueError(f"boxes must have 4 (2D) or 6 (3D) coordinates, got {width}")
    return width // 2


def box_sizes(boxes: torch.Tensor) -> torch.Tensor:
    """Extent per axis ``(..., ndim)`` of boxes ``(..., 2 * ndim)``; negative for inverted boxes."""
    ndim = spatial_dims(boxes)
    return boxes[..., ndim:] - boxes[..., :ndim]


def box_centers(boxes: torch.Tensor) -> torch.Tensor:
    """Centre per axis ``(..., ndim)`` of boxes ``(..., 2 * ndim)``, in voxel-edge coordinates."""
    ndim = spatial_dims(boxes)
    return (boxes[..., ndim:] + boxes[..., :ndim]) / 2


def box_volume(boxes: torch.Tensor) -> torch.Tensor:
    """Area (2D) or volume (3D) in voxels of boxes ``(..., 2 * ndim)``; empty boxes have 0."""
    return box_sizes(boxes).clamp(min=0).prod(dim=-1)


def _intersection_and_union(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ndim = spatial_dims(boxes1)
    if spatial_dims(boxes2) != ndim:
        raise ValueError(f"cannot compare {ndim}D boxes with {spatial_dims(boxes2)}D boxes")
    low = torch.maximum(boxes1[:, None, :ndim], boxes2[None, :, :ndim])
    high = torch.minimum(boxes1[:, None, ndim:], boxes2[None, :, ndim:])
    intersection = (high - low).clamp(min=0).prod(dim=-1)
    union = box_volume(boxes1)[:, None] + box_volume(boxes2)[None, :] - intersection
    return intersection, union


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over union.

    Args:
        boxes1: ``(N, 2 * ndim)`` boxes.
        boxes2: ``(M, 2 * ndim)`` boxes of the same dimensionality.

    Returns:
        ``(N, M)`` IoU in [0, 1]; 0 where the union is empty (two empty boxes).
    """
    intersection, union = _intersection_and_union(boxes1, boxes2)
    return torch.where(union > 0, intersection / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise generalised IoU (Rezatofighi et al. 2019): IoU minus the empty share of the enclosing box.

    Args:
        boxes1: ``(N, 2 * ndim)`` boxes.
        boxes2: ``(M, 2 * ndim)`` boxes of the same dimensionality.

    Returns:
        ``(N, M)`` GIoU in [-1, 1].
    """
    ndim = spatial_dims(boxes1)
    intersection, union = _intersection_and_union(boxes1, boxes2)
    tiny = torch.finfo(union.dtype).tiny
    iou = torch.where(union > 0, intersection / union.clamp(min=tiny), 0.0)
    low = torch.minimum(boxes1[:, None, :ndim], boxes2[None, :, :ndim])
    high = torch.maximum(boxes1[:, None, ndim:], boxes2[None, :, ndim:])
    enclosing = (high - low).clamp(min=0).prod(dim=-1)
    return iou - torch.where(enclosing > 0, (enclosing - union) / enclosing.clamp(min=tiny), 0.0)


def generalized_box_iou_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Element-wise ``1 - GIoU`` of matched box pairs, the box-regression loss of Retina U-Net.

    Args:
        predicted: ``(N, 2 * ndim)`` predicted boxes.
        target: ``(N, 2 * ndim)`` target boxes, row ``i`` matched to ``predicted[i]``.

    Returns:
        ``(N,)`` losses in [0, 2]; reduce them as the caller needs.
    """
    if predicted.shape != target.shape:
        raise ValueError(f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} boxes differ")
    ndim = spatial_dims(predicted)
    tiny = torch.finfo(predicted.dtype).tiny
    low = torch.maximum(predicted[:, :ndim], target[:, :ndim])
    high = torch.minimum(predicted[:, ndim:], target[:, ndim:])
    intersection = (high - low).clamp(min=0).prod(dim=-1)
    union = box_volume(predicted) + box_volume(target) - intersection
    enclosing = (torch.maximum(predicted[:, ndim:], target[:, ndim:])
                 - torch.minimum(predicted[:, :ndim], target[:, :ndim])).clamp(min=0).prod(dim=-1)
    iou = intersection / union.clamp(min=tiny)
    return 1 - (iou - (enclosing - union) / enclosing.clamp(min=tiny))


def clip_boxes_to_image(boxes: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Boxes clipped to an image of spatial ``shape`` (``(Y, X)`` or ``(Z, Y, X)``), as a new tensor."""
    ndim = spatial_dims(boxes)
    if len(shape) != ndim:
        raise ValueError(f"{ndim}D boxes cannot be clipped to a shape of {len(shape)} axes: {tuple(shape)}")
    upper = torch.tensor([float(s) for s in shape], dtype=boxes.dtype, device=boxes.device)
    clipped = boxes.clone()
    clipped[..., :ndim] = torch.minimum(boxes[..., :ndim].clamp(min=0), upper)
    clipped[..., ndim:] = torch.minimum(boxes[..., ndim:].clamp(min=0), upper)
    return clipped


def remove_small_boxes(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """Indices of the boxes whose extent is at least ``min_size`` voxels along every axis."""
    return torch.nonzero((box_sizes(boxes) >= min_size).all(dim=-1)).flatten()


def flip_boxes(boxes: torch.Tensor, shape: Sequence[int], axes: Sequence[int]) -> torch.Tensor:
    """Boxes of an image of spatial ``shape`` after mirroring the image along spatial ``axes``.

    Args:
        boxes: ``(..., 2 * ndim)`` boxes.
        shape: Spatial shape of the image, ``(Y, X)`` or ``(Z, Y, X)``.
        axes: Spatial axes mirrored (0 = first spatial axis), as ``torch.flip`` on the spatial array.

    Returns:
        The mirrored boxes; applying the same flip twice gives the input back.
    """
    ndim = spatial_dims(boxes)
    flipped = boxes.clone()
    for axis in axes:
        if not 0 <= axis < ndim:
            raise ValueError(f"axis {axis} is not a spatial axis of {ndim}D boxes")
        # Half-open boxes: [a, b) mirrors to [S - b, S - a).
        flipped[..., axis] = shape[axis] - boxes[..., axis + ndim]
        flipped[..., axis + ndim] = shape[axis] - boxes[..., axis]
    return flipped


def instances_to_boxes(instance_map: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact half-open box of every instance of an instance map.

    Derived from the voxels themselves, so after any spatial step (crop, flip, rotation, elastic
    deformation, resampling) the boxes of the transformed map are the boxes of the transformed objects;
    an instance cut away entirely has no box.

    Args:
        instance_map: Integer array ``(Y, X)`` or ``(Z, Y, X)``: 0 background, ``k > 0`` instance ``k``.

    Returns:
        ``(boxes, ids)``: ``(N, 2 * ndim)`` float32 boxes and ``(N,)`` int64 instance ids, one row per id
        present, in increasing id order.
    """
    array = instance_map.detach().cpu().numpy() if isinstance(instance_map, torch.Tensor) else instance_map
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ValueError(f"instance maps are 2D or 3D, got shape {array.shape}")
    if array.size and array.min() < 0:
        raise ValueError(f"instance ids must be non-negative, found {array.min()}")
    slices = ndimage.find_objects(array.astype(np.int64, copy=False)) if array.size else []
    rows, ids = [], []
    for index, found in enumerate(slices):
        if found is not None:
            rows.append([s.start for s in found] + [s.stop for s in found])
            ids.append(index + 1)
    boxes = torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 2 * array.ndim)
    return boxes, torch.tensor(ids, dtype=torch.int64)
