"""Model sharing: export trained configurations to a zip archive, and install one (from a file or a URL)
after checking it completely (safe member names, no links, bounded size, SHA-256 of every member,
checkpoints loadable with ``weights_only=True``)."""

from __future__ import annotations

from autounet.sharing.export import export_model
from autounet.sharing.install import DEFAULT_MAX_BYTES, InstalledModel, install_model
from autounet.sharing.manifest import MANIFEST_NAME, MODEL_FORMAT, ModelManifest

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MANIFEST_NAME",
    "MODEL_FORMAT",
    "InstalledModel",
    "ModelManifest",
    "export_model",
    "install_model",
]
