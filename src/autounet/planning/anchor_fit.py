"""Anchor shapes fitted to a dataset's boxes (nnDetection's planning idea), in NumPy only.

Choose the anchor shapes that maximise the mean, over the training boxes, of the best IoU between a box
and any anchor placed at its centre. Planning calls it for detection configurations;
:mod:`autounet.detection.anchors` re-exports it beside the anchor generator. An anchor *shape* is a per-axis
extent in voxels; a level with a larger stride uses the first level's shapes times its scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["fit_anchor_sizes", "mean_best_iou"]

Shape = tuple[float, ...]


def _shape_iou(sizes: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """IoU ``(N, K)`` of centre-aligned boxes with extents ``sizes (N, d)`` and ``shapes (K, d)``."""
    intersection = np.minimum(sizes[:, None, :], shapes[None, :, :]).prod(axis=-1)
    union = sizes.prod(axis=-1)[:, None] + shapes.prod(axis=-1)[None, :] - intersection
    return intersection / union


def _scales(level_scales: Sequence[float] | Sequence[Sequence[float]]) -> np.ndarray:
    """``(L, 1)`` for one factor per level, ``(L, ndim)`` for per-axis factors (anisotropic strides)."""
    scales = np.asarray(level_scales, dtype=np.float64)
    return scales[:, None] if scales.ndim == 1 else scales


def _candidates(shapes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    return np.concatenate([shapes * scale for scale in scales], axis=0)


def mean_best_iou(box_sizes: np.ndarray, anchor_shapes: np.ndarray,
                  level_scales: Sequence[float] | Sequence[Sequence[float]] = (1.0,)) -> float:
    """Mean over boxes of the best IoU with any anchor shape (times any level scale) at the box's centre.

    Args:
        box_sizes: ``(N, ndim)`` box extents in voxels.
        anchor_shapes: ``(K, ndim)`` anchor shapes of the first level.
        level_scales: Factor of each level relative to the first, e.g. ``(1, 2, 4, 8)``, or per level a
            per-axis factor, e.g. ``((1, 1, 1), (1, 2, 2))`` for anisotropic strides.
    """
    sizes = np.asarray(box_sizes, dtype=np.float64)
    candidates = _candidates(np.asarray(anchor_shapes, dtype=np.float64), _scales(level_scales))
    return float(_shape_iou(sizes, candidates).max(axis=1).mean())


def fit_anchor_sizes(box_sizes: np.ndarray, num_shapes: int,
                     level_scales: Sequence[float] | Sequence[Sequence[float]] = (1.0,), iterations: int = 30
                     ) -> list[Shape]:
    """Anchor shapes that maximise :func:`mean_best_iou` over the training boxes.

    k-means with ``1 - IoU`` as distance on the log extents (each box assigned to its best anchor at any
    level scale, each shape set to the geometric mean of its boxes brought to scale 1) gives a start; a
    coordinate search then scales one axis of one shape at a time by shrinking factors while the mean
    best IoU improves. Deterministic.

    Args:
        box_sizes: ``(N, ndim)`` extents in voxels of the training boxes, all positive.
        num_shapes: Number of anchor shapes per position.
        level_scales: Factor of each pyramid level relative to the first (anchors grow with the stride), or
            per level a per-axis factor (see :func:`mean_best_iou`).
        iterations: k-means iterations.

    Returns:
        ``num_shapes`` shapes for the first level, sorted by volume.
    """
    sizes = np.asarray(box_sizes, dtype=np.float64)
    if sizes.ndim != 2 or len(sizes) == 0 or np.any(sizes <= 0):
        raise ValueError("box_sizes must be a non-empty (N, ndim) array of positive extents")
    if num_shapes < 1:
        raise ValueError(f"num_shapes must be at least 1, got {num_shapes}")
    scales = _scales(level_scales)
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
                updated[k] = np.exp(np.log(sizes[members] / scales[scale_index[members]]).mean(axis=0))
        if np.allclose(updated, shapes):
            break
        shapes = updated
    shapes = _coordinate_search(sizes, shapes, scales)
    return [tuple(float(v) for v in s) for s in shapes[np.argsort(shapes.prod(axis=1), kind="stable")]]


def _coordinate_search(sizes: np.ndarray, shapes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    score = _score(sizes, shapes, scales)
    for factor in (1.5, 1.2, 1.1, 1.05, 1.02, 1.01):
        improved = True
        while improved:
            improved = False
            for k in range(len(shapes)):
                for axis in range(shapes.shape[1]):
                    for step in (factor, 1 / factor):
                        trial = shapes.copy()
                        trial[k, axis] *= step
                        trial_score = _score(sizes, trial, scales)
                        if trial_score > score + 1e-12:
                            shapes, score, improved = trial, trial_score, True
    return shapes


def _score(sizes: np.ndarray, shapes: np.ndarray, scales: np.ndarray) -> float:
    return float(_shape_iou(sizes, _candidates(shapes, scales)).max(axis=1).mean())
