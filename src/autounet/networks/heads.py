"""Output heads: map decoder feature maps to per-voxel outputs. The one place that knows output channels."""

from __future__ import annotations

import torch
from torch import nn

from autounet.networks.blocks import conv_class
from autounet.networks.spec import UNetSpec

__all__ = ["SegmentationHeads"]


class SegmentationHeads(nn.Module):
    """A 1x1 convolution per decoder level giving segmentation logits (deep supervision), or only the
    full-resolution one.

    ``levels`` is ordered from the decoder level just above the bottleneck down to full resolution, so its
    last entry is the full-resolution head (checkpoints keep that order: ``heads.levels.N``).

    Args:
        spec: The U-Net topology (feature widths per stage).
        num_outputs: Output channels (classes incl. background, or regions).
        deep_supervision: Keep a head for every decoder level; otherwise only the full-resolution one.
    """

    def __init__(self, spec: UNetSpec, num_outputs: int, deep_supervision: bool) -> None:
        super().__init__()
        self.deep_supervision = deep_supervision
        heads = [conv_class(spec.ndim)(spec.features_per_stage[level - 1], num_outputs, 1, 1, 0, bias=True)
                 for level in range(spec.num_stages - 1, 0, -1)]
        # Every head is created, so construction draws the same random numbers either way; without deep
        # supervision only the full-resolution one is kept, so the network holds no unused weights.
        self.levels = nn.ModuleList(heads if deep_supervision else heads[-1:])

    @property
    def num_inputs(self) -> int:
        """How many decoder feature maps (from full resolution down) :meth:`forward` needs."""
        return len(self.levels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """Logits from decoder features given full resolution first: a tensor at full resolution, or (deep
        supervision) a list of tensors, full resolution first."""
        if not self.deep_supervision:
            return self.levels[-1](features[0])
        return [head(feature) for head, feature in zip(reversed(self.levels), features, strict=True)]
