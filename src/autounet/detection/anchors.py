"""Anchors: boxes tiled over the feature map of every pyramid level, and anchor shapes fitted to a dataset.

An anchor *shape* is a per-axis extent in voxels (``(sz, sy, sx)`` in 3D, ``(sy, sx)`` in 2D); a level
places each of its shapes at every feature-map position, centred on the input voxel region the position
stands for: position ``i`` of a level with stride ``s`` has centre ``(i + 0.5) * s`` in the half-open box
coordinates of :mod:`autounet.detection.boxes`. Rows are ordered position-major, shape-minor, as the
channels of a head predicting ``num_shapes`` values per position are after a reshape.

:func:`fit_anchor_sizes` is nnDetection's planning idea: choose the shapes that maximise the mean, over the
training boxes, of the best IoU between a box and any anchor placed at its centre. It lives in
:mod:`autounet.planning.anchor_fit` (planning runs it, and planning imports nothing downstream) and is
re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from autounet.planning.anchor_fit import fit_anchor_sizes, mean_best_iou

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
