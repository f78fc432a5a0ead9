"""Image shapes under resampling; torch-free, so preprocessing workers can use it cheaply."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["compute_new_shape"]


def compute_new_shape(shape: Sequence[float], spacing: Sequence[float],
                      target_spacing: Sequence[float]) -> tuple[int, ...]:
    """Shape after resampling: ``round(spacing / target_spacing * shape)`` per axis, in nnU-Net's operation
    order (the order matters for rounding at .5). At least 1 per axis: a very thin axis must not vanish.

    The one definition for planning (which predicts shapes) and preprocessing (which produces them).
    """
    if not len(shape) == len(spacing) == len(target_spacing):
        raise ValueError(f"shape {tuple(shape)}, spacing {tuple(spacing)} and target {tuple(target_spacing)} "
                         "need the same number of axes")
    return tuple(max(1, int(round(sp / t * s))) for s, sp, t in zip(shape, spacing, target_spacing, strict=True))
