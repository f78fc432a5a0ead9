"""Preprocessing of a whole dataset: resumable, parallel, one case in memory per worker.

Output goes to ``<preprocessed_dir>/<data_identifier>/``; configurations that share a data identifier are
processed once. A case whose properties JSON exists is skipped, so an interrupted run continues where it
stopped; half-written files of a killed run are temporaries that are removed at start, and a case without
its JSON is simply processed again. Every random choice is seeded per case, so a resumed run produces
byte-identical files.

Datasets with instance labels (``"instance_labels": true``): a segmentation configuration stores the
semantic map (class ``c`` of the instance JSON as label ``c + 1``); a detection configuration (one with a
``detection`` plan, ``3d_det``/``2d_det``) stores two stacked maps ``(2, *spatial)``: channel 0 the semantic
map, channel 1 the instance ids of the label file. Foreground oversampling uses channel 0's class locations.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autounet.dataset.derived import LabelDerivation, derive_description, derive_label_maps
from autounet.dataset.description import DatasetDescription
from autounet.dataset.nndet import load_instance_label
from autounet.dataset.raw import RawCase, RawDataset
from autounet.errors import ConfigError
from autounet.io.images import read_image, read_segmentation
from autounet.planning.plans import ConfigurationPlan, Plans, data_identifier, label_data_identifier
from autounet.preprocessing.case import CaseOptions, preprocess_case
from autounet.preprocessing.storage import case_finished, remove_stale_temporaries, write_case
from autounet.progress import parallel_map

__all__ = ["PreprocessReport", "case_label_maps", "default_configurations", "preprocess_dataset",
           "resolve_data_identifier"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreprocessReport:
    """What a :func:`preprocess_dataset` call did.

    Attributes:
        folders: Configuration name -> its data folder (shared folders appear more than once).
        done: Cases preprocessed now, counted once per data folder.
        skipped: Cases found finished and left alone, counted once per data folder.
    """

    folders: dict[str, Path]
    done: int
    skipped: int


@dataclass(frozen=True)
class _CaseTask:
    case: RawCase
    folder: Path
    plans: Plans
    configuration: ConfigurationPlan
    foreground_labels: tuple[int, ...]
    description: DatasetDescription


def resolve_data_identifier(plans: Plans, configuration: ConfigurationPlan) -> str:
    """The configuration's data folder name: its data identifier (computed from its fields when the plans leave
    it empty), with a digest of its label derivation appended when it has one."""
    identifier = configuration.data_identifier or data_identifier(configuration, tuple(plans.axis_order))
    return label_data_identifier(identifier, configuration)


def default_configurations(plans: Plans) -> tuple[str, ...]:
    """All configurations except cascade stages whose data another configuration already produces."""
    identifiers = {name: resolve_data_identifier(plans, c) for name, c in plans.configurations.items()}
    chosen = []
    for name, configuration in plans.configurations.items():
        shared = any(identifiers[other] == identifiers[name] for other in identifiers if other != name)
        if configuration.previous_stage is not None and shared:
            continue
        chosen.append(name)
    return tuple(chosen)


def case_label_maps(case: RawCase, description: DatasetDescription, detection: bool = False,
                    derivation: LabelDerivation | None = None) -> np.ndarray | None:
    """The label array of a raw case as preprocessing (and scoring against the raw labels) uses it.

    Args:
        case: The raw case.
        description: Its dataset's ``dataset.json``.
        detection: For a detection configuration: both maps stacked.
        derivation: The configuration's label derivation: the maps of its derived tasks instead
            (:func:`~autounet.dataset.derived.derive_label_maps`).

    Returns:
        ``None`` without label; the label map of a segmentation dataset; for a dataset with instance labels
        the semantic map (class ``c`` as ``c + 1``), or with ``detection`` the stacked ``(2, *spatial)``
        semantic and instance maps. Raw axis order.

    Raises:
        ConfigError: ``detection`` for a dataset without instance labels.
        DatasetError: Unreadable label, or instances that do not match their JSON.
    """
    if case.label_file is None:
        return None
    if not description.instance_labels or case.instances_file is None:
        if detection:
            raise ConfigError("a detection configuration needs a dataset with instance labels "
                              "(\"instance_labels\": true in dataset.json)", case.label_file)
        seg = read_segmentation(case.label_file)[0]
        if len(case.label_files) > 1:  # several label maps (tasks): stacked (L, *spatial) in task order
            seg = np.stack([seg, *(read_segmentation(path)[0] for path in case.label_files[1:])])
        return derive_label_maps(seg, description, derivation)
    instance_map, semantic, _ = load_instance_label(case.label_file, case.instances_file,
                                                    description.instance_classes)
    if not detection:
        return semantic
    # One small dtype for both maps (cropping narrows it further to the smallest signed type).
    dtype = np.promote_types(np.min_scalar_type(int(instance_map.max(initial=0))), semantic.dtype)
    return np.stack([semantic.astype(dtype, copy=False), instance_map.astype(dtype, copy=False)])


def _run_task(task: _CaseTask) -> str:
    case = task.case
    image, geometry = read_image(case.image_files)
    seg = case_label_maps(case, task.description, task.configuration.detection is not None,
                          task.configuration.label_derivation)
    options = CaseOptions(case_id=case.case_id, foreground_labels=task.foreground_labels)
    data, seg_out, properties = preprocess_case(image, seg, geometry, task.plans, task.configuration, options)
    del image, seg
    write_case(task.folder, data, seg_out, properties)
    return case.case_id


def preprocess_dataset(dataset: RawDataset, plans: Plans, configuration_names: Sequence[str],
                       preprocessed_dir: Path, num_processes: int) -> PreprocessReport:
    """Preprocess every training case for the named configurations.

    Args:
        dataset: The raw dataset.
        plans: Plans holding the configurations.
        configuration_names: Configurations to preprocess (see :func:`default_configurations`).
        preprocessed_dir: This dataset's preprocessed folder (``<preprocessed>/<DatasetName>``).
        num_processes: Worker processes.

    Returns:
        Folders and counts.

    Raises:
        ConfigError: Unknown configuration name, or plans that do not fit the data.
        DatasetError: An unreadable case.
    """
    preprocessed_dir = Path(preprocessed_dir)
    folders: dict[str, Path] = {}
    tasks: list[_CaseTask] = []
    skipped = 0
    seen: set[str] = set()
    for name in configuration_names:
        configuration = plans.configuration(name)
        # Class locations of the first label map come from its declared labels; further maps sample what they hold.
        labels = derive_description(dataset.description, configuration.label_derivation).tasks[0].foreground_labels
        identifier = resolve_data_identifier(plans, configuration)
        folder = preprocessed_dir / identifier
        folders[name] = folder
        if identifier in seen:
            continue
        seen.add(identifier)
        folder.mkdir(parents=True, exist_ok=True)
        if (removed := remove_stale_temporaries(folder)) > 0:
            logger.info("removed %d temporary file(s) of an interrupted run from %s", removed, folder)
        for case in dataset.cases:
            if case_finished(folder, case.case_id):
                skipped += 1
            else:
                tasks.append(_CaseTask(case, folder, plans, configuration, labels, dataset.description))
    if skipped:
        logger.info("%d case(s) already preprocessed, skipping them", skipped)
    parallel_map(_run_task, tasks, num_processes, "Preprocess")
    for name, folder in folders.items():
        logger.info("%s: %s", name, folder)
    return PreprocessReport(folders=folders, done=len(tasks), skipped=skipped)
