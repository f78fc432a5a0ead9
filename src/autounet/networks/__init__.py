"""Networks built by name from a plan's :class:`UNetSpec` (a registry), their parts, and their activation-size
estimate.

The torch-backed names load lazily: plans import :class:`UNetSpec`, and preprocessing workers that only
need the spec should not pay for importing torch (about 2 s and 180 MB per process).
"""

from __future__ import annotations

import importlib
from typing import Any

from autounet.networks.spec import EncoderKind, UNetSpec

__all__ = ["Decoder", "Encoder", "EncoderKind", "SegmentationHeads", "UNet", "UNetSpec", "build_network",
           "conv_feature_map_elements", "full_resolution_head_key", "inference_state_dict", "network_names",
           "register_network", "use_group_norm_instance_norms", "use_stacked_weight_gradient"]

_LAZY = {"Decoder": "unet", "Encoder": "unet", "UNet": "unet", "build_network": "registry",
         "conv_feature_map_elements": "memory", "SegmentationHeads": "heads", "inference_state_dict": "unet",
         "full_resolution_head_key": "unet", "network_names": "registry", "register_network": "registry",
         "use_stacked_weight_gradient": "weight_gradient", "use_group_norm_instance_norms": "group_norm"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"autounet.networks.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'autounet.networks' has no attribute {name!r}")
