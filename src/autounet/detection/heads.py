"""Detection heads: per anchor, class logits and box-regression deltas, shared across pyramid levels.

A head is a small conv tower (3x3 conv, group norm, leaky ReLU) and a final 3x3 conv giving ``A * K`` values per
feature-map position (``A`` anchor shapes per position, ``K`` classes or ``2 * ndim`` deltas). The same weights
run on every level, so every level must have the same number of channels (:class:`RetinaUNet` projects the
decoder features to one width first). Outputs are flattened position-major, shape-minor and concatenated level
by level, the order :class:`~autounet.detection.anchors.AnchorGenerator` lays out anchors in, so row ``i`` of a
head's output belongs to anchor ``i``.

The losses of these outputs live in :mod:`autounet.detection.losses`: the trainer hands the loss the outputs
only, so the loss cannot reach the head modules (unlike torchvision's ``compute_loss`` methods).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from autounet.networks.blocks import conv_class

__all__ = ["ClassificationHead", "RegressionHead"]


def _group_norm(channels: int) -> nn.GroupNorm:
    # Group norm as in nnDetection's heads: statistics per sample and group, independent of the batch size.
    return nn.GroupNorm(math.gcd(channels, 16), channels)


class _AnchorHead(nn.Module):
    """Conv tower plus a final conv giving ``values_per_anchor`` numbers for each of ``num_anchors`` anchors."""

    def __init__(self, ndim: int, in_channels: int, num_anchors: int, values_per_anchor: int, num_convs: int,
                 channels: int | None) -> None:
        super().__init__()
        if num_anchors < 1 or values_per_anchor < 1:
            raise ValueError(f"a head needs at least one anchor and one value, got {num_anchors}, {values_per_anchor}")
        conv = conv_class(ndim)
        width = channels or in_channels
        layers: list[nn.Module] = []
        for index in range(num_convs):
            layers += [conv(in_channels if index == 0 else width, width, 3, 1, 1), _group_norm(width),
                       nn.LeakyReLU(0.01, inplace=True)]
        self.tower = nn.Sequential(*layers)
        self.output = conv(width if num_convs else in_channels, num_anchors * values_per_anchor, 3, 1, 1)
        self.ndim = ndim
        self.num_anchors = num_anchors
        self.values_per_anchor = values_per_anchor
        for module in self.tower.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.output.weight, std=0.01)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(B, sum over levels of positions * A, values_per_anchor)`` from per-level feature maps."""
        outputs = []
        for feature in features:
            value = self.output(self.tower(feature))  # (B, A * K, *spatial)
            batch, spatial = value.shape[0], value.shape[2:]
            value = value.reshape(batch, self.num_anchors, self.values_per_anchor, *spatial)
            # (B, A, K, *S) -> (B, *S, A, K): position-major, shape-minor, as the anchors are ordered.
            value = value.permute(0, *range(3, 3 + self.ndim), 1, 2)
            outputs.append(value.reshape(batch, -1, self.values_per_anchor))
        return torch.cat(outputs, dim=1)


class ClassificationHead(_AnchorHead):
    """Class logits per anchor (sigmoid per class, no background class), RetinaNet style.

    Args:
        ndim: 2 or 3 spatial axes.
        in_channels: Channels of every level's feature map.
        num_anchors: Anchor shapes per position.
        num_classes: Foreground classes.
        num_convs: Convolutions of the tower.
        channels: Width of the tower; ``None``: ``in_channels``.
        prior_probability: Initial foreground probability of every anchor; the bias ``-log((1 - p) / p)``
            keeps the loss of the many negatives from swamping the first steps (Lin et al., 2017).
    """

    def __init__(self, ndim: int, in_channels: int, num_anchors: int, num_classes: int, num_convs: int = 2,
                 channels: int | None = None, prior_probability: float = 0.01) -> None:
        super().__init__(ndim, in_channels, num_anchors, num_classes, num_convs, channels)
        if not 0 < prior_probability < 1:
            raise ValueError(f"prior_probability must lie in (0, 1), got {prior_probability}")
        nn.init.constant_(self.output.bias, -math.log((1 - prior_probability) / prior_probability))
        self.num_classes = num_classes


class RegressionHead(_AnchorHead):
    """Box-regression deltas per anchor, ``2 * ndim`` of them (see :class:`~autounet.detection.coder.BoxCoder`).

    Args:
        ndim: 2 or 3 spatial axes.
        in_channels: Channels of every level's feature map.
        num_anchors: Anchor shapes per position.
        num_convs: Convolutions of the tower.
        channels: Width of the tower; ``None``: ``in_channels``.
    """

    def __init__(self, ndim: int, in_channels: int, num_anchors: int, num_convs: int = 2,
                 channels: int | None = None) -> None:
        super().__init__(ndim, in_channels, num_anchors, 2 * ndim, num_convs, channels)
        nn.init.zeros_(self.output.bias)
