"""Line labels from predictions: thinning a predicted band to a one-voxel line, and lines as the boundary
between two labels of another map (a calving front as the border between glacier and ocean).

Line tasks are trained on dilated lines (a one-pixel target is too thin to learn), so their predictions are
bands a few pixels wide; the mean distance error wants the line itself. Thinning is scikit-image's
skeletonisation (Zhang's method in 2D, Lee's in 3D), which keeps the band's topology and its centre.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.morphology import skeletonize

from autounet.dataset.derived import boundary_mask

__all__ = ["boundary_between", "thin_to_line"]


def thin_to_line(mask: np.ndarray) -> np.ndarray:
    """The one-voxel-wide centre line of a binary mask, same shape, ``bool``.

    Axes of length 1 (a 2D image stored as ``(1, Y, X)``) are dropped for the thinning, so a 2D band is
    thinned as a 2D image.
    """
    mask = np.asarray(mask).astype(bool)
    squeezed = mask.reshape([n for n in mask.shape if n > 1] or [1])
    if squeezed.ndim not in (2, 3):  # a point or a 1D strip is already as thin as it gets
        return mask.copy()
    return skeletonize(squeezed).astype(bool).reshape(mask.shape)


def boundary_between(labels: np.ndarray, inside: int | Sequence[int], outside: int | Sequence[int]) -> np.ndarray:
    """Voxels of label(s) ``inside`` that touch (share a face with) a voxel of label(s) ``outside``.

    The calving front as nnU-Net's glacier fork extracts it from a zone map: glacier pixels next to ocean.

    Args:
        labels: Integer label map.
        inside: The label (or labels) whose border voxels form the line.
        outside: The label (or labels) they must touch.

    Returns:
        Boolean mask, same shape as ``labels``.
    """
    def values(given: int | Sequence[int]) -> tuple[int, ...]:
        return (int(given),) if isinstance(given, int | np.integer) else tuple(int(v) for v in given)
    return boundary_mask(labels, values(inside), values(outside))
