"""Networks by name: plans store a registry key (``"unet"``), never a Python path.

A builder takes ``(spec, in_channels, num_outputs, deep_supervision)`` and returns an ``nn.Module``;
:func:`register_network` adds one under a name (duplicates are refused), :func:`build_network` builds the one a
plan's spec names. The built-in networks register themselves when :mod:`autounet.networks.unet` and
:mod:`autounet.detection.retina_unet` are imported, which :func:`build_network` makes sure of.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from autounet.networks.spec import UNetSpec
from autounet.registry import Registry

if TYPE_CHECKING:
    from torch import nn

__all__ = ["NetworkBuilder", "build_network", "network_builder", "network_names", "register_network"]

NetworkBuilder = Callable[[UNetSpec, int, int, bool], "nn.Module"]
"""``(spec, in_channels, num_outputs, deep_supervision) -> network``."""

_BUILDERS: Registry[NetworkBuilder] = Registry("network")
# Modules whose import registers the built-in networks. The Retina U-Net lives in ``detection`` (it composes
# anchors, coder and heads from there, and ``networks`` may not import downstream stages); it is named here as a
# module string, loaded on lookup like a plugin, so a plan naming ``retina_unet`` builds it from any stage.
_BUILT_IN_MODULES = ("autounet.networks.unet", "autounet.networks.branching", "autounet.detection.retina_unet")


def register_network(name: str) -> Callable[[NetworkBuilder], NetworkBuilder]:
    """Decorator registering a network builder under ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """
    return _BUILDERS.register(name)


def network_names() -> tuple[str, ...]:
    """Names of the registered networks, sorted."""
    _load_built_ins()
    return _BUILDERS.names()


def network_builder(name: str) -> NetworkBuilder:
    """The builder registered as ``name``.

    Raises:
        ConfigError: No network of that name ("did you mean" the closest).
    """
    _load_built_ins()
    return _BUILDERS.get(name)


def build_network(spec: UNetSpec, in_channels: int, num_outputs: int, deep_supervision: bool = True) -> nn.Module:
    """Build the network ``spec.kind`` names.

    Args:
        spec: Topology from the plan; ``spec.kind`` is the registry key.
        in_channels: Input channels (image channels, plus one-hot previous-stage channels for a cascade).
        num_outputs: Output channels (classes incl. background, or regions).
        deep_supervision: Return outputs of every decoder level for the deep-supervision loss.

    Raises:
        ConfigError: No network of that name ("did you mean" the closest).
    """
    return network_builder(spec.kind)(spec, in_channels, num_outputs, deep_supervision)


def _load_built_ins() -> None:
    for module in _BUILT_IN_MODULES:
        importlib.import_module(module)
