"""Helpers shared by the tests of network parts that replace modules in place."""

from __future__ import annotations

import torch
from torch import nn

from autounet.networks import build_network
from autounet.networks.spec import UNetSpec


def twin_3d_networks(first_features: int, in_channels: int) -> tuple[nn.Module, nn.Module]:
    """Two identical two-stage 3D U-Nets (3 outputs, no deep supervision), to switch parts in one of them."""
    spec = UNetSpec(3, "plain", (first_features, 2 * first_features), ((3, 3, 3), (3, 3, 3)),
                    ((1, 1, 1), (2, 2, 2)), (2, 2), (2,))
    torch.manual_seed(0)
    network = build_network(spec, in_channels, 3, deep_supervision=False)
    twin = build_network(spec, in_channels, 3, deep_supervision=False)
    twin.load_state_dict(network.state_dict())
    return network, twin
