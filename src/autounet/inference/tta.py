"""Mirroring test-time augmentation for one batch of patches."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch

__all__ = ["mirror_dim_combinations", "predict_mirrored"]


def mirror_dim_combinations(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Tensor dims to flip for every subset of ``mirror_axes``, the empty subset (no flip) first.

    Args:
        mirror_axes: Spatial axes of a patch, 0-based (axis 0 is the first axis after batch and channel).

    Returns:
        ``2 ** len(mirror_axes)`` tuples of dims of a ``(B, C, *patch)`` tensor (``axis + 2``), smaller
        subsets first, as nnU-Net's pass order.
    """
    dims = [axis + 2 for axis in mirror_axes]
    return [combo for size in range(len(dims) + 1) for combo in itertools.combinations(dims, size)]


def predict_mirrored(model: Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]], patches: torch.Tensor,
                     flip_dims: Sequence[tuple[int, ...]], expected_shape: tuple[int, ...],
                     device: torch.device) -> torch.Tensor:
    """Sum of the model's logits over mirrored copies of a batch, each flipped back (not yet averaged).

    Args:
        model: Maps ``(B, C, *patch)`` to logits ``(B, K, *patch)``, or to a list/tuple whose element 0 is
            that (deep supervision).
        patches: Batch ``(B, C, *patch)`` on ``device``.
        flip_dims: Dims to flip per pass (from :func:`mirror_dim_combinations`); ``()`` is the plain pass.
        expected_shape: ``(K, *patch)``, the logits shape per window, checked on every pass.
        device: Where the summed logits live.

    Returns:
        Float32 tensor ``(B, K, *patch)`` on ``device``, owned by the caller (never the model's own output
        buffer, so in-place updates are safe).

    Raises:
        ValueError: The model returned logits of another shape.
    """
    total: torch.Tensor | None = None
    for dims in flip_dims:
        output = model(torch.flip(patches, dims) if dims else patches)
        if isinstance(output, (list, tuple)):
            output = output[0]
        if tuple(output.shape) != (patches.shape[0], *expected_shape):
            raise ValueError(f"model returned logits of shape {tuple(output.shape)} for patches of shape "
                             f"{tuple(patches.shape)}; expected {(patches.shape[0], *expected_shape)}")
        output = output.to(device=device)
        if dims:
            output = torch.flip(output, dims)  # a fresh tensor
        if total is None:
            # A model may return (a view of) its input or a reused buffer: copy unless flip already did.
            total = output.to(torch.float32, copy=not dims)
        else:
            total.add_(output)
    if total is None:
        raise ValueError("flip_dims must contain at least one pass")
    return total
