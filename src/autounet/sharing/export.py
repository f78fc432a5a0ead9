"""Export trained configurations of one dataset, or a deployed model folder, into a zip archive another
machine can install.

Only what prediction needs goes in: ``plans.json``, ``dataset.json``, ``postprocessing.json`` (when present),
the chosen checkpoint of every fold stripped to its weights and metadata (no optimizer or scaler state, so
a fraction of the size), and the choice of ``find-best`` (``find_best/choice.json``, pointing at
``find_best/postprocessing.json``, the postprocessing it chose) when there is one. A deployed model folder
goes in whole, its SHA-256 checked first. See :mod:`autounet.sharing.manifest` for the layout.

The archive is written inside a staging folder beside the output (:mod:`autounet.sharing._staging`) and
appears under its name in one step, so an interrupted export leaves no partial zip; an existing file of
that name is replaced only when asked to.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from autounet import __version__
from autounet.deploy.model_folder import MANIFEST_FILE as DEPLOY_MANIFEST_FILE
from autounet.deploy.model_folder import verify_deployed_files
from autounet.ensembling.find_best import CHOICE_FILE, FindBestChoice
from autounet.errors import CheckpointError
from autounet.io.checkpoints import load_checkpoint, save_checkpoint
from autounet.io.jsonio import read_json
from autounet.io.serialization import load_dataclass, to_dict
from autounet.paths import configuration_of_run_folder, sibling_run_folder
from autounet.planning.plans import load_plans
from autounet.sharing._staging import staging_folder
from autounet.sharing.manifest import (
    DEPLOYED_MODEL_FILE,
    FIND_BEST_FOLDER,
    MANIFEST_NAME,
    MODEL_FORMAT,
    ModelManifest,
    is_safe_component,
    sha256_of_file,
)

__all__ = ["export_deployed_model", "export_model"]

logger = logging.getLogger(__name__)

# A fixed timestamp makes two exports of the same model byte-identical apart from the checkpoints' own bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_MODEL_FILES = ("plans.json", "dataset.json", "postprocessing.json")
_POSTPROCESSING = "postprocessing.json"


@dataclass(frozen=True)
class _Member:
    """One archive member: its name and the file it comes from (checkpoints are slimmed first), or its text.

    ``stored``: written uncompressed (weights: deflate gains little and costs CPU time).
    """

    name: str
    source: Path | None = None
    is_checkpoint: bool = False
    text: str | None = None
    stored: bool = False


def export_model(dataset_results: Path, configurations: Sequence[str], output: Path,
                 folds: Sequence[int | str] | None = None, checkpoint: str = "checkpoint_final.pt",
                 overwrite: bool = False) -> ModelManifest:
    """Write the trained configurations of one dataset into a zip archive, atomically.

    A ``3d_cascade_fullres`` (any configuration with a ``previous_stage``) brings its previous stage along,
    with the same folds, because it cannot predict without it.

    Args:
        dataset_results: ``results/<DatasetName>``, holding one folder per configuration.
        configurations: Configurations to export (``2d``, ``3d_fullres``, ...).
        output: The zip file to write.
        folds: Fold indices or ``"all"``; ``None`` exports every ``fold_*`` folder holding ``checkpoint``
            (``fold_all`` included), per configuration.
        checkpoint: Checkpoint file name in each fold folder; the archive keeps this name.
        overwrite: Replace an existing file ``output`` (never a folder); without it that is an error.

    Returns:
        The manifest written into the archive.

    Raises:
        CheckpointError: ``output`` exists (without ``overwrite``), is a folder or lies below a file; a
            configuration, fold, checkpoint, plans or dataset.json is missing or unreadable.
        ConfigError: A JSON file of the model folder, or find-best's ``choice.json``, is malformed, or the
            postprocessing it chose is missing.
    """
    dataset_results, output = Path(dataset_results), Path(output)
    _check_output(output, overwrite)
    dataset_name = dataset_results.absolute().name
    for name in (dataset_name, checkpoint, *configurations, *(str(f) for f in folds or ())):
        if not is_safe_component(name):
            raise CheckpointError(f"cannot export the name {name!r}: letters, digits, '_', '.', '+', '-' only",
                                  dataset_results)
    all_configurations = _with_previous_stages(dataset_results, configurations)
    fold_map = {name: _folds_of(dataset_results / name, folds, checkpoint) for name in all_configurations}
    members = [*_members(dataset_results, fold_map, checkpoint), *_find_best_members(dataset_results)]
    manifest = ModelManifest(format=MODEL_FORMAT, autounet_version=__version__, dataset_name=dataset_name,
                             configurations=tuple(all_configurations),
                             folds={name: tuple(f) for name, f in fold_map.items()}, checkpoint=checkpoint, files={})
    return _write_archive(members, manifest, output, overwrite)


def export_deployed_model(model_folder: Path, output: Path, overwrite: bool = False) -> ModelManifest:
    """Write a deployed model folder (``autounet deploy``) into a zip archive, atomically.

    Every file ``deploy.json`` lists is checked against its SHA-256 first and goes in with ``deploy.json``;
    the installer checks them again, and ``predict`` once more when it loads the model. The archive's dataset
    is the plans' dataset name; the model keeps its folder name (``results/<Dataset>/<folder name>``).

    Args:
        model_folder: The deployed model folder (holding ``deploy.json``).
        output: The zip file to write.
        overwrite: Replace an existing file ``output`` (never a folder); without it that is an error.

    Returns:
        The manifest written into the archive.

    Raises:
        CheckpointError: ``output`` exists (without ``overwrite``), is a folder or lies below a file; a name
            that cannot be a member name.
        DeployError: A file is missing or altered since it was deployed.
        ConfigError: ``deploy.json`` or ``plans.json`` is malformed.
    """
    model_folder, output = Path(model_folder), Path(output)
    _check_output(output, overwrite)
    deployed = verify_deployed_files(model_folder)
    dataset_name = load_plans(model_folder / "plans.json").dataset_name
    unit = model_folder.absolute().name
    names = [DEPLOY_MANIFEST_FILE, *sorted(deployed.files)]
    for name in (dataset_name, unit, *deployed.folds, *(part for n in names for part in n.split("/"))):
        if not is_safe_component(name):
            raise CheckpointError(f"cannot export the name {name!r}: letters, digits, '_', '.', '+', '-' only",
                                  model_folder)
    members = [_Member(f"{dataset_name}/{unit}/{name}", model_folder.joinpath(*name.split("/")),
                       stored=name.endswith(".onnx")) for name in names]
    manifest = ModelManifest(format=MODEL_FORMAT, autounet_version=__version__, dataset_name=dataset_name,
                             configurations=(unit,), folds={unit: tuple(deployed.folds)},
                             checkpoint=DEPLOYED_MODEL_FILE, files={}, kind="deployed")
    return _write_archive(members, manifest, output, overwrite)


def _check_output(output: Path, overwrite: bool) -> None:
    """Refuse an output that is a folder, lies below a file, or exists (unless ``overwrite``)."""
    for parent in output.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CheckpointError(f"cannot write the archive: {parent} is a file, not a folder", output)
            break
    if output.is_dir():
        raise CheckpointError("is a folder; give the name of the zip file to write", output)
    if (output.exists() or output.is_symlink()) and not overwrite:
        raise CheckpointError("exists already; choose another name, or pass --force to replace it", output)


def _write_archive(members: list[_Member], manifest: ModelManifest, output: Path, overwrite: bool) -> ModelManifest:
    """Write the members and the manifest (with every member's SHA-256) into a zip in a staging folder beside
    ``output``, then move it into place; returns the manifest written."""
    files: dict[str, str] = {}
    with staging_folder(output.absolute().parent) as scratch:
        partial = scratch / "archive.zip"
        with open(partial, "xb") as handle:
            with zipfile.ZipFile(handle, "w") as archive:
                for member in members:
                    files[member.name] = _add_member(archive, member, scratch)
                    logger.info("added %s", member.name)
                manifest = replace(manifest, files=files)
                archive.writestr(_zip_info(MANIFEST_NAME, zipfile.ZIP_DEFLATED), _manifest_text(manifest))
            handle.flush()
            os.fsync(handle.fileno())
        _publish(partial, output, overwrite)
    logger.info("model written to %s", output)
    return manifest


def _add_member(archive: zipfile.ZipFile, member: _Member, scratch: Path) -> str:
    """Add one member; returns the SHA-256 of what went in."""
    if member.text is not None:
        data = member.text.encode("utf-8")
        archive.writestr(_zip_info(member.name, zipfile.ZIP_DEFLATED), data)
        return hashlib.sha256(data).hexdigest()
    assert member.source is not None  # a member has a source or a text
    source = _slim_checkpoint(member.source, scratch) if member.is_checkpoint else member.source
    digest = sha256_of_file(source)
    stored = member.is_checkpoint or member.stored
    _add_file(archive, member.name, source, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    if member.is_checkpoint:
        source.unlink()
    return digest


def _publish(partial: Path, output: Path, overwrite: bool) -> None:
    """Give the finished zip its final name; without ``overwrite`` never replace a file that appeared meanwhile."""
    if overwrite:
        os.replace(partial, output)
        return
    try:
        os.link(partial, output)  # fails when output exists: the no-clobber form of a rename
    except FileExistsError:
        raise CheckpointError("exists already; choose another name, or pass --force to replace it",
                              output) from None
    except OSError:  # a file system without hard links
        if output.exists():
            raise CheckpointError("exists already; choose another name, or pass --force to replace it",
                                  output) from None
        os.replace(partial, output)


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
    """The model files and checkpoints of every configuration, JSON files validated as JSON on the way."""
    dataset_name = dataset_results.absolute().name
    members: list[_Member] = []
    for configuration, folds in fold_map.items():
        folder = dataset_results / configuration
        for name in _MODEL_FILES:
            path = folder / name
            if name != _POSTPROCESSING and not path.is_file():
                raise CheckpointError(f"the model folder lacks {name}", folder)
            if path.is_file():
                read_json(path)  # a broken file fails here, not on the receiving machine
                members.append(_Member(f"{dataset_name}/{configuration}/{name}", path))
        members.extend(_Member(f"{dataset_name}/{configuration}/fold_{fold}/{checkpoint}",
                               folder / f"fold_{fold}" / checkpoint, is_checkpoint=True) for fold in folds)
    return members


def _find_best_members(dataset_results: Path) -> list[_Member]:
    """find-best's choice and the postprocessing it chose, as ``find_best/{choice.json,postprocessing.json}``.

    The choice goes in with its postprocessing path relative to the dataset folder (older choice files hold
    an absolute path of this machine), so the installed copy finds the file wherever it is installed.
    """
    prefix = f"{dataset_results.absolute().name}/{FIND_BEST_FOLDER}"
    folder = dataset_results / FIND_BEST_FOLDER
    if (folder / CHOICE_FILE).is_file():
        choice = load_dataclass(FindBestChoice, folder / CHOICE_FILE)
        chosen = choice.postprocessing_path(dataset_results)
        read_json(chosen)
        portable = replace(choice, postprocessing_file=f"{FIND_BEST_FOLDER}/{_POSTPROCESSING}")
        return [_Member(f"{prefix}/{CHOICE_FILE}", text=json.dumps(to_dict(portable), indent=2) + "\n"),
                _Member(f"{prefix}/{_POSTPROCESSING}", chosen)]
    if (folder / _POSTPROCESSING).is_file():
        read_json(folder / _POSTPROCESSING)
        return [_Member(f"{prefix}/{_POSTPROCESSING}", folder / _POSTPROCESSING)]
    return []


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
