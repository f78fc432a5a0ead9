"""Box coder: boxes <-> regression targets relative to anchors, for 2D and 3D (torchvision's ``BoxCoder``).

An anchor with centre ``c`` and extent ``s`` (per axis) encodes a box with centre ``c'`` and extent ``s'``
as ``w_c * (c' - c) / s`` and ``w_s * log(s' / s)`` per axis, the R-CNN parametrisation. Deltas are laid
out as ``(dz, dy, dx, dsz, dsy, dsx)`` in 3D and ``(dy, dx, dsy, dsx)`` in 2D, matching the box layout of
:mod:`autounet.detection.boxes` (centres first, then extents).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from autounet.detection.boxes import box_centers, box_sizes, spatial_dims

__all__ = ["BoxCoder", "detector_coder"]

# Largest log-scale a decoded extent may take: exp(4.135) ~ 62.5 times the anchor, as in torchvision, so that
# an untrained head cannot produce inf boxes.
_DEFAULT_SIZE_CLIP = math.log(1000.0 / 16)


class BoxCoder:
    """Encode boxes as deltas to anchors and decode deltas back.

    Args:
        weights: ``2 * ndim`` weights, one per centre axis then one per extent axis, e.g.
            ``(1, 1, 1, 1, 1, 1)`` in 3D; ``None`` means all ones for whatever dimensionality comes.
        size_clip: Upper bound of the decoded log-scale of extents.
    """

    def __init__(self, weights: Sequence[float] | None = None, size_clip: float = _DEFAULT_SIZE_CLIP) -> None:
        if weights is not None and len(weights) not in (4, 6):
            raise ValueError(f"weights need 4 (2D) or 6 (3D) values, got {len(weights)}")
        self.weights = tuple(float(w) for w in weights) if weights is not None else None
        self.size_clip = size_clip

    def _weights(self, reference: torch.Tensor) -> torch.Tensor:
        ndim = spatial_dims(reference)
        if self.weights is None:
            return torch.ones(2 * ndim, dtype=reference.dtype, device=reference.device)
        if len(self.weights) != 2 * ndim:
            raise ValueError(f"coder has {len(self.weights)} weights but the boxes are {ndim}D")
        return torch.tensor(self.weights, dtype=reference.dtype, device=reference.device)

    def encode(self, boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Regression targets of ``boxes`` relative to ``anchors``.

        Args:
            boxes: ``(N, 2 * ndim)`` target boxes with positive extents.
            anchors: ``(N, 2 * ndim)`` anchors, row ``i`` the reference of ``boxes[i]``.

        Returns:
            ``(N, 2 * ndim)`` deltas.
        """
        if boxes.shape != anchors.shape:
            raise ValueError(f"boxes {tuple(boxes.shape)} and anchors {tuple(anchors.shape)} differ in shape")
        ndim = spatial_dims(anchors)
        weights = self._weights(anchors)
        anchor_sizes = box_sizes(anchors)
        centre = (box_centers(boxes) - box_centers(anchors)) / anchor_sizes
        size = torch.log(box_sizes(boxes) / anchor_sizes)
        return torch.cat([centre * weights[:ndim], size * weights[ndim:]], dim=-1)

    def decode(self, deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Boxes from regression deltas.

        Args:
            deltas: ``(N, 2 * ndim)`` deltas as produced by :meth:`encode` (or a regression head).
            anchors: ``(N, 2 * ndim)`` anchors the deltas refer to.

        Returns:
            ``(N, 2 * ndim)`` boxes in the layout of :mod:`autounet.detection.boxes`.
        """
        if deltas.shape != anchors.shape:
            raise ValueError(f"deltas {tuple(deltas.shape)} and anchors {tuple(anchors.shape)} differ in shape")
        ndim = spatial_dims(anchors)
        anchors = anchors.to(deltas.dtype)
        weights = self._weights(deltas)
        anchor_sizes = box_sizes(anchors)
        centre = box_centers(anchors) + deltas[:, :ndim] / weights[:ndim] * anchor_sizes
        size = torch.exp((deltas[:, ndim:] / weights[ndim:]).clamp(max=self.size_clip)) * anchor_sizes
        return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


# R-CNN's weights (10 for centres, 5 for extents): the regression head's raw outputs move a box a tenth of an
# anchor (centre) and e^(1/5) (extent) per unit, so an untrained head starts near its anchors. With unit weights
# the Retina U-Net's GroupNorm heads start ~0.5 anchor sizes off, the GIoU loss saturates at 1 with no useful
# gradient, and the deltas run away (measured on the toy: regression loss stuck at 1.0 within 10 steps).
_CENTRE_WEIGHT, _EXTENT_WEIGHT = 10.0, 5.0


class _PerDimensionalityCoder(BoxCoder):
    """A coder whose weights follow the boxes' dimensionality (2D or 3D)."""

    def __init__(self, centre_weight: float, extent_weight: float) -> None:
        super().__init__(None)
        self.centre_weight, self.extent_weight = centre_weight, extent_weight

    def _weights(self, reference: torch.Tensor) -> torch.Tensor:
        ndim = spatial_dims(reference)
        values = [self.centre_weight] * ndim + [self.extent_weight] * ndim
        return torch.tensor(values, dtype=reference.dtype, device=reference.device)


def detector_coder() -> BoxCoder:
    """The coder the Retina U-Net and its losses use by default: R-CNN's weights (10 centres, 5 extents), in
    2D and 3D alike."""
    return _PerDimensionalityCoder(_CENTRE_WEIGHT, _EXTENT_WEIGHT)
