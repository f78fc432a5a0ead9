"""The manifest of a shared-model archive (``autounet_model.json``) and the rules for member names.

An archive made by ``autounet export-model`` holds, besides the manifest at its top level::

    <DatasetName>/<configuration>/plans.json
    <DatasetName>/<configuration>/dataset.json
    <DatasetName>/<configuration>/postprocessing.json          (when the model folder has one)
    <DatasetName>/<configuration>/fold_<f>/<checkpoint>        (weights and metadata only)
    <DatasetName>/find_best/{choice.json,postprocessing.json}  (when they exist)

An archive of a deployed model folder (``autounet deploy``; ``kind`` ``"deployed"``) holds that folder as
``<DatasetName>/<folder name>/`` instead: ``deploy.json``, ``plans.json``, ``dataset.json``,
``postprocessing.json`` (when present) and ``fold_<f>/model.onnx``.

Every member is listed in the manifest with its SHA-256, so an installer can reject an archive that was
altered or truncated before it writes anything.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEPLOYED_MODEL_FILE",
    "FIND_BEST_FOLDER",
    "MANIFEST_NAME",
    "MODEL_FORMAT",
    "ModelManifest",
    "is_safe_component",
    "sha256_of_file",
]

# Largest archive (and extracted size) install-model accepts unless told otherwise.
DEFAULT_MAX_BYTES = 16 << 30

MANIFEST_NAME = "autounet_model.json"
MODEL_FORMAT = "autounet-model"
FIND_BEST_FOLDER = "find_best"
DEPLOYED_MODEL_FILE = "model.onnx"

# One path component of a member name: what dataset, configuration, fold and file names use. Deliberately
# narrow (no spaces, colons, backslashes, control characters), so a name means the same on every OS.
_SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
_CHUNK_BYTES = 1 << 20


def is_safe_component(text: str) -> bool:
    """Whether ``text`` can be one component of a member name: letters, digits, ``_ . + -``, not ``.``/``..``.

    Args:
        text: A dataset, configuration, fold folder or file name.

    Returns:
        ``True`` when it is a single, portable, non-special path component.
    """
    return bool(_SAFE_COMPONENT.match(text)) and text not in (".", "..") and len(text) <= 255


def sha256_of_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (checkpoints can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelManifest:
    """What a shared-model archive holds; saved as ``autounet_model.json`` at its top level.

    Attributes:
        format: Always ``"autounet-model"``: tells a model archive from any other zip.
        autounet_version: The version that exported it (informative).
        dataset_name: ``DatasetNNN_Name``; every other member lies under this folder.
        configurations: Exported configurations (a cascade's previous stage included).
        folds: Configuration -> fold folder suffixes (``"0"``, ``"all"``) exported for it.
        checkpoint: File name of the checkpoint in each fold folder (``checkpoint_final.pt``; ``model.onnx``
            for a deployed model).
        files: Member name -> hex SHA-256 of its content, for every member except the manifest.
        kind: ``"trained"`` (run folders with torch checkpoints; ``configurations`` are run folder names) or
            ``"deployed"`` (one deployed model folder; ``configurations`` holds its folder name).
        schema_version: Version of this file's layout.
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    format: Literal["autounet-model"]
    autounet_version: str
    dataset_name: str
    configurations: tuple[str, ...]
    folds: dict[str, tuple[str, ...]]
    checkpoint: str
    files: dict[str, str]
    schema_version: int = 1
    kind: Literal["trained", "deployed"] = "trained"

    def __post_init__(self) -> None:
        # Raised as ValueError so from_dict reports it as a ConfigError naming the field.
        names = [self.dataset_name, self.checkpoint, *self.configurations,
                 *(fold for folds in self.folds.values() for fold in folds)]
        bad = [name for name in names if not is_safe_component(name)]
        if bad:
            raise ValueError(f"unsafe name {bad[0]!r} (letters, digits, '_', '.', '+', '-' only)")
        if FIND_BEST_FOLDER in self.configurations:
            raise ValueError(f"'{FIND_BEST_FOLDER}' is reserved and cannot name a configuration")
        if not self.configurations or set(self.folds) != set(self.configurations):
            raise ValueError("'folds' must list the folds of every configuration, and only those")
        if self.kind == "deployed" and len(self.configurations) != 1:
            raise ValueError("a deployed model archive holds exactly one model folder")
        if any(not folds for folds in self.folds.values()):
            raise ValueError("every configuration needs at least one fold")
        if any(not re.fullmatch(r"[0-9a-f]{64}", digest) for digest in self.files.values()):
            raise ValueError("'files' must map member names to hex SHA-256 digests")

    def checkpoint_members(self) -> list[str]:
        """The member name of every fold's checkpoint, in configuration and fold order."""
        return [f"{self.dataset_name}/{configuration}/fold_{fold}/{self.checkpoint}"
                for configuration in self.configurations for fold in self.folds[configuration]]
