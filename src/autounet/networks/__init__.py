"""U-Net networks built from a plan's :class:`UNetSpec`, and their activation-size estimate."""

from __future__ import annotations

from autounet.networks.memory import conv_feature_map_elements
from autounet.networks.spec import EncoderKind, UNetSpec
from autounet.networks.unet import Decoder, Encoder, UNet, build_network

__all__ = ["Decoder", "Encoder", "EncoderKind", "UNet", "UNetSpec", "build_network", "conv_feature_map_elements"]
