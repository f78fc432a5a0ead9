"""Anchors: boxes tiled over the feature map of every pyramid level, and anchor shapes fitted to a dataset.

An anchor *shape* is a per-axis extent in voxels (``(sz, sy, sx)`` in 3D, ``(sy, sx)`` in 2D); a level
places each of its shapes at every feature-map position, centred on the input voxel region the position
stands for: position ``i`` of a level with stride ``s`` has centre ``(i + 0.5) * s`` in the half-open box
coordinates of :mod:`autounet.detection.boxes`. Rows are ordered position-major, shape-minor, as the
channels of a head predicting ``num_shapes`` values per position are after a reshape.

:func:`fit_anchor_sizes` is nnDetection's planning idea: choose the shapes that maximise the mean, over the
training boxes, of the best IoU between a box and any anchor placed at its centre.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "AnchorGenerator",
    "fit_anchor_sizes",
    "mean_best_iou",
    "shapes_from_sizes_and_scales",
]

Shape = tuple[float, ...]


def shapes_from_sizes_and_scales(sizes: Sequence[float], axis_scales: Sequence[Sequence[float]]) -> list[Shape]:
    """Anchor shapes from base sizes and per-axis scales (aspect ratios generalised to 3D).

    Each scale vector is normalised to a geometric mean of 1, so a shape keeps the volume of its size:
    ``size=8, scales=(1, 2)`` gives ``(8 / sqrt 2, 8 * sqrt 2)``.

    Args:
        sizes: Base extents in voxels.
        axis_scales: Per-axis scale vectors, all of one length (the number of spatial axes).

    Returns:
        ``len(sizes) * len(axis_scales)`` shapes, size-major.
    """
    shapes = []
    for size in sizes:
        for scales in axis_scales:
            mean = math.exp(sum(math.log(s) for s in scales) / len(scales))
            shapes.append(tuple(float(size) * s / mean for s in scales))
    return shapes


class AnchorGenerator:
    """Anchors of every pyramid level for given feature-map shapes.

    Args:
        anchor_shapes: Per level, the anchor shapes placed at each position (per-axis extents in voxels).
        strides: Per level, the per-axis stride of the feature map relative to the input, e.g. ``(4, 4, 4)``.
    """

    def __init__(self, anchor_shapes: Sequence[Sequence[Sequence[float]]], strides: Sequence[Sequence[int]]) -> None:
        if len(anchor_shapes) != len(strides) or not strides:
            raise ValueError(f"{len(anchor_shapes)} levels of anchor shapes for {len(strides)} strides")
        ndim = len(strides[0])
        for shapes, stride in zip(anchor_shapes, strides, strict=True):
            if len(stride) != ndim or not shapes or any(len(s) != ndim or min(s) <= 0 for s in shapes):
                raise ValueError(f"every level needs {ndim}D positive anchor shapes and a {ndim}D stride")
        self.anchor_shapes = [[tuple(float(v) for v in s) for s in shapes] for shapes in anchor_shapes]
        self.strides = [tuple(int(v) for v in stride) for stride in strides]
        self.ndim = ndim

    @classmethod
    def from_base_shapes(cls, base_shapes: Sequence[Sequence[float]], strides: Sequence[Sequence[int]]
                         ) -> AnchorGenerator:
        """Shapes of the first level scaled with the stride on each further level (nnDetection's scheme).

        Args:
            base_shapes: Anchor shapes of the first (finest) level.
            strides: Per level, the per-axis stride; level ``l`` gets ``base * strides[l] / strides[0]``.
        """
        first = strides[0]
        levels = [[tuple(b * s / f for b, s, f in zip(base, stride, first, strict=True)) for base in base_shapes]
                  for stride in strides]
        return cls(levels, strides)

    def num_anchors_per_location(self) -> list[int]:
        """Number of anchor shapes per position, per level."""
        return [len(shapes) for shapes in self.anchor_shapes]

    def level_anchors(self, level: int, feature_shape: Sequence[int], device: torch.device | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Anchors of one level: ``(prod(feature_shape) * num_shapes, 2 * ndim)``, position-major."""
        if len(feature_shape) != self.ndim:
            raise ValueError(f"feature shape {tuple(feature_shape)} is not {self.ndim}D")
        stride = self.strides[level]
        axes = [(torch.arange(n, device=device, dtype=dtype) + 0.5) * s for n, s in zip(feature_shape, stride,
                                                                                      strict=True)]
        centres = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 1, self.ndim)
        half = torch.tensor(self.anchor_shapes[level], device=device, dtype=dtype).reshape(1, -1, self.ndim) / 2
        return torch.cat([centres - half, centres + half], dim=-1).reshape(-1, 2 * self.ndim)

    def __call__(self, feature_shapes: Sequence[Sequence[int]], device: torch.device | None = None,
                 dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """Anchors of every level for the spatial shapes of its feature map (one list entry per level)."""
        if len(feature_shapes) != len(self.strides):
            raise ValueError(f"{len(feature_shapes)} feature maps for {len(self.strides)} anchor levels")
        return [self.level_anchors(level, shape, device, dtype) for level, shape in enumerate(feature_shapes)]


def _shape_iou(sizes: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """IoU ``(N, K)`` of centre-aligned boxes with extents ``sizes (N, d)`` and ``shapes (K, d)``."""
    intersection = np.minimum(sizes[:, None, :], shapes[None, :, :]).prod(axis=-1)
    union = sizes.prod(axis=-1)[:, None] + shapes.prod(axis=-1)[None, :] - intersection
    return intersection / union


def _candidates(shapes: np.ndarray, level_scales: Sequence[float]) -> np.ndarray:
    return np.concatenate([shapes * scale for scale in level_scales], axis=0)


def mean_best_iou(box_sizes: np.ndarray, anchor_shapes: np.ndarray, level_scales: Sequence[float] = (1.0,)
                  ) -> float:
    """Mean over boxes of the best IoU with any anchor shape (times any level scale) at the box's centre.

    Args:
        box_sizes: ``(N, ndim)`` box extents in voxels.
        anchor_shapes: ``(K, ndim)`` anchor shapes of the first level.
        level_scales: Factor of each level relative to the first, e.g. ``(1, 2, 4, 8)``.
    """
    sizes = np.asarray(box_sizes, dtype=np.float64)
    candidates = _candidates(np.asarray(anchor_shapes, dtype=np.float64), level_scales)
    return float(_shape_iou(sizes, candidates).max(axis=1).mean())


def fit_anchor_sizes(box_sizes: np.ndarray, num_shapes: int, level_scales: Sequence[float] = (1.0,),
                      iterations: int = 30) -> list[Shape]:
    """Anchor shapes that maximise :func:`mean_best_iou` over the training boxes.

    k-means with ``1 - IoU`` as distance on the log extents (each box assigned to its best anchor at any
    level scale, each shape set to the geometric mean of its boxes brought to scale 1) gives a start; a
    coordinate search then scales one axis of one shape at a time by shrinking factors while the mean
    best IoU improves. Deterministic.

    Args:
        box_sizes: ``(N, ndim)`` extents in voxels of the training boxes, all positive.
        num_shapes: Number of anchor shapes per position.
        level_scales: Factor of each pyramid level relative to the first (anchors grow with the stride).
        iterations: k-means iterations.

    Returns:
        ``num_shapes`` shapes for the first level, sorted by volume.
    """
    sizes = np.asarray(box_sizes, dtype=np.float64)
    if sizes.ndim != 2 or len(sizes) == 0 or np.any(sizes <= 0):
        raise ValueError("box_sizes must be a non-empty (N, ndim) array of positive extents")
    if num_shapes < 1:
        raise ValueError(f"num_shapes must be at least 1, got {num_shapes}")
    scales = np.asarray(level_scales, dtype=np.float64)
    order = np.argsort(sizes.prod(axis=1), kind="stable")
    quantiles = order[np.linspace(0, len(sizes) - 1, num_shapes).round().astype(int)]
    shapes = sizes[quantiles] / scales[0]
    for _ in range(iterations):
        best = _shape_iou(sizes, _candidates(shapes, scales)).argmax(axis=1)
        shape_index, scale_index = best % num_shapes, best // num_shapes
        updated = shapes.copy()
        for k in range(num_shapes):
            members = shape_index == k
            if members.any():
                updated[k] = np.exp(np.log(sizes[members] / scales[scale_index[members], None]).mean(axis=0))
        if np.allclose(updated, shapes):
            break
        shapes = updated
    shapes = _coordinate_search(sizes, shapes, scales)
    return [tuple(float(v) for v in s) for s in shapes[np.argsort(shapes.prod(axis=1), kind="stable")]]


def _coordinate_search(sizes: np.ndarray, shapes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    score = mean_best_iou(sizes, shapes, scales)
    for factor in (1.5, 1.2, 1.1, 1.05, 1.02, 1.01):
        improved = True
        while improved:
            improved = False
            for k in range(len(shapes)):
                for axis in range(shapes.shape[1]):
                    for step in (factor, 1 / factor):
                        trial = shapes.copy()
                        trial[k, axis] *= step
                        trial_score = mean_best_iou(sizes, trial, scales)
                        if trial_score > score + 1e-12:
                            shapes, score, improved = trial, trial_score, True
    return shapes
