"""Resolution of the data folders: the only module that reads the environment.

Priority: command-line flag > environment variable > default. ``AUTOUNET_DATA`` (or ``--data-root``) names
one root holding ``raw/``, ``preprocessed/`` and ``results/``. For users coming from nnU-Net, the variables
``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` override the matching sub-folder when set
and no ``--data-root`` flag was given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_DATA_ROOT", "Paths", "resolve_paths", "configuration_of_run_folder", "run_folder_name",
           "sibling_run_folder"]

DEFAULT_DATA_ROOT = Path("autounet_data")


@dataclass(frozen=True)
class Paths:
    """The three data folders every stage works in.

    Attributes:
        raw: Raw datasets in nnU-Net v2 format (``DatasetNNN_Name/``).
        preprocessed: Fingerprints, plans and preprocessed cases, one folder per dataset.
        results: Trained models, one folder per dataset.
    """

    raw: Path
    preprocessed: Path
    results: Path

    @classmethod
    def under(cls, root: str | os.PathLike) -> Paths:
        """Paths with the standard sub-folders of one data root."""
        root = Path(root)
        return cls(raw=root / "raw", preprocessed=root / "preprocessed", results=root / "results")


def resolve_paths(data_root: str | os.PathLike | None = None,
                  environ: Mapping[str, str] | None = None) -> Paths:
    """Resolve the data folders once, at start-up.

    Args:
        data_root: The ``--data-root`` flag; when given, it wins over every environment variable.
        environ: The environment to read; ``os.environ`` when ``None`` (tests pass a dict).

    Returns:
        The resolved, absolute folders. They are not created here.
    """
    env = os.environ if environ is None else environ
    if data_root is not None:
        return _absolute(Paths.under(data_root))
    base = Paths.under(env.get("AUTOUNET_DATA") or DEFAULT_DATA_ROOT)
    paths = Paths(
        raw=Path(env.get("nnUNet_raw") or base.raw),
        preprocessed=Path(env.get("nnUNet_preprocessed") or base.preprocessed),
        results=Path(env.get("nnUNet_results") or base.results),
    )
    return _absolute(paths)


def _absolute(paths: Paths) -> Paths:
    # expanduser: a "~" reaches us unexpanded from quoted shell assignments and .env files.
    return Paths(*(Path(p).expanduser().absolute() for p in (paths.raw, paths.preprocessed, paths.results)))


def run_folder_name(configuration: str, recipe: str = "default", plans: str = "plans") -> str:
    """The folder under ``results/<Dataset>/`` that holds the folds of one configuration trained with one
    recipe on one plans file.

    The default recipe on the default plans keeps the plain configuration name (``3d_fullres``); any other
    combination gets ``<configuration>__<recipe>__<plans>``, as nnU-Net names ``Trainer__Plans__configuration``
    folders, so runs with other recipes or plans live side by side instead of replacing each other.
    """
    if recipe == "default" and plans == "plans":
        return configuration
    return f"{configuration}__{recipe}__{plans}"


def sibling_run_folder(model_folder: Path, configuration: str, other: str) -> Path:
    """The run folder of configuration ``other`` trained like ``model_folder`` (same recipe and plans): e.g.
    a cascade stage's previous stage. ``model_folder`` is a folder named by :func:`run_folder_name` for
    ``configuration``, or any other name (then ``other`` plainly)."""
    suffix = model_folder.name[len(configuration):] if model_folder.name.startswith(f"{configuration}__") else ""
    return model_folder.parent / f"{other}{suffix}"


def configuration_of_run_folder(name: str) -> str:
    """The configuration a run folder named by :func:`run_folder_name` was trained for."""
    return name.split("__", 1)[0]
