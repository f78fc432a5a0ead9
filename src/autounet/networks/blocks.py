"""Building blocks: convolution-norm-nonlinearity stacks and residual blocks, for 2D and 3D."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ConvNormAct", "ResidualBlock", "conv_class", "norm_class", "transposed_conv_class"]


def conv_class(ndim: int) -> type[nn.Conv2d] | type[nn.Conv3d]:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    return nn.Conv3d if ndim == 3 else nn.Conv2d


def transposed_conv_class(ndim: int) -> type[nn.ConvTranspose2d] | type[nn.ConvTranspose3d]:
    """``nn.ConvTranspose2d`` or ``nn.ConvTranspose3d``."""
    return nn.ConvTranspose3d if ndim == 3 else nn.ConvTranspose2d


def norm_class(ndim: int) -> type[nn.InstanceNorm2d] | type[nn.InstanceNorm3d]:
    """Instance norm: batch sizes are tiny (2) in 3D segmentation, so batch statistics would be noise."""
    return nn.InstanceNorm3d if ndim == 3 else nn.InstanceNorm2d


def _same_padding(kernel: Sequence[int]) -> tuple[int, ...]:
    return tuple((k - 1) // 2 for k in kernel)


class ConvNormAct(nn.Sequential):
    """Convolution -> instance norm (affine) -> leaky ReLU (slope 0.01)."""

    def __init__(self, ndim: int, in_channels: int, out_channels: int, kernel: Sequence[int],
                 stride: Sequence[int], activation: bool = True, bias: bool = True) -> None:
        layers: list[nn.Module] = [
            conv_class(ndim)(in_channels, out_channels, tuple(kernel), tuple(stride), _same_padding(kernel), bias=bias),
            norm_class(ndim)(out_channels, eps=1e-5, affine=True),
        ]
        if activation:
            layers.append(nn.LeakyReLU(0.01, inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Basic residual block, "D" variant: the shortcut downsamples by average pooling before a 1x1 conv,
    which keeps all input information instead of skipping voxels with a strided 1x1 conv."""

    def __init__(self, ndim: int, in_channels: int, out_channels: int, kernel: Sequence[int],
                 stride: Sequence[int]) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(ndim, in_channels, out_channels, kernel, stride)
        self.conv2 = ConvNormAct(ndim, out_channels, out_channels, kernel, [1] * ndim, activation=False)
        self.activation = nn.LeakyReLU(0.01, inplace=True)
        shortcut: list[nn.Module] = []
        if any(s != 1 for s in stride):
            pool = nn.AvgPool3d if ndim == 3 else nn.AvgPool2d
            shortcut.append(pool(tuple(stride), tuple(stride)))
        if in_channels != out_channels:
            # No bias: the norm right after it makes a bias redundant.
            shortcut.append(ConvNormAct(ndim, in_channels, out_channels, [1] * ndim, [1] * ndim, activation=False,
                                        bias=False))
        self.shortcut = nn.Sequential(*shortcut)
        # Zero the last norm's scale so each block starts as the identity: stabler early training.
        nn.init.zeros_(self.conv2[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual sum followed by the nonlinearity."""
        return self.activation(self.conv2(self.conv1(x)) + self.shortcut(x))
