"""Export trained configurations of one dataset into a zip archive another machine can install.

Only what prediction needs goes in: ``plans.json``, ``dataset.json``, ``postprocessing.json`` (when present),
the chosen checkpoint of every fold stripped to its weights and metadata (no optimizer or scaler state, so
a fraction of the size), and ``find_best/{choice.json,postprocessing.json}`` of the dataset when they exist.
See :mod:`autounet.sharing.manifest` for the layout.
"""

from __future__ import annotations

import json
import logging
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autounet import __version__
from autounet.errors import CheckpointError
from autounet.io.checkpoints import load_checkpoint, save_checkpoint
from autounet.io.jsonio import atomic_write, read_json
from autounet.io.serialization import to_dict
from autounet.paths import configuration_of_run_folder, sibling_run_folder
from autounet.planning.plans import load_plans
from autounet.sharing.manifest import (
    FIND_BEST_FOLDER,
    MANIFEST_NAME,
    MODEL_FORMAT,
    ModelManifest,
    is_safe_component,
    sha256_of_file,
)

__all__ = ["export_model"]

logger = logging.getLogger(__name__)

# A fixed timestamp makes two exports of the same model byte-identical apart from the checkpoints' own bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_MODEL_FILES = ("plans.json", "dataset.json", "postprocessing.json")
_FIND_BEST_FILES = ("choice.json", "postprocessing.json")


@dataclass(frozen=True)
class _Member:
    """One archive member: its name and the file it comes from (checkpoints are slimmed first)."""

    name: str
    source: Path
    is_checkpoint: bool = False


def export_model(dataset_results: Path, configurations: Sequence[str], output: Path,
                 folds: Sequence[int | str] | None = None, checkpoint: str = "checkpoint_final.pt") -> ModelManifest:
    """Write the trained configurations of one dataset into a zip archive, atomically.

    A ``3d_cascade_fullres`` (any configuration with a ``previous_stage``) brings its previous stage along,
    with the same folds, because it cannot predict without it.

    Args:
        dataset_results: ``results/<DatasetName>``, holding one folder per configuration.
        configurations: Configurations to export (``2d``, ``3d_fullres``, ...).
        output: The zip file to write; replaced if it exists.
        folds: Fold indices or ``"all"``; ``None`` exports every ``fold_*`` folder holding ``checkpoint``
            (``fold_all`` included), per configuration.
        checkpoint: Checkpoint file name in each fold folder; the archive keeps this name.

    Returns:
        The manifest written into the archive.

    Raises:
        CheckpointError: A configuration, fold, checkpoint, plans or dataset.json is missing or unreadable.
        ConfigError: A JSON file of the model folder is malformed.
    """
    dataset_results = Path(dataset_results)
    dataset_name = dataset_results.name
    for name in (dataset_name, checkpoint, *configurations, *(str(f) for f in folds or ())):
        if not is_safe_component(name):
            raise CheckpointError(f"cannot export the name {name!r}: letters, digits, '_', '.', '+', '-' only",
                                  dataset_results)
    all_configurations = _with_previous_stages(dataset_results, configurations)
    fold_map = {name: _folds_of(dataset_results / name, folds, checkpoint) for name in all_configurations}
    members = _members(dataset_results, fold_map, checkpoint)
    files: dict[str, str] = {}
    with (tempfile.TemporaryDirectory(prefix="autounet-export-") as scratch,
          atomic_write(output, "wb") as handle, zipfile.ZipFile(handle, "w") as archive):
        for member in members:
            source = _slim_checkpoint(member.source, Path(scratch)) if member.is_checkpoint else member.source
            files[member.name] = sha256_of_file(source)
            # Checkpoints are torch zip files of float weights: deflate gains little and costs CPU time.
            _add_file(archive, member.name, source, zipfile.ZIP_STORED if member.is_checkpoint
                      else zipfile.ZIP_DEFLATED)
            if member.is_checkpoint:
                source.unlink()
            logger.info("added %s", member.name)
        manifest = ModelManifest(format=MODEL_FORMAT, autounet_version=__version__, dataset_name=dataset_name,
                                 configurations=tuple(all_configurations),
                                 folds={name: tuple(f) for name, f in fold_map.items()},
                                 checkpoint=checkpoint, files=files)
        info = _zip_info(MANIFEST_NAME, zipfile.ZIP_DEFLATED)
        archive.writestr(info, _manifest_text(manifest))
    logger.info("model written to %s", output)
    return manifest


def _with_previous_stages(dataset_results: Path, configurations: Sequence[str]) -> list[str]:
    """The requested configurations, each followed by its previous stages when they are not requested."""
    if not configurations:
        raise CheckpointError("no configuration given", dataset_results)
    ordered: list[str] = []
    pending = list(dict.fromkeys(configurations))
    while pending:
        name = pending.pop(0)
        if name in ordered:
            continue
        folder = dataset_results / name
        if not (folder / "plans.json").is_file():
            raise CheckpointError(f"no trained configuration '{name}' (no {name}/plans.json); train it first",
                                  dataset_results)
        plans = load_plans(folder / "plans.json")
        configuration = configuration_of_run_folder(name)  # runs of other recipes/plans: <configuration>__...
        if configuration not in plans.configurations:
            raise CheckpointError(f"plans.json has no configuration '{configuration}'", folder / "plans.json")
        ordered.append(name)
        previous = plans.configurations[configuration].previous_stage
        if previous is not None:
            pending.append(sibling_run_folder(folder, configuration, previous).name)
    return ordered


def _folds_of(folder: Path, folds: Sequence[int | str] | None, checkpoint: str) -> list[str]:
    """Fold folder suffixes to export from one configuration folder, each checked to hold ``checkpoint``."""
    if folds is None:
        found = [p.name[5:] for p in folder.glob("fold_*") if (p / checkpoint).is_file()]
        # Numeric folds in numeric order, then named ones (fold_all).
        names = sorted(found, key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f))
        if not names:
            raise CheckpointError(f"no fold_* folder holds {checkpoint}; finish training or pass -f/--folds",
                                  folder)
        return names
    names = list(dict.fromkeys(str(f) for f in folds))
    for name in names:
        if not (folder / f"fold_{name}" / checkpoint).is_file():
            raise CheckpointError("checkpoint not found; train this fold or choose others with -f/--folds",
                                  folder / f"fold_{name}" / checkpoint)
    return names


def _members(dataset_results: Path, fold_map: dict[str, list[str]], checkpoint: str) -> list[_Member]:
    """Every member of the archive, JSON files validated as JSON on the way."""
    dataset_name = dataset_results.name
    members: list[_Member] = []
    for configuration, folds in fold_map.items():
        folder = dataset_results / configuration
        for name in _MODEL_FILES:
            path = folder / name
            if name != "postprocessing.json" and not path.is_file():
                raise CheckpointError(f"the model folder lacks {name}", folder)
            if path.is_file():
                read_json(path)  # a broken file fails here, not on the receiving machine
                members.append(_Member(f"{dataset_name}/{configuration}/{name}", path))
        members.extend(_Member(f"{dataset_name}/{configuration}/fold_{fold}/{checkpoint}",
                               folder / f"fold_{fold}" / checkpoint, is_checkpoint=True) for fold in folds)
    for name in _FIND_BEST_FILES:
        path = dataset_results / FIND_BEST_FOLDER / name
        if path.is_file():
            read_json(path)
            members.append(_Member(f"{dataset_name}/{FIND_BEST_FOLDER}/{name}", path))
    return members


def _slim_checkpoint(path: Path, scratch: Path) -> Path:
    """Re-save a checkpoint with its weights and metadata only (no optimizer, scaler or history)."""
    state = load_checkpoint(path)
    if not isinstance(state.get("network"), dict):
        raise CheckpointError("the checkpoint holds no 'network' weights", path)
    slim = scratch / path.name
    save_checkpoint(slim, {"network": state["network"], "metadata": state.get("metadata", {})})
    return slim


def _zip_info(name: str, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = compression
    info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--: installers reject anything else
    return info


def _add_file(archive: zipfile.ZipFile, name: str, source: Path, compression: int) -> None:
    with open(source, "rb") as src, archive.open(_zip_info(name, compression), "w", force_zip64=True) as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)


def _manifest_text(manifest: ModelManifest) -> str:
    return json.dumps(to_dict(manifest), indent=2) + "\n"
