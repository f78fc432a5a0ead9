"""Model sharing: export trained configurations (or a deployed model folder) to a zip archive, and install
one (from a file or a URL) after checking it completely (safe member names, no links, bounded size, SHA-256
of every member, checkpoints loadable with ``weights_only=True``).

The names load lazily: the CLI builds its parser (``autounet -h``) without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MANIFEST_NAME",
    "MODEL_FORMAT",
    "InstalledModel",
    "ModelManifest",
    "export_deployed_model",
    "export_model",
    "install_model",
]

_LAZY = {"DEFAULT_MAX_BYTES": "manifest", "MANIFEST_NAME": "manifest", "MODEL_FORMAT": "manifest",
         "ModelManifest": "manifest", "InstalledModel": "install", "install_model": "install",
         "export_model": "export", "export_deployed_model": "export"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"autounet.sharing.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'autounet.sharing' has no attribute {name!r}")
