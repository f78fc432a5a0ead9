"""Gaussian importance weights for blending overlapping sliding-window predictions.

Window borders see less context than window centres, so their predictions are less reliable; weighting every
window's logits with a Gaussian centred on the window before averaging suppresses the border artefacts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["gaussian_importance_map"]

# scipy.ndimage.gaussian_filter's default truncation: the kernel ends at 4 standard deviations.
_TRUNCATE = 4.0


def gaussian_importance_map(patch_size: Sequence[int], sigma_scale: float = 1.0 / 8,
                            value_scaling_factor: float = 10.0, device: torch.device | str | None = None,
                            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gaussian weight map over one patch, with the values of nnU-Net's importance map.

    nnU-Net filters a unit impulse at ``patch_size // 2`` with ``scipy.ndimage.gaussian_filter`` (sigma =
    ``patch * sigma_scale`` per axis, constant-0 borders, kernel truncated at 4 sigma), rescales the result to
    a maximum of ``value_scaling_factor`` and replaces zeros by the smallest non-zero value. That filtered
    impulse is the product of the truncated 1D kernels, and the rescaling cancels their normalisation, so the
    map is computed here in closed form: ``value_scaling_factor * prod_d exp(-(i_d - c_d)^2 / (2 sigma_d^2))``
    inside the truncation radius, 0 outside (then replaced). It is built in float64 and cast to ``dtype``.

    Args:
        patch_size: Patch size in voxels, in array axis order (``(Z, Y, X)`` or ``(Y, X)``).
        sigma_scale: Standard deviation as a fraction of the patch size, per axis.
        value_scaling_factor: Value at the centre voxel (the maximum).
        device: Device of the returned tensor (default: CPU).
        dtype: Floating dtype of the returned tensor.

    Returns:
        Tensor of shape ``patch_size`` and ``dtype``; all values > 0, maximum ``value_scaling_factor`` at
        ``patch_size // 2``.

    Raises:
        ValueError: A patch extent < 1, or ``sigma_scale`` or ``value_scaling_factor`` not positive.
    """
    if not patch_size or any(int(p) < 1 for p in patch_size):
        raise ValueError(f"patch_size must hold positive extents, got {tuple(patch_size)}")
    if sigma_scale <= 0 or value_scaling_factor <= 0:
        raise ValueError(f"sigma_scale and value_scaling_factor must be > 0, got {sigma_scale}, {value_scaling_factor}")
    weights = torch.full((), float(value_scaling_factor), dtype=torch.float64)
    for axis, extent in enumerate(int(p) for p in patch_size):
        sigma = extent * sigma_scale
        # scipy's kernel radius; voxels farther from the centre than this get exactly 0 from the filter.
        radius = int(_TRUNCATE * sigma + 0.5)
        offsets = torch.arange(extent, dtype=torch.float64) - extent // 2
        profile = torch.exp(-0.5 * offsets.square() / (sigma * sigma))
        profile[offsets.abs() > radius] = 0.0
        shape = [1] * len(patch_size)
        shape[axis] = extent
        weights = weights * profile.reshape(shape)
    weights = weights.to(dtype=dtype)
    # A zero weight could leave a voxel covered only by window borders with a 0 / 0 average.
    zero = weights == 0
    if bool(zero.any()):
        weights[zero] = weights[~zero].min()
    return weights.to(device=device if device is not None else "cpu")

