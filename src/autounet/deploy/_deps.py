"""Errors of the deploy stage and the lazy import of its optional packages."""

from __future__ import annotations

import importlib
from types import ModuleType

from autounet.errors import AutounetError

__all__ = ["DeployError", "MissingDependencyError", "OnnxModelError", "require"]

_INSTALL_HINT = "pip install 'autounet[deploy]'"


class DeployError(AutounetError):
    """Export, quantization or a deployed model cannot proceed."""


class MissingDependencyError(DeployError):
    """An optional package of the ``deploy`` extra is not installed."""


class OnnxModelError(DeployError):
    """An ONNX file is unreadable (corrupted, truncated) or does not fit the plan it is used with."""


def require(module: str) -> ModuleType:
    """Import an optional package of the ``deploy`` extra.

    Args:
        module: Dotted module name, e.g. ``"onnxruntime"``.

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: The package is not installed (one line naming what to install).
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(f"deployment needs the package '{module.split('.')[0]}' ({error}); "
                                     f"install the deploy extra: {_INSTALL_HINT}") from None
