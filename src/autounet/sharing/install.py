"""Install a shared-model archive (a local zip or an http(s) URL) into ``results/``.

Order of work, so that nothing is ever half-installed:

1. download a URL into a staging folder inside ``results/`` (same file system, so the final moves are renames;
   named ``.autounet-staging-<host>-<pid>-...``, and one a killed run left behind is removed on the next
   start, see :mod:`autounet.sharing._staging`);
2. check the archive without extracting anything (:func:`autounet.sharing.archive.inspect_archive`);
3. refuse existing model folders unless ``force``;
4. extract into the staging folder, checking every SHA-256; load every checkpoint with ``weights_only=True``,
   the plans, ``dataset.json``, every other JSON file and find-best's choice, from that extracted copy; a
   deployed model folder instead has every file checked against its ``deploy.json``;
5. rename each folder into ``results/<DatasetName>/``; with ``force`` an existing folder is moved aside
   first and restored should a later rename fail;
6. remove the staging folder, whatever happened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from autounet.dataset.description import load_dataset_json
from autounet.deploy.model_folder import MANIFEST_FILE as DEPLOY_MANIFEST_FILE
from autounet.deploy.model_folder import verify_deployed_files
from autounet.ensembling.find_best import CHOICE_FILE, FindBestChoice
from autounet.errors import AutounetError
from autounet.io.checkpoints import load_checkpoint
from autounet.io.jsonio import read_json
from autounet.io.serialization import load_dataclass
from autounet.planning.plans import load_plans
from autounet.sharing._staging import staging_folder
from autounet.sharing.archive import Label, archive_error, extract_verified, inspect_archive, open_archive
from autounet.sharing.download import download, is_url
from autounet.sharing.manifest import DEFAULT_MAX_BYTES, FIND_BEST_FOLDER, MANIFEST_NAME, ModelManifest

__all__ = ["DEFAULT_MAX_BYTES", "InstalledModel", "install_model"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

"""Largest download and largest total unpacked size accepted by default (16 GiB: five folds of the largest
nnU-Net configurations fit many times over, a zip bomb does not)."""


@dataclass(frozen=True)
class InstalledModel:
    """Where an archive went.

    Attributes:
        dataset_name: ``DatasetNNN_Name``.
        configurations: The installed configurations.
        folds: Configuration -> fold folder suffixes installed.
        checkpoint: Checkpoint file name in each fold folder.
        folders: Every folder created under ``results/<DatasetName>/`` (configurations, ``find_best``).
        deployed: Whether it is a deployed model folder (``configurations`` then holds its folder name).
    """

    dataset_name: str
    configurations: tuple[str, ...]
    folds: dict[str, tuple[str, ...]]
    checkpoint: str
    folders: tuple[Path, ...]
    deployed: bool = False


def install_model(source: str | os.PathLike, results_root: Path, force: bool = False,
                  max_bytes: int = DEFAULT_MAX_BYTES, show_progress: bool = True) -> InstalledModel:
    """Validate a model archive completely, then move its folders into ``results_root/<DatasetName>/``.

    Args:
        source: A zip file made by :func:`autounet.sharing.export_model`, or an ``http(s)://`` URL of one.
        results_root: The ``results/`` data folder (created if missing).
        force: Replace existing configuration (and ``find_best``) folders; without it they are an error.
        max_bytes: Largest download, and largest sum of unpacked member sizes, accepted.
        show_progress: Show a progress bar while downloading.

    Returns:
        What was installed, and where.

    Raises:
        CheckpointError: Download failure, an unsafe, altered, incomplete or malformed archive, a checkpoint
            that does not load with ``weights_only=True``, or an existing model folder without ``force``.
            The message names the archive (path or URL) and the member.
    """
    results_root = Path(results_root)
    with staging_folder(results_root) as staging:
        text = os.fspath(source)
        if is_url(text):
            label: Label = text
            archive_path = download(text, staging / "download.zip", max_bytes, show_progress)
        elif "://" in text:
            raise archive_error(text, "only http:// and https:// URLs, or a local zip file, can be installed")
        else:
            label = archive_path = Path(text)
        extracted = staging / "model"
        with open_archive(archive_path, label) as archive:
            manifest = inspect_archive(archive, label, max_bytes)
            targets = _targets(manifest, results_root)
            if not force:
                _refuse_existing(targets, label)
            extracted.mkdir()
            extract_verified(archive, manifest, extracted, label)
        _check_contents(manifest, extracted, label)
        folders = _move_into_place(extracted / manifest.dataset_name, targets, staging, force, label)
    logger.info("installed %s into %s", ", ".join(manifest.configurations), results_root / manifest.dataset_name)
    return InstalledModel(dataset_name=manifest.dataset_name, configurations=manifest.configurations,
                          folds=manifest.folds, checkpoint=manifest.checkpoint, folders=tuple(folders),
                          deployed=manifest.kind == "deployed")


def _targets(manifest: ModelManifest, results_root: Path) -> dict[str, Path]:
    """Top-level folder of the archive's dataset folder -> where it goes."""
    units = list(manifest.configurations)
    if any(name.split("/")[1] == FIND_BEST_FOLDER for name in manifest.files):
        units.append(FIND_BEST_FOLDER)
    return {unit: results_root / manifest.dataset_name / unit for unit in units}


def _refuse_existing(targets: dict[str, Path], label: Label) -> None:
    existing = [path for path in targets.values() if path.exists() or path.is_symlink()]
    if existing:
        raise archive_error(label, f"{existing[0]} exists already; pass --force to replace it")


def _check_contents(manifest: ModelManifest, extracted: Path, label: Label) -> None:
    """Load every file of the extracted copy the way prediction will: plans, dataset.json, checkpoints (or
    a deployed folder's files against its ``deploy.json``), find-best's choice and its postprocessing."""
    dataset = manifest.dataset_name
    for member in manifest.files:
        if member.endswith(".json"):
            _load(read_json, extracted, member, label)
    if manifest.kind == "deployed":
        _check_deployed(manifest, extracted, label)
    else:
        _check_trained(manifest, extracted, label)
    choice_member = f"{dataset}/{FIND_BEST_FOLDER}/{CHOICE_FILE}"
    if choice_member in manifest.files:
        choice = _load(lambda path: load_dataclass(FindBestChoice, path), extracted, choice_member, label)
        # The archive must bring the file it chose (older archives: an absolute path, found by its tail).
        _load(lambda _: choice.postprocessing_path(extracted / dataset, use_absolute=False), extracted,
              choice_member, label)


def _check_trained(manifest: ModelManifest, extracted: Path, label: Label) -> None:
    dataset = manifest.dataset_name
    for configuration in manifest.configurations:
        member = f"{dataset}/{configuration}/plans.json"
        plans = _load(load_plans, extracted, member, label)
        if configuration not in plans.configurations:
            raise archive_error(label, f"member {member!r} has no configuration '{configuration}'")
        _load(load_dataset_json, extracted, f"{dataset}/{configuration}/dataset.json", label)
    for member in manifest.checkpoint_members():
        state = _load(load_checkpoint, extracted, member, label)
        weights = state.get("network")
        if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            raise archive_error(label, f"member {member!r} holds no network weights")


def _check_deployed(manifest: ModelManifest, extracted: Path, label: Label) -> None:
    """The deployed folder holds exactly what its ``deploy.json`` lists, unaltered, and its plans fit."""
    unit = manifest.configurations[0]
    prefix = f"{manifest.dataset_name}/{unit}"
    member = f"{prefix}/{DEPLOY_MANIFEST_FILE}"
    if member not in manifest.files:
        raise archive_error(label, f"the deployed model is incomplete: {member!r} is missing")
    try:
        deployed = verify_deployed_files(extracted.joinpath(*prefix.split("/")))
    except AutounetError as exc:
        inside = exc.path is not None and exc.path.is_relative_to(extracted)
        where = exc.path.relative_to(extracted).as_posix() if exc.path is not None and inside else member
        raise archive_error(label, f"member {where!r}: {exc.problem}") from None
    listed = {f"{prefix}/{name}" for name in (*deployed.files, DEPLOY_MANIFEST_FILE)}
    unlisted = sorted(set(manifest.files) - listed - {name for name in manifest.files
                                                       if name.split("/")[1] == FIND_BEST_FOLDER})
    if unlisted:
        raise archive_error(label, f"member {unlisted[0]!r} is not listed in {DEPLOY_MANIFEST_FILE}")
    if tuple(manifest.folds[unit]) != tuple(deployed.folds):
        raise archive_error(label, f"the folds of {MANIFEST_NAME} differ from those of {member!r}")
    plans = _load(load_plans, extracted, f"{prefix}/plans.json", label)
    if deployed.configuration not in plans.configurations:
        raise archive_error(label, f"member '{prefix}/plans.json' has no configuration '{deployed.configuration}'")
    _load(load_dataset_json, extracted, f"{prefix}/dataset.json", label)


def _load(loader: Callable[[Path], T], extracted: Path, member: str, label: Label) -> T:
    """Run ``loader`` on an extracted member, re-raising its error as one naming the archive and member."""
    try:
        return loader(extracted.joinpath(*member.split("/")))
    except AutounetError as exc:
        raise archive_error(label, f"member {member!r}: {exc.problem}") from None


def _move_into_place(source: Path, targets: dict[str, Path], staging: Path, force: bool,
                     label: Label) -> list[Path]:
    """Rename each extracted folder onto its target; on any failure restore what was there before."""
    aside = staging / "replaced"
    aside.mkdir()
    done: list[tuple[Path, Path | None]] = []  # (target now holding the new folder, old folder moved aside)
    pending_backup: tuple[Path, Path] | None = None
    dataset_folder = next(iter(targets.values())).parent
    created_dataset_folder = not dataset_folder.exists()
    dataset_folder.mkdir(parents=True, exist_ok=True)
    try:
        for unit, target in targets.items():
            backup = None
            if target.exists() or target.is_symlink():
                if not force:  # it appeared while we were validating
                    raise archive_error(label, f"{target} exists already; pass --force to replace it")
                backup = aside / unit
                os.replace(target, backup)
                pending_backup = (target, backup)
            os.replace(source / unit, target)
            done.append((target, backup))
            pending_backup = None
    except BaseException:
        if pending_backup is not None:
            os.replace(pending_backup[1], pending_backup[0])
        for target, backup in reversed(done):
            shutil.rmtree(target, ignore_errors=True)
            if backup is not None:
                os.replace(backup, target)
        if created_dataset_folder:
            with contextlib.suppress(OSError):
                dataset_folder.rmdir()
        raise
    return [target for target, _ in done]
