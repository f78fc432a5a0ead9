"""Scored boxes from a segmentation model's probabilities: the "nnU-Net as a detector" baseline.

Each connected component of each foreground label of the predicted label map (the argmax of the
probabilities, as a segmentation model predicts) becomes one box (exact, :mod:`autounet.detection.boxes`)
of class ``label - 1`` (classes count from 0 as in nnDetection's instance files), scored by the highest or
the mean probability of that label inside the component. Any segmentation model, autounet's or an imported
nnU-Net v2 one, is then scored by the same detection metrics as a detector.
"""

from __future__ import annotations

from typing import Literal

import cc3d
import numpy as np
import torch
from scipy import ndimage

from autounet.detection.boxes import instances_to_boxes

__all__ = ["ComponentScore", "segmentation_to_boxes"]

ComponentScore = Literal["max", "mean"]


def segmentation_to_boxes(probabilities: np.ndarray, min_voxels: int = 1, score: ComponentScore = "max"
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes, scores and classes of the connected components of a predicted segmentation.

    Args:
        probabilities: Softmax probabilities ``(C, Z, Y, X)`` or ``(C, Y, X)``, channel 0 background,
            channel ``c`` label ``c``.
        min_voxels: Components with fewer voxels are dropped.
        score: ``"max"`` or ``"mean"`` probability of the component's label inside the component.

    Returns:
        ``(boxes, scores, classes)``: ``(N, 2 * ndim)`` float32, ``(N,)`` float32 and ``(N,)`` int64, by
        decreasing score. Components connect through faces, edges and corners (26 / 8 neighbours).
    """
    probabilities = np.asarray(probabilities)
    if probabilities.ndim not in (3, 4) or probabilities.shape[0] < 2:
        raise ValueError(f"expected probabilities (C >= 2, *spatial), got shape {probabilities.shape}")
    if score not in ("max", "mean"):
        raise ValueError(f"score must be 'max' or 'mean', got {score!r}")
    labels = probabilities.argmax(axis=0)
    spatial = probabilities.ndim - 1
    all_boxes, all_scores, all_classes = [], [], []
    for label in range(1, probabilities.shape[0]):
        components, count = cc3d.connected_components(labels == label, connectivity=26 if spatial == 3 else 8,
                                                      return_N=True)
        if count == 0:
            continue
        boxes, ids = instances_to_boxes(components)
        index = ids.numpy()
        sizes = ndimage.sum_labels(np.ones_like(components, dtype=np.int64), components, index)
        reduce = ndimage.maximum if score == "max" else ndimage.mean
        scores = np.asarray(reduce(probabilities[label], components, index), dtype=np.float32)
        keep = torch.from_numpy(np.asarray(sizes) >= min_voxels)
        all_boxes.append(boxes[keep])
        all_scores.append(torch.from_numpy(scores)[keep])
        all_classes.append(torch.full((int(keep.sum()),), label - 1, dtype=torch.int64))
    if not all_boxes:
        return torch.zeros(0, 2 * spatial), torch.zeros(0), torch.zeros(0, dtype=torch.int64)
    scores = torch.cat(all_scores)
    order = torch.sort(scores, descending=True, stable=True).indices
    return torch.cat(all_boxes)[order], scores[order], torch.cat(all_classes)[order]
