"""Detections: scored, classified boxes, and how those of many windows, mirrored passes and folds become one set.

A detector maps a batch of patches to one :class:`Detections` per patch, in the patch's voxel coordinates.
:class:`BoxMerger` collects them from every window of an image (shifted into image coordinates, each box
weighted by where its centre lay in its window: windows see least context at their borders) and fuses them by
weighted box clustering within each class, which is how nnDetection combines test-time mirroring, overlapping
windows and the folds of an ensemble.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from autounet.detection.boxes import box_centers, clip_boxes_to_image, remove_small_boxes, spatial_dims
from autounet.detection.clustering import batched_weighted_box_clustering
from autounet.planning.plans import DetectionInference

__all__ = ["BoxFusionSettings", "BoxMerger", "Detections", "Detector", "fusion_settings", "position_weights"]


@dataclass(frozen=True)
class Detections:
    """Boxes with a score and a class each.

    Attributes:
        boxes: ``(N, 2 * ndim)`` float32 half-open voxel boxes ``(z1, y1, x1, z2, y2, x2)`` (or 2D).
        scores: ``(N,)`` float32 in ``[0, 1]``.
        classes: ``(N,)`` int64 class indices counting from 0 (nnDetection's convention).
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor

    def __post_init__(self) -> None:
        if not (self.boxes.ndim == 2 and self.scores.shape == self.classes.shape == (self.boxes.shape[0],)):
            raise ValueError(f"detections need boxes (N, 2*ndim), scores (N,) and classes (N,); got "
                             f"{tuple(self.boxes.shape)}, {tuple(self.scores.shape)}, {tuple(self.classes.shape)}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls, ndim: int, device: torch.device | str = "cpu") -> Detections:
        """No boxes."""
        return cls(torch.zeros((0, 2 * ndim), device=device), torch.zeros(0, device=device),
                   torch.zeros(0, dtype=torch.int64, device=device))

    def select(self, index: torch.Tensor) -> Detections:
        """The detections at ``index`` (indices or a boolean mask)."""
        return Detections(self.boxes[index], self.scores[index], self.classes[index])

    def to(self, device: torch.device | str) -> Detections:
        """The same detections on ``device``."""
        return Detections(self.boxes.to(device), self.scores.to(device), self.classes.to(device))


Detector = Callable[[torch.Tensor], Sequence[Detections]]
"""``(B, C, *patch)`` patches -> one :class:`Detections` per patch, in patch voxel coordinates."""


@dataclass(frozen=True)
class BoxFusionSettings:
    """How the boxes of all windows, passes and folds of an image become its detections.

    Attributes:
        iou_threshold: Boxes of one class overlapping by more than this are clustered into one.
        score_threshold: Fused detections scoring lower are dropped.
        min_size: Fused boxes smaller than this many voxels along any axis are dropped.
        max_detections: At most this many detections per image (the highest scoring).
    """

    iou_threshold: float = 0.2
    score_threshold: float = 0.0
    min_size: float = 0.0
    max_detections: int = 100

    def __post_init__(self) -> None:
        if not 0 <= self.iou_threshold <= 1 or not 0 <= self.score_threshold <= 1:
            raise ValueError("iou_threshold and score_threshold must lie in [0, 1]")
        if self.min_size < 0 or self.max_detections < 1:
            raise ValueError("min_size must be >= 0 and max_detections >= 1")


def fusion_settings(inference: DetectionInference) -> BoxFusionSettings:
    """The fusion part of a detector's inference parameters (clustering IoU, score threshold, minimum size,
    boxes per image)."""
    return BoxFusionSettings(iou_threshold=inference.cluster_iou, score_threshold=inference.score_threshold,
                             min_size=inference.min_size, max_detections=inference.detections_per_image)


def position_weights(boxes: torch.Tensor, patch_size: Sequence[int], sigma_scale: float = 0.125,
                     floor: float = 1e-6) -> torch.Tensor:
    """Weight of each box by where its centre lies in its window: a Gaussian around the window centre with
    ``sigma = sigma_scale * patch`` per axis (nnU-Net's window weighting), at least ``floor``.

    Args:
        boxes: ``(N, 2 * ndim)`` boxes in window coordinates.
        patch_size: The window's size per axis.
    """
    patch = torch.as_tensor(tuple(patch_size), dtype=torch.float32, device=boxes.device)
    offset = (box_centers(boxes.float()) - patch / 2) / (sigma_scale * patch)
    return torch.exp(-0.5 * (offset**2).sum(dim=-1)).clamp_min(floor)


class BoxMerger:
    """Collects window detections in image coordinates and fuses them (:meth:`finalize`).

    Args:
        image_shape: Spatial shape of the (padded) image the windows tile.
        crop: One slice per axis: where the unpadded image lies in it (results are relative to its start).
        patch_size: Window size.
        settings: Fusion thresholds.
    """

    def __init__(self, image_shape: Sequence[int], crop: Sequence[slice], patch_size: Sequence[int],
                 settings: BoxFusionSettings) -> None:
        self.image_shape = tuple(int(n) for n in image_shape)
        self.crop = tuple(crop)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.settings = settings
        self._parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._window_starts: list[tuple[int, ...]] = []

    def add(self, window_start: Sequence[int], detections: Detections) -> None:
        """Add one window pass's detections (window coordinates); ``window_start`` is its corner in the image.

        Every call is one prediction (window x mirrored pass x detector), empty ones included: each votes once
        per cluster, and a cluster that fewer passes saw than could have seen it scores lower.
        """
        start = tuple(int(s) for s in window_start)
        if len(start) != len(self.image_shape):
            raise ValueError(f"window start {start} does not fit the {len(self.image_shape)}D image")
        source = len(self._window_starts)
        self._window_starts.append(start)
        if len(detections) == 0:
            return
        ndim = spatial_dims(detections.boxes)
        if ndim != len(start):
            raise ValueError(f"window start {start} does not fit {ndim}D boxes")
        shift = torch.as_tensor(start * 2, dtype=torch.float32, device=detections.boxes.device)
        weights = position_weights(detections.boxes, self.patch_size)
        sources = torch.full((len(detections),), source, dtype=torch.int64, device=detections.boxes.device)
        self._parts.append((detections.boxes.float() + shift, detections.scores.float(), detections.classes,
                            weights, sources))

    def _expected_predictions(self, boxes: torch.Tensor) -> torch.Tensor:
        """For each box (image coordinates), how many of the added window passes contain its centre."""
        # Mirrored passes and folds share their window's start: count each distinct window once, times its passes.
        starts, passes = torch.unique(torch.as_tensor(self._window_starts, dtype=torch.float32), dim=0,
                                      return_counts=True)
        stops = starts + torch.as_tensor(self.patch_size, dtype=torch.float32)
        # Bounded memory: a chunk of boxes x distinct windows x axes booleans at a time (at most ~16 M).
        chunk_size = max(1, 2**24 // (len(starts) * starts.shape[1]))
        counts = []
        for chunk in torch.split(box_centers(boxes), chunk_size):
            inside = ((chunk[:, None] >= starts[None]) & (chunk[:, None] < stops[None])).all(dim=-1)
            counts.append((inside.to(torch.int64) * passes[None]).sum(dim=-1))
        return torch.cat(counts).clamp(min=1)

    def finalize(self) -> Detections:
        """The fused detections of the unpadded image, by decreasing score, on the CPU."""
        ndim = len(self.image_shape)
        if not self._parts:
            return Detections.empty(ndim)
        boxes, scores, classes, weights, sources = (torch.cat(part).cpu() for part in zip(*self._parts, strict=True))
        settings = self.settings
        fused_boxes, fused_scores, fused_classes = batched_weighted_box_clustering(
            boxes, scores, classes, settings.iou_threshold, box_weights=weights, sources=sources,
            expected_predictions=self._expected_predictions(boxes))
        start = torch.as_tensor([s.start or 0 for s in self.crop] * 2, dtype=torch.float32)
        size = [s.stop - (s.start or 0) for s in self.crop]
        fused = Detections(clip_boxes_to_image(fused_boxes - start, size), fused_scores, fused_classes)
        fused = fused.select(fused.scores >= settings.score_threshold)
        fused = fused.select(remove_small_boxes(fused.boxes, settings.min_size))
        order = torch.sort(fused.scores, descending=True, stable=True).indices[:settings.max_detections]
        return fused.select(order)
