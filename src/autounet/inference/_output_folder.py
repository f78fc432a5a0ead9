"""The model files of a prediction folder: written beside the predictions, never over a user's own files.

``predict`` writes the model's ``dataset.json`` and ``plans.json`` beside its outputs (ensembling reads the
labels from them). Its ``dataset.json`` also records which model predicted the folder (key
``autounet_prediction``), so a later run with another model is noticed instead of silently keeping the
earlier model's segmentations as if they were its own. A ``dataset.json`` or ``plans.json`` that autounet
did not write is never replaced.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from autounet.dataset.description import DatasetDescription, save_dataset_json
from autounet.errors import AutounetError, ConfigError
from autounet.io.jsonio import read_json
from autounet.planning.plans import Plans, save_plans

__all__ = ["PREDICTION_KEY", "check_output_apart_from_input", "prepare_output_folder"]

PREDICTION_KEY = "autounet_prediction"
"""Key of the output ``dataset.json`` that records the model (``{"model": <origin>}``)."""


def check_output_apart_from_input(input_dir: Path, output_dir: Path) -> None:
    """Refuse an output folder that is the input folder: the predictions, ``dataset.json`` and ``plans.json``
    would be written among the user's images (and ``<case>.nii.gz`` beside ``<case>_0000.nii.gz`` is easy
    to mistake for an input).

    Raises:
        ConfigError: Both name the same folder (links resolved).
    """
    if Path(output_dir).resolve() == Path(input_dir).resolve():
        raise ConfigError("the output folder is the input folder; predictions would be written among the "
                          "images: choose another output folder", output_dir)


def prepare_output_folder(output_dir: Path, description: DatasetDescription, plans: Plans, origin: str,
                          overwrite: bool) -> None:
    """Write the model's ``dataset.json`` and ``plans.json`` into a prediction folder, if they may be.

    Args:
        output_dir: The prediction folder (created if missing).
        description: The model's dataset description.
        plans: The model's plans.
        origin: What the model was loaded from (see :attr:`LoadedModel.origin`).
        overwrite: The run replaces the folder's predictions (so another model's files may be replaced).

    Raises:
        ConfigError: A ``dataset.json``/``plans.json`` there that autounet did not write (and that differs
            from the model's), or predictions of another model without ``overwrite``; naming the file.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    dataset_file, plans_file = output_dir / "dataset.json", output_dir / "plans.json"
    recorded = _recorded_origin(dataset_file)
    if recorded is not None and recorded != origin and not overwrite:
        raise ConfigError(f"the folder holds predictions of another model ({recorded}); pass --overwrite "
                          "(PredictionSettings.overwrite) to replace them, or predict into another folder",
                          dataset_file)
    ours = replace(description, extra={**description.extra, PREDICTION_KEY: {"model": origin}})
    if recorded is None:
        # Not recorded: only a file identical to what autounet writes (a rerun, or an earlier version's
        # output, which had no record) may stay; anything else is the user's.
        _refuse_foreign(dataset_file, lambda path: save_dataset_json(path, description))
        _refuse_foreign(plans_file, lambda path: save_plans(path, plans))
    save_plans(plans_file, plans)
    save_dataset_json(dataset_file, ours)  # the record last: it vouches for both files


def _recorded_origin(dataset_file: Path) -> str | None:
    """The model recorded in a prediction folder's ``dataset.json``; ``None`` without a record."""
    if not dataset_file.is_file():
        return None
    try:
        data: Any = read_json(dataset_file)
    except AutounetError:
        return None
    record = data.get(PREDICTION_KEY) if isinstance(data, dict) else None
    model = record.get("model") if isinstance(record, dict) else None
    return model if isinstance(model, str) else None


def _refuse_foreign(path: Path, write: Callable[[Path], None]) -> None:
    """Raise unless ``path`` is missing or holds exactly what ``write`` would write."""
    if not path.exists():
        return
    with tempfile.TemporaryDirectory() as scratch:
        candidate = Path(scratch) / path.name
        write(candidate)
        if path.is_file() and path.read_bytes() == candidate.read_bytes():
            return
    raise ConfigError(f"a {path.name} that autounet did not write is in the output folder (it differs from the "
                      f"model's); autounet never replaces it: predict into another folder", path)
