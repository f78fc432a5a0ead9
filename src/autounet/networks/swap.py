"""Switching modules of a built network to equivalent subclasses in place (faster CPU training parts)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["switch_module_classes"]


def switch_module_classes(network: nn.Module, replacement_for: Callable[[nn.Module], type[nn.Module] | None]) -> int:
    """Give every module of ``network`` for which ``replacement_for`` names a class that class, in place.

    Only ``__class__`` changes, as ``torch.nn.utils.parametrize`` does: the replacements are subclasses adding
    no state, so parameters, buffers and state-dict keys stay and checkpoints load either way.

    Args:
        network: Any module (itself included in the walk).
        replacement_for: The subclass a module should become, or ``None`` to leave it.

    Returns:
        How many modules were switched.
    """
    switched = 0
    for module in network.modules():
        replacement = replacement_for(module)
        if replacement is not None:
            module.__class__ = replacement
            switched += 1
    return switched
