"""One-dimensional resampling along one axis, exactly as ``scipy.ndimage.zoom`` does it, but separably.

``skimage.transform.resize`` (which nnU-Net calls per channel and slice) is ``scipy.ndimage.zoom`` with
``grid_mode=True`` and ``mode="nearest"``: B-spline interpolation at output positions
``(i + 0.5) * n_in / n_out - 0.5``, after a spline prefilter of the input padded by 12 edge voxels. Both
steps are separable, so the N-D result equals a sequence of 1-D passes, one per axis whose length changes:
``k + 1`` multiply-adds per output voxel and pass (a sparse matrix product), instead of ``(k + 1) ** N``
taps per output voxel in one N-D pass. Axes whose length does not change are skipped (at an unchanged length the spline
reproduces its input).
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.ndimage as ndi
from scipy import sparse

__all__ = ["resample_axis", "taps"]

# scipy pads by this many edge voxels before prefiltering in mode "nearest" (_prepad_for_spline_filter).
_SPLINE_PAD = 12


def _coordinates(n_in: int, n_out: int, pad: int) -> np.ndarray:
    return (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5 + pad


@functools.lru_cache(maxsize=256)
def taps(n_in: int, n_out: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Input indices and weights of each output sample of a 1-D resize.

    Args:
        n_in: Input length (before padding).
        n_out: Output length.
        order: Spline order 0-5.

    Returns:
        ``indices`` (intp) and ``weights`` (float32), both ``(taps, n_out)``. For ``order > 1`` the indices
        refer to the prefiltered input padded by :data:`_SPLINE_PAD` on both sides.
    """
    if order == 0:
        # Ask scipy which sample it picks, so that ties (x.5 positions) are broken exactly as it does.
        picked = ndi.map_coordinates(np.arange(n_in, dtype=np.float64), _coordinates(n_in, n_out, 0)[None],
                                     order=0, mode="nearest")
        return picked.astype(np.intp)[None], np.ones((1, n_out), dtype=np.float32)
    if order == 1:
        x = _coordinates(n_in, n_out, 0)
        base = np.floor(x)
        t = x - base
        indices = np.clip(np.stack([base, base + 1]), 0, n_in - 1).astype(np.intp)
        return indices, np.stack([1.0 - t, t]).astype(np.float32)
    if order == 3:
        x = _coordinates(n_in, n_out, _SPLINE_PAD)
        base = np.floor(x)
        t = x - base
        weights = np.stack([(1 - t) ** 3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6,
                            (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6, t**3 / 6])
        indices = np.stack([base - 1, base, base + 1, base + 2]).astype(np.intp)
        return indices, weights.astype(np.float32)
    return _taps_from_scipy(n_in, n_out, order)


def _taps_from_scipy(n_in: int, n_out: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    # Rare orders (2, 4, 5): read the weights off scipy's own interpolation of unit impulses.
    length = n_in + 2 * _SPLINE_PAD
    coordinates = _coordinates(n_in, n_out, _SPLINE_PAD)[None]
    matrix = np.zeros((n_out, length))
    impulse = np.zeros(length)
    for j in range(length):
        impulse[j] = 1.0
        matrix[:, j] = ndi.map_coordinates(impulse, coordinates, order=order, mode="nearest", prefilter=False)
        impulse[j] = 0.0
    count = max(1, int((matrix != 0).sum(axis=1).max()))
    indices = np.zeros((count, n_out), dtype=np.intp)
    weights = np.zeros((count, n_out), dtype=np.float32)
    for i in range(n_out):
        nonzero = np.flatnonzero(matrix[i])
        indices[: nonzero.size, i] = nonzero
        weights[: nonzero.size, i] = matrix[i, nonzero]
    return indices, weights


@functools.lru_cache(maxsize=256)
def _operator(n_in: int, n_out: int, order: int) -> sparse.csr_matrix:
    """The resize as a sparse ``(n_out, n_in [+ padding])`` matrix with ``order + 1`` entries per row."""
    indices, weights = taps(n_in, n_out, order)
    count = indices.shape[0]
    columns = n_in + 2 * _SPLINE_PAD if order > 1 else n_in
    # Clamped border taps may repeat a column within a row; the product sums such entries, as it should.
    return sparse.csr_matrix((weights.T.ravel(), indices.T.ravel(), np.arange(0, count * n_out + 1, count)),
                             shape=(n_out, columns))


def resample_axis(data: np.ndarray, axis: int, n_out: int, order: int) -> np.ndarray:
    """Resize one axis of an array with a spline of the given order (``skimage`` ``resize`` semantics).

    The interpolation is one sparse matrix product per slab, which reads each input row ``order + 1``
    times and writes each output value once, with no full-size temporaries.

    Args:
        data: Array of any shape; float32 for ``order > 0``, any dtype for ``order == 0``.
        axis: The axis to resize.
        n_out: Its new length.
        order: Spline order (0: nearest, 1: linear, 3: cubic).

    Returns:
        A new C-contiguous array; float32 for ``order > 0``, ``data``'s dtype for ``order == 0``. Not
        clipped.
    """
    n_in = data.shape[axis]
    if order == 0:
        return np.take(data, taps(n_in, n_out, 0)[0][0], axis=axis)
    operator = _operator(n_in, n_out, order)
    if order > 1:
        widths = [(0, 0)] * data.ndim
        widths[axis] = (_SPLINE_PAD, _SPLINE_PAD)
        data = np.pad(data, widths, mode="edge")
        ndi.spline_filter1d(data, order, axis=axis, mode="nearest", output=data)
    data = np.ascontiguousarray(data, dtype=np.float32)
    before, after = int(np.prod(data.shape[:axis])), int(np.prod(data.shape[axis + 1:]))
    out = np.empty((*data.shape[:axis], n_out, *data.shape[axis + 1:]), dtype=np.float32)
    source = data.reshape(before, data.shape[axis], after)
    target = out.reshape(before, n_out, after)
    if after == 1:
        target[:, :, 0] = (operator @ source[:, :, 0].T).T
    else:
        for slab in range(before):
            target[slab] = operator @ source[slab]
    return out
