"""The non-zero region of an image: mask and bounding box.

Shared by fingerprinting (which only needs the box) and preprocessing (which also fills the mask's holes;
see :mod:`autounet.preprocessing.crop`). Hole filling never changes the box: a background voxel outside
the box of the mask is connected to the array border through the all-background slab it lies in, so it is
never a hole. Fingerprinting therefore skips the filling.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BoundingBox", "bbox_slices", "mask_bbox", "nonzero_mask"]

BoundingBox = tuple[tuple[int, int], ...]
"""Half-open ``(start, stop)`` per spatial axis, in array axis order."""


def nonzero_mask(image: np.ndarray) -> np.ndarray:
    """Voxels where any channel is non-zero.

    Args:
        image: ``(C, *spatial)`` array of any numeric dtype.

    Returns:
        Boolean array of shape ``spatial`` (holes not filled).
    """
    mask = np.not_equal(image[0], 0)
    if image.shape[0] > 1:
        scratch = np.empty_like(mask)
        for channel in image[1:]:
            np.not_equal(channel, 0, out=scratch)
            mask |= scratch
    return mask


def mask_bbox(mask: np.ndarray) -> BoundingBox:
    """Bounding box of the ``True`` voxels of a mask.

    Two passes over the mask whatever its dimensionality: one projection along the last axis (from which
    every leading axis's extent follows cheaply), one onto the last axis.

    Args:
        mask: Boolean array ``(*spatial)``.

    Returns:
        ``(start, stop)`` per axis; the whole array when the mask is empty (nnU-Net's convention, so an
        all-zero image is kept as it is rather than cropped to nothing).
    """
    if mask.ndim == 1:
        return (_extent(mask, mask.shape[0]),)
    leading = mask.any(axis=-1)
    last = mask.any(axis=tuple(range(mask.ndim - 1)))
    if not last.any():
        return tuple((0, size) for size in mask.shape)
    return (*mask_bbox(leading), _extent(last, mask.shape[-1]))


def _extent(projection: np.ndarray, size: int) -> tuple[int, int]:
    hits = np.flatnonzero(projection)
    if hits.size == 0:
        return 0, size
    return int(hits[0]), int(hits[-1]) + 1


def bbox_slices(bbox: BoundingBox) -> tuple[slice, ...]:
    """Slices selecting a bounding box from the spatial axes."""
    return tuple(slice(start, stop) for start, stop in bbox)
