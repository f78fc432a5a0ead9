"""Resampling to a target spacing with nnU-Net v2's semantics, computed separably in float32.

Semantics (``nnunetv2/preprocessing/resampling/default_resampling.py``): if the spacing ratio max/min of
the source, or else of the target, exceeds the anisotropy threshold and exactly one axis has the largest
spacing, that axis is resampled on its own with ``out_of_plane_order`` (0: nearest, so thick slices are not
blended), the other axes with the image/label order; otherwise all axes together. Images are clipped to
the input range after spline interpolation (per slice when the out-of-plane axis is separate), as
``skimage`` does. Labels: every label's indicator is interpolated and each voxel takes the label with the
highest score; ties (up to float32 rounding) go to the nearest-neighbour label when it is among the tied
ones, else to the smallest tied label (the rule of the ``batchgenerators`` version nnU-Net 2.8 uses). One
deviation: with ``out_of_plane_order > 0``, labels use the same highest-score rule along the separate axis,
where nnU-Net thresholds each indicator at 0.5 in ascending label order (the default order 0 is identical).

Speed: passes are separable 1-D (see :mod:`autounet.preprocessing._taps`), axes of unchanged length are
skipped, nearest-neighbour axes are plain gathers done first when they shrink the array, and labels are
processed one at a time as float32 with a running maximum instead of a float64 one-hot stack.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autounet.planning.plans import ResamplingPlan
from autounet.planning.shapes import compute_new_shape
from autounet.preprocessing._taps import resample_axis

__all__ = ["anisotropic_axis", "compute_new_shape", "resample_data", "resample_segmentation", "resample_to_shape"]

# Scores are in [0, 1]; a few float32 roundings apart counts as a tie.
_TIE_TOLERANCE = 1e-5


def _largest_axes(spacing: Sequence[float]) -> list[int]:
    largest = max(spacing)
    return [axis for axis, value in enumerate(spacing) if value == largest]


def anisotropic_axis(spacing: Sequence[float], target_spacing: Sequence[float],
                     threshold: float) -> int | None:
    """The axis to resample separately, or ``None`` to resample all axes together.

    2D data never get a separate axis: nnU-Net sees them as 3D with a 999 spacing on the single slice
    axis, whose length never changes, so both in-plane axes are always resampled together.
    """
    if len(spacing) < 3:
        return None
    for candidate in (spacing, target_spacing):
        if max(candidate) / min(candidate) > threshold:
            axes = _largest_axes(candidate)
            return axes[0] if len(axes) == 1 else None
    return None


def _axis_orders(ndim: int, separate: int | None, order: int, out_of_plane_order: int) -> list[int]:
    return [out_of_plane_order if axis == separate else order for axis in range(ndim)]


def _plan_passes(shape: Sequence[int], new_shape: Sequence[int],
                 orders: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    """Split the axes to resize into nearest gathers done first (shrinking), spline passes, gathers last.

    Gathers commute with the spline passes of other axes, so each is placed where the array is smallest.
    Spline passes run shrinking axes first for the same reason.
    """
    changed = [a for a in range(len(shape)) if shape[a] != new_shape[a]]
    early = [a for a in changed if orders[a] == 0 and new_shape[a] < shape[a]]
    late = [a for a in changed if orders[a] == 0 and new_shape[a] >= shape[a]]
    smooth = sorted((a for a in changed if orders[a] > 0), key=lambda a: new_shape[a] / shape[a])
    return early, smooth, late


def _resample_image(image: np.ndarray, new_shape: Sequence[int], separate: int | None,
                    plan: ResamplingPlan) -> np.ndarray:
    orders = _axis_orders(image.ndim, separate, plan.image_order, plan.out_of_plane_order)
    early, smooth, late = _plan_passes(image.shape, new_shape, orders)
    for axis in early:
        image = resample_axis(image, axis, new_shape[axis], 0)
    # The separate axis is interpolated after the in-plane passes and after their clipping, as in nnU-Net.
    in_plane = [a for a in smooth if a != separate]
    out = image.astype(np.float32, copy=False)
    for axis in in_plane:
        out = resample_axis(out, axis, new_shape[axis], orders[axis])
    if in_plane and plan.image_order > 1:
        _clip_to_input_range(out, image, separate)
    for axis in [a for a in smooth if a == separate] + late:
        out = resample_axis(out, axis, new_shape[axis], orders[axis])
    return out


def _clip_to_input_range(out: np.ndarray, source: np.ndarray, separate: int | None) -> None:
    # skimage clips each resize call to its input's range: the whole channel, or one slice.
    if separate is None:
        np.clip(out, source.min(), source.max(), out=out)
        return
    reduce = tuple(a for a in range(source.ndim) if a != separate)
    shape = [1] * source.ndim
    shape[separate] = source.shape[separate]
    np.clip(out, source.min(axis=reduce).reshape(shape), source.max(axis=reduce).reshape(shape), out=out)


def resample_segmentation(seg: np.ndarray, new_shape: Sequence[int], separate: int | None,
                          plan: ResamplingPlan) -> np.ndarray:
    """Resample one label map (see the module docstring for the rule).

    Args:
        seg: Integer label map ``(*spatial)``; negative values (the -1 outside the non-zero region) are
            labels like any other.
        new_shape: Output shape.
        separate: Axis resampled separately with ``plan.out_of_plane_order`` (see :func:`anisotropic_axis`).
        plan: Interpolation orders.

    Returns:
        Label map of ``new_shape`` with ``seg``'s dtype.
    """
    orders = _axis_orders(seg.ndim, separate, plan.label_order, plan.out_of_plane_order)
    early, smooth, late = _plan_passes(seg.shape, new_shape, orders)
    for axis in early:
        seg = resample_axis(seg, axis, new_shape[axis], 0)
    if smooth:
        seg = _argmax_resample(seg, [(a, new_shape[a], orders[a]) for a in smooth])
    for axis in late:
        seg = resample_axis(seg, axis, new_shape[axis], 0)
    return seg


def _argmax_resample(seg: np.ndarray, passes: list[tuple[int, int, int]]) -> np.ndarray:
    labels = np.unique(seg)
    nearest = seg
    for axis, length, _ in passes:
        nearest = resample_axis(nearest, axis, length, 0)
    if labels.size == 1:
        return nearest
    best: np.ndarray | None = None
    winner = np.zeros(nearest.shape, dtype=np.min_scalar_type(labels.size))
    nearest_score = np.zeros(nearest.shape, dtype=np.float32)
    is_label = np.empty(seg.shape, dtype=bool)
    for index, label in enumerate(labels):
        np.equal(seg, label, out=is_label)
        score = is_label.astype(np.float32)
        for axis, length, order in passes:
            score = resample_axis(score, axis, length, order)
        np.copyto(nearest_score, score, where=nearest == label)
        if best is None:
            best = score
            continue
        better = score > best
        winner[better] = index
        np.maximum(best, score, out=best)
    result = labels[winner]
    # Ties (a sample point midway between labels) go to the nearest-neighbour label if it is tied. "Tied"
    # allows float32 rounding: exact ties in exact arithmetic must not be decided by evaluation order.
    nearest_score += _TIE_TOLERANCE
    np.copyto(result, nearest, where=nearest_score >= best)
    return result


def resample_to_shape(data: np.ndarray, new_shape: Sequence[int], spacing: Sequence[float],
                      target_spacing: Sequence[float], plan: ResamplingPlan, is_seg: bool = False) -> np.ndarray:
    """Resample every channel to a given shape (the spacings only decide the anisotropy handling).

    Args:
        data: ``(C, *spatial)``; float for images, integer labels for ``is_seg``.
        new_shape: Spatial output shape.
        spacing: Current spacing, same axis order.
        target_spacing: Spacing that ``new_shape`` corresponds to.
        plan: Orders and anisotropy threshold.
        is_seg: Resample as label maps.

    Returns:
        ``(C, *new_shape)``: float32 for images, ``data``'s dtype for labels; ``data`` itself when the
        shape does not change (as nnU-Net).
    """
    new_shape = tuple(int(s) for s in new_shape)
    if len(new_shape) != data.ndim - 1:
        raise ValueError(f"new shape {new_shape} does not match data of shape {data.shape}")
    if tuple(data.shape[1:]) == new_shape:
        return data
    separate = anisotropic_axis(spacing, target_spacing, plan.anisotropy_threshold)
    if is_seg:
        out = np.empty((data.shape[0], *new_shape), dtype=data.dtype)
        for channel in range(data.shape[0]):
            out[channel] = resample_segmentation(data[channel], new_shape, separate, plan)
        return out
    out = np.empty((data.shape[0], *new_shape), dtype=np.float32)
    for channel in range(data.shape[0]):
        out[channel] = _resample_image(data[channel], new_shape, separate, plan)
    return out


def resample_data(data: np.ndarray, spacing: Sequence[float], target_spacing: Sequence[float],
                  plan: ResamplingPlan, is_seg: bool = False) -> np.ndarray:
    """Resample ``(C, *spatial)`` data from ``spacing`` to ``target_spacing`` (mm, array axis order).

    The output shape is :func:`compute_new_shape`; see :func:`resample_to_shape` for the rest.
    """
    new_shape = compute_new_shape(data.shape[1:], spacing, target_spacing)
    return resample_to_shape(data, new_shape, spacing, target_spacing, plan, is_seg=is_seg)
