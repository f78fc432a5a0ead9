"""Networks by name: plans store a registry key (``"unet"``), never a Python path.

A builder takes ``(spec, in_channels, num_outputs, deep_supervision)`` and returns an ``nn.Module``;
:func:`register_network` adds one under a name (duplicates are refused), :func:`build_network` builds the one a
plan's spec names. The built-in networks register themselves when :mod:`autounet.networks.unet` is imported,
which :func:`build_network` makes sure of.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from autounet.errors import ConfigError
from autounet.networks.spec import UNetSpec

if TYPE_CHECKING:
    from torch import nn

__all__ = ["NetworkBuilder", "build_network", "network_names", "register_network"]

NetworkBuilder = Callable[[UNetSpec, int, int, bool], "nn.Module"]
"""``(spec, in_channels, num_outputs, deep_supervision) -> network``."""

_BUILDERS: dict[str, NetworkBuilder] = {}
# Modules whose import registers the built-in networks.
_BUILT_IN_MODULES = ("autounet.networks.unet",)


def register_network(name: str) -> Callable[[NetworkBuilder], NetworkBuilder]:
    """Decorator registering a network builder under ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def register(builder: NetworkBuilder) -> NetworkBuilder:
        if name in _BUILDERS:
            raise ValueError(f"network '{name}' is already registered")
        _BUILDERS[name] = builder
        return builder

    return register


def network_names() -> tuple[str, ...]:
    """Names of the registered networks, sorted."""
    _load_built_ins()
    return tuple(sorted(_BUILDERS))


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
    _load_built_ins()
    builder = _BUILDERS.get(spec.kind)
    if builder is None:
        close = difflib.get_close_matches(spec.kind, _BUILDERS, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(_BUILDERS))}"
        raise ConfigError(f"unknown network '{spec.kind}' in the plan ({hint})")
    return builder(spec, in_channels, num_outputs, deep_supervision)


def _load_built_ins() -> None:
    for module in _BUILT_IN_MODULES:
        importlib.import_module(module)
