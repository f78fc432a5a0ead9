"""Class evidence for boxes from a class segmentation: what share of each class the segmentation sees inside a box.

A Retina U-Net's classification head decides the class of an anchor from features at stride 4 and coarser;
classes that differ only in fine detail (nnDetection's toy: a square and a square with a one-voxel-wide hole
seen at stride 4) are hard for it, while a segmentation head decides every voxel at full resolution with
dense supervision. When the auxiliary head segments the classes, a box's class scores are its objectness
(the best class score of its anchor) times the share of each class in the mean segmentation probability
inside the box. Box sums use a summed-volume table, so every box costs the same whatever its size.
"""

from __future__ import annotations

import torch

from autounet.detection.boxes import spatial_dims

__all__ = ["box_mean_probabilities", "class_shares"]


def _summed_volume(values: torch.Tensor) -> torch.Tensor:
    """Inclusive prefix sums over the spatial axes of ``(C, *spatial)``, zero-padded in front of every axis."""
    table = values.double()
    for axis in range(1, values.ndim):
        table = table.cumsum(dim=axis)
    return torch.nn.functional.pad(table, [1, 0] * (values.ndim - 1))


def box_mean_probabilities(probabilities: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Mean of every channel over the voxels of every box.

    A box covers the voxels whose index lies in ``[round(lower), round(upper))`` per axis, clamped to the
    image and at least one voxel wide, so tiny or outside boxes still read the nearest voxel.

    Args:
        probabilities: ``(C, *spatial)`` values (2D or 3D).
        boxes: ``(N, 2 * ndim)`` half-open voxel boxes (:mod:`autounet.detection.boxes`).

    Returns:
        ``(N, C)`` float32 means.

    Raises:
        ValueError: Boxes and probabilities differ in dimensionality.
    """
    ndim = probabilities.ndim - 1
    if spatial_dims(boxes) != ndim:
        raise ValueError(f"{spatial_dims(boxes)}D boxes for {ndim}D probabilities")
    if len(boxes) == 0:
        return probabilities.new_zeros((0, probabilities.shape[0]), dtype=torch.float32)
    shape = torch.as_tensor(probabilities.shape[1:], device=boxes.device)
    lower = torch.minimum(torch.round(boxes[:, :ndim]).long().clamp(min=0), shape - 1)
    upper = torch.maximum(torch.minimum(torch.round(boxes[:, ndim:]).long(), shape), lower + 1)
    table = _summed_volume(probabilities).to(boxes.device)
    total = torch.zeros((len(boxes), probabilities.shape[0]), dtype=table.dtype, device=boxes.device)
    # Inclusion-exclusion over the 2**ndim corners of each box in the zero-padded table.
    for corner in range(2 ** ndim):
        picks = [(corner >> axis) & 1 for axis in range(ndim)]
        index = [upper[:, axis] if pick else lower[:, axis] for axis, pick in enumerate(picks)]
        sign = (-1) ** (ndim - sum(picks))
        total += sign * table[(slice(None), *index)].T
    volume = (upper - lower).prod(dim=1, keepdim=True).to(table.dtype)
    return (total / volume).float()


def class_shares(probabilities: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Per box, each foreground class's share of the mean foreground probability inside it (rows sum to 1).

    Args:
        probabilities: ``(1 + C, *spatial)`` softmax of a class segmentation, background first.
        boxes: ``(N, 2 * ndim)`` boxes.

    Returns:
        ``(N, C)`` shares; a box without any foreground probability gets equal shares.
    """
    means = box_mean_probabilities(probabilities[1:], boxes)
    totals = means.sum(dim=1, keepdim=True)
    equal = torch.full_like(means, 1.0 / max(means.shape[1], 1))
    return torch.where(totals > 0, means / totals.clamp(min=torch.finfo(means.dtype).tiny), equal)
