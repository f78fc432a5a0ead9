"""The detection configuration (``3d_det`` / ``2d_det``) of a dataset with instance labels.

It is the segmentation configuration of the same dimensionality (spacing, patch, batch and U-Net from the
memory model, unchanged: no GPU is needed to plan, unlike nnDetection) plus a :class:`DetectionPlan`:

- **Head levels.** Retina U-Net (nnDetection's default model) puts its classification and regression heads
  on the decoder levels P2 and coarser: every U-Net stage from the third (two downsamplings, stride 4 for
  isotropic data) to the deepest. Finer levels would multiply the anchors by 8 (3D) per level for objects
  the stride-4 level already resolves, and the full-resolution level is served by the auxiliary
  segmentation head. A U-Net with fewer than three stages gets heads on its deepest level only.
- **Anchors.** :data:`NUM_ANCHOR_SHAPES` shapes per position, fitted to the training boxes (sizes in voxels
  at the target spacing, from the fingerprint) so that the mean best IoU between a box and an anchor at its
  centre is largest (:func:`autounet.planning.anchor_fit.fit_anchor_sizes`); level ``l`` uses the first
  head level's shapes times its per-axis stride ratio, as nnDetection's generator does.
- **Class segmentation.** With more than one class the auxiliary segmentation head segments the classes
  (not only foreground) and scores each box's classes by the class shares of that segmentation inside it
  (``DetectionPlan.class_segmentation``): classes that differ in fine detail are decided at full resolution
  with dense supervision, which the stride-4 classification head learns far more slowly (on nnDetection's toy,
  squares with and without a hole).
- **Resampling.** Both stored label maps (semantic, instance ids) are resampled nearest-neighbour
  (``label_order=0``): the per-label linear rule of segmentation could shift instance borders differently
  in the two maps, and would treat instance ids as classes.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from autounet.errors import PlanError
from autounet.fingerprint.model import Fingerprint
from autounet.planning.anchor_fit import fit_anchor_sizes, mean_best_iou
from autounet.planning.plans import ConfigurationPlan, DetectionPlan, data_identifier

__all__ = ["FIRST_HEAD_LEVEL", "NUM_ANCHOR_SHAPES", "detection_configuration", "detection_configuration_name",
           "head_levels", "level_strides"]

FIRST_HEAD_LEVEL = 2  # P2: two downsamplings (see the module docstring)
# nnDetection fits three extents per axis (27 combinations in 3D); three free shapes fitted jointly cover
# the size and aspect spread of typical datasets with a ninth of the head channels.
NUM_ANCHOR_SHAPES = 3


def detection_configuration_name(ndim: int) -> str:
    """``3d_det`` for 3D data, ``2d_det`` for 2D data."""
    return f"{ndim}d_det"


def head_levels(num_stages: int) -> tuple[int, ...]:
    """The decoder levels carrying heads for a U-Net of ``num_stages`` stages (see the module docstring)."""
    return tuple(range(min(FIRST_HEAD_LEVEL, num_stages - 1), num_stages))


def level_strides(stage_strides: tuple[tuple[int, ...], ...], levels: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Per level, the per-axis stride relative to the input: the product of the stage strides up to it."""
    return tuple(tuple(math.prod(stride[axis] for stride in stage_strides[: level + 1])
                       for axis in range(len(stage_strides[0]))) for level in levels)


def _box_sizes_voxels(fingerprint: Fingerprint, axis_order: tuple[int, ...],
                      spacing: tuple[float, ...]) -> np.ndarray:
    if not fingerprint.boxes_per_case:
        raise PlanError("the fingerprint has no box statistics; extract it again with 'autounet fingerprint "
                        "--overwrite'")
    if not fingerprint.box_sizes_mm:
        raise PlanError("no instance in any training case: a detection configuration needs boxes to fit "
                        "anchors to")
    sizes_mm = np.asarray(fingerprint.box_sizes_mm, dtype=np.float64)[:, list(axis_order)]
    # A 2D configuration of (single-slice) 3D data sees the in-plane axes only, the last after the order.
    return sizes_mm[:, sizes_mm.shape[1] - len(spacing):] / np.asarray(spacing, dtype=np.float64)


def detection_configuration(base: ConfigurationPlan, fingerprint: Fingerprint, num_classes: int,
                            axis_order: tuple[int, ...]) -> ConfigurationPlan:
    """The detection configuration built on a segmentation configuration of the same dimensionality.

    Args:
        base: ``3d_fullres`` (``2d`` for 2D data, or for 3D data too thin for ``3d_fullres``): spacing,
            patch, batch and network are reused.
        fingerprint: With the training boxes (:attr:`Fingerprint.box_sizes_mm`).
        num_classes: Object classes.
        axis_order: The plans' axis order.

    Returns:
        ``3d_det`` / ``2d_det`` with its :class:`DetectionPlan` and its own data identifier.

    Raises:
        PlanError: No box statistics in the fingerprint, or no box at all.
    """
    sizes = _box_sizes_voxels(fingerprint, axis_order, base.spacing)
    levels = head_levels(base.network.num_stages)
    strides = level_strides(base.network.strides, levels)
    scales = [tuple(s / f for s, f in zip(stride, strides[0], strict=True)) for stride in strides]
    shapes = fit_anchor_sizes(sizes, min(NUM_ANCHOR_SHAPES, len(sizes)), scales)
    anchors = tuple(tuple(tuple(round(v * f, 4) for v, f in zip(shape, scale, strict=True)) for shape in shapes)
                    for scale in scales)
    plan = DetectionPlan(num_classes=num_classes, head_levels=levels, strides=strides, anchor_shapes=anchors,
                         anchor_mean_best_iou=round(mean_best_iou(sizes, np.asarray(anchors[0]), scales), 4),
                         class_segmentation=num_classes > 1)
    config = replace(base, name=detection_configuration_name(base.ndim), detection=plan,
                     resampling=replace(base.resampling, label_order=0), previous_stage=None, next_stage=None)
    return replace(config, data_identifier=data_identifier(config, axis_order))
