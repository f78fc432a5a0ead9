"""Activation-size estimate of a network, measured on the network itself.

The planner sizes patches and batches by how many feature-map elements a training step produces. Rather
than a hand-kept formula that can drift from the code, the network is built on PyTorch's ``meta`` device
(no memory, no arithmetic) and run once with hooks that add up the output elements of every convolution
and transposed convolution. This counts the same quantity nnU-Net v2 sums in its
``compute_conv_feature_map_size`` (every conv output, residual shortcuts and segmentation heads), so the
reference values calibrated for nnU-Net's 8 GB budget apply unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from torch import nn

from autounet.networks.spec import UNetSpec
from autounet.networks.unet import build_network

__all__ = ["conv_feature_map_elements"]

_CONVOLUTIONS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_SHAPE_PRESERVING = (nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LeakyReLU)


def conv_feature_map_elements(spec: UNetSpec, patch_size: Sequence[int], in_channels: int, num_outputs: int,
                              deep_supervision: bool = True) -> int:
    """Total output elements of all convolutions for one sample of ``patch_size``.

    Args:
        spec: Network topology.
        patch_size: Spatial input size; must be divisible by ``spec.total_downsampling()``.
        in_channels: Input channels.
        num_outputs: Segmentation outputs.
        deep_supervision: Whether every decoder level has a head (as in training).

    Returns:
        The number of feature-map elements (multiply by the batch size for a batch).
    """
    return _count(spec, tuple(int(p) for p in patch_size), in_channels, num_outputs, deep_supervision)


@lru_cache(maxsize=4096)
def _count(spec: UNetSpec, patch_size: tuple[int, ...], in_channels: int, num_outputs: int,
           deep_supervision: bool) -> int:
    network, counted = _meta_network(spec, in_channels, num_outputs, deep_supervision)
    total = 0

    def add_output(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        total += output[0].numel()  # one sample

    handles = [module.register_forward_hook(add_output) for module in counted]
    try:
        with torch.no_grad():
            network(torch.empty((1, in_channels, *patch_size), device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return total


@lru_cache(maxsize=32)
def _meta_network(spec: UNetSpec, in_channels: int, num_outputs: int,
                  deep_supervision: bool) -> tuple[nn.Module, tuple[nn.Module, ...]]:
    # Building is the slow part (~0.2 s); the planner probes many patch sizes per topology, so reuse it.
    with torch.device("meta"):
        network = build_network(spec, in_channels, num_outputs, deep_supervision)
    # Norms and nonlinearities keep shapes and are slow on the meta device (python decompositions):
    # replacing them changes no convolution's output size and makes one probe ~20x cheaper.
    _strip_shape_preserving_layers(network)
    # A residual shortcut counts once, whether it pools, projects or both; convs inside it are not
    # counted separately.
    counted = tuple(module for name, module in network.named_modules()
                    if (isinstance(module, _CONVOLUTIONS) and ".shortcut." not in name)
                    or (name.endswith(".shortcut") and len(module) > 0))
    return network, counted


def _strip_shape_preserving_layers(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, _SHAPE_PRESERVING):
            setattr(module, name, nn.Identity())
        else:
            _strip_shape_preserving_layers(child)
