"""Cropping to the non-zero region, and nnU-Net's -1 marker for background outside it.

The non-zero mask is "any channel != 0" with holes filled (a hole is a background region not connected to
the array border, face connectivity). In the cropped segmentation, background (0) voxels outside the
filled mask become -1: normalisation with ``use_nonzero_mask`` uses ``seg >= 0`` as its mask, and training
treats -1 as background. Labelled voxels outside the mask keep their label.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from autounet.fingerprint.bbox import BoundingBox, bbox_slices, mask_bbox, nonzero_mask

__all__ = ["OUTSIDE_LABEL", "crop_to_nonzero", "fill_holes", "signed_label_dtype"]

OUTSIDE_LABEL = -1
"""Written into the segmentation where the background lies outside the non-zero region."""


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a boolean mask (same result as ``scipy.ndimage.binary_fill_holes``).

    One connected-component labelling of the background instead of scipy's iterated dilation: components
    that touch the array border are background, all others are holes.

    Args:
        mask: Boolean array ``(*spatial)``; not modified.

    Returns:
        A new boolean array.
    """
    if mask.all():
        return mask.copy()
    components, count = ndi.label(~mask)
    if count == 0:
        return mask.copy()
    border = np.zeros(count + 1, dtype=bool)
    for axis in range(mask.ndim):
        for index in (0, -1):
            border[np.take(components, index, axis=axis)] = True
    border[0] = False  # label 0 is the mask itself, which stays
    return ~border[components]


def signed_label_dtype(low: int, high: int) -> np.dtype:
    """Smallest signed integer dtype holding ``[min(low, -1), high]`` (int8 up to 127, as nnU-Net)."""
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= min(low, OUTSIDE_LABEL) and high <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def crop_to_nonzero(image: np.ndarray, seg: np.ndarray | None = None,
                    ) -> tuple[np.ndarray, np.ndarray, BoundingBox]:
    """Crop an image (and its label maps) to the bounding box of the non-zero region.

    Args:
        image: ``(C, *spatial)`` array.
        seg: ``(*spatial)`` integer label map, or ``(L, *spatial)`` for a case with several label maps (one
            per task), or ``None`` (test cases).

    Returns:
        ``(image_crop, seg_crop, bbox)``. ``image_crop`` is a view of ``image``. ``seg_crop`` is a new
        signed integer array shaped like ``seg`` (int8 when labels fit) with -1 on background outside the
        filled non-zero mask, in every label map; without ``seg`` it is the int8 map of 0 inside and -1
        outside the mask. ``bbox`` holds half-open ``(start, stop)`` per spatial axis; an all-zero image is
        kept whole.
    """
    stacked = seg is not None and seg.ndim == image.ndim
    if seg is not None and seg.shape[stacked:] != image.shape[1:]:
        raise ValueError(f"segmentation shape {seg.shape} differs from image shape {image.shape[1:]}")
    mask = nonzero_mask(image)
    bbox = mask_bbox(mask)
    window = bbox_slices(bbox)
    # Holes never reach outside the box (see autounet.fingerprint.bbox), so filling the crop is enough.
    inside = fill_holes(mask[window])
    image_crop = image[(slice(None), *window)]
    if seg is None:
        return image_crop, np.where(inside, np.int8(0), np.int8(OUTSIDE_LABEL)), bbox
    seg_window = seg[(slice(None), *window)] if stacked else seg[window]
    if seg_window.size:
        dtype = signed_label_dtype(int(seg_window.min()), int(seg_window.max()))
    else:
        dtype = np.dtype(np.int8)
    seg_crop = seg_window.astype(dtype, copy=True)
    outside = ~inside & (seg_crop == 0)  # broadcasts over the label maps of a stacked seg
    seg_crop[outside] = OUTSIDE_LABEL
    return image_crop, seg_crop, bbox
