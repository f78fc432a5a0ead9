"""Tiny networks shared by the deploy tests; tests that need the deploy extra skip without it."""

from __future__ import annotations

from autounet.networks.spec import EncoderKind, UNetSpec
from autounet.networks.unet import UNet, build_network


def tiny_network(ndim: int, encoder: EncoderKind = "plain", in_channels: int = 2, num_outputs: int = 3) -> UNet:
    """A 3-stage U-Net (total stride 4) with random weights, in eval mode."""
    spec = UNetSpec(ndim, encoder, (4, 8, 8), ((3,) * ndim,) * 3, ((1,) * ndim, (2,) * ndim, (2,) * ndim),
                    (1, 1, 1), (1, 1))
    return build_network(spec, in_channels, num_outputs, deep_supervision=False).eval()
