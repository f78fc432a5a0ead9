"""nnDetection's raw task format: reading, instance checks, and conversion into autounet's layout.

nnDetection layout (read as it is)::

    TaskNNN_Name/                      # e.g. Task016_Luna, Task000D3M1_Example
      dataset.json | dataset.yaml      # dim (2|3), labels {"0": "nodule", ...}, modalities {"0": "CT", ...}
      raw_splitted/
        imagesTr/{case}_{modality:04d}.nii.gz
        labelsTr/{case}.nii.gz         # instance map: 0 background, 1..N one id per object
        labelsTr/{case}.json           # {"instances": {"1": class, ...}}, classes counting from 0
        imagesTs/ labelsTs/            # optional, the same layout

Checks, each a one-line :class:`DatasetError` naming the file: the instance JSON exists and holds an
``instances`` object; ids are consecutive from 1 in both the JSON and the map; every class is declared in
``labels``; no instance listed in the JSON is empty (without voxels); the map holds no id the JSON lacks.

autounet layout written by :func:`convert_nndet` (an nnU-Net v2 raw dataset whose label files are instance
maps)::

    DatasetNNN_Name/
      dataset.json                     # channel_names from modalities; labels {"background": 0, <class c>: c + 1};
                                       # "instance_labels": true, "dim", numTraining, numTest, file_ending
      imagesTr/{case}_{channel:04d}.nii.gz   # copied byte for byte
      labelsTr/{case}.nii.gz           # the instance map, rewritten as a small integer type, same geometry
      labelsTr/{case}.json             # {"instances": {"1": class, ...}} as in nnDetection (classes from 0)
      imagesTs/ labelsTs/              # when present in the task

With ``"instance_labels": true`` a label file holds instance ids; instance ``i`` of class ``c`` (from the
JSON) is semantic label ``c + 1`` of ``labels`` (:func:`instances_to_semantic`), so the same dataset also
trains a segmentation model (the segmentation-to-boxes baseline).
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from autounet.dataset._simple_yaml import parse_simple_yaml
from autounet.dataset._staging import staged_dataset
from autounet.dataset.convert import _integer_labels, task_dataset_folder
from autounet.dataset.description import parse_dataset_json, save_dataset_json
from autounet.errors import ConfigError, DatasetError
from autounet.io.images import read_image, read_segmentation, write_segmentation
from autounet.io.jsonio import read_json, write_json
from autounet.progress import parallel_map

__all__ = [
    "NndetCase",
    "NndetTask",
    "check_instances",
    "convert_nndet",
    "instances_to_semantic",
    "load_instance_label",
    "load_nndet_task",
    "read_instances_json",
]

logger = logging.getLogger(__name__)

_NIFTI = ".nii.gz"
# Class c becomes label c + 1 of a uint16 semantic map.
MAX_INSTANCE_CLASSES = 2**16 - 1
# nnDetection's descriptions are a few lines; a larger file is not one (and is not read into memory).
MAX_DESCRIPTION_BYTES = 2**20
_KEPT_KEYS = ("name", "task", "target_class", "test_labels", "description", "reference", "licence", "license")


@dataclass(frozen=True)
class NndetCase:
    """One case of an nnDetection task.

    Attributes:
        case_id: The file name stem shared by its files.
        split: ``"Tr"`` or ``"Ts"``.
        images: One file per modality, in modality order.
        label: The instance map, or ``None`` for an unlabelled test case.
        instances_json: The per-case JSON beside the label, or ``None`` without label.
    """

    case_id: str
    split: str
    images: tuple[Path, ...]
    label: Path | None
    instances_json: Path | None


@dataclass(frozen=True)
class NndetTask:
    """A validated nnDetection task folder.

    Attributes:
        folder: The ``TaskNNN_Name`` folder.
        description_file: Its ``dataset.json`` or ``dataset.yaml``.
        dim: 2 or 3.
        classes: Class index (from 0) -> name.
        modalities: Modality index (from 0) -> name.
        extra: Further keys kept on conversion (name, task, target_class, test_labels, ...).
        cases: Training cases, then test cases.
    """

    folder: Path
    description_file: Path
    dim: int
    classes: dict[int, str]
    modalities: dict[int, str]
    extra: dict[str, Any]
    cases: tuple[NndetCase, ...]


def _read_description(folder: Path) -> tuple[Path, dict[str, Any]]:
    for name in ("dataset.json", "dataset.yaml", "dataset.yml"):
        path = folder / name
        if path.is_file():
            break
    else:
        raise DatasetError("not an nnDetection task folder: no dataset.json or dataset.yaml", folder)
    if path.suffix == ".json":
        try:
            data = read_json(path)
        except ConfigError as exc:
            raise DatasetError(exc.problem, path) from None
    else:
        if path.stat().st_size > MAX_DESCRIPTION_BYTES:
            raise DatasetError(f"{path.stat().st_size} bytes is more than a dataset description holds "
                               f"({MAX_DESCRIPTION_BYTES} at most); not reading it", path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"cannot read it as UTF-8 text ({type(exc).__name__})", path) from None
        data = parse_simple_yaml(text, path)
    if not isinstance(data, dict):
        raise DatasetError("must hold a mapping with 'dim', 'labels' and 'modalities'", path)
    return path, data


def _index_map(data: dict[str, Any], key: str, path: Path) -> dict[int, str]:
    value = data.get(key)
    if not isinstance(value, dict) or not value:
        raise DatasetError(f"'{key}' must be a non-empty mapping like {{\"0\": \"name\"}}", path)
    try:
        parsed = {int(str(k)): str(v) for k, v in value.items()}
    except ValueError:
        raise DatasetError(f"'{key}' keys must be integers counting from 0, got {sorted(value)}", path) from None
    if sorted(parsed) != list(range(len(parsed))):
        raise DatasetError(f"'{key}' keys must count from 0 without gaps, got {sorted(parsed)}", path)
    return dict(sorted(parsed.items()))


def load_nndet_task(task_folder: Path) -> NndetTask:
    """Read and validate the description and the case files (not the voxels) of an nnDetection task.

    Raises:
        DatasetError: Missing or malformed description, missing image, label or instance JSON files.
    """
    folder = Path(task_folder)
    path, data = _read_description(folder)
    dim = data.get("dim")
    if dim not in (2, 3) or isinstance(dim, bool):
        raise DatasetError(f"'dim' must be 2 or 3, got {dim!r}", path)
    classes, modalities = _index_map(data, "labels", path), _index_map(data, "modalities", path)
    if len(classes) > MAX_INSTANCE_CLASSES:
        raise DatasetError(f"{len(classes)} classes; at most {MAX_INSTANCE_CLASSES} fit a label map", path)
    names = list(classes.values())
    if len(set(names)) != len(names) or "background" in names:
        raise DatasetError(f"class names must be unique and not 'background', got {names}", path)
    splitted = folder / "raw_splitted"
    if not (splitted / "imagesTr").is_dir():
        raise DatasetError("raw_splitted/imagesTr/ not found", folder)
    cases = _cases(splitted, "Tr", len(modalities), labelled=True)
    cases += _cases(splitted, "Ts", len(modalities), labelled=False)
    if not any(case.split == "Tr" for case in cases):
        raise DatasetError("no training cases ({case}_0000.nii.gz) in raw_splitted/imagesTr/", folder)
    extra = {key: data[key] for key in _KEPT_KEYS if key in data}
    return NndetTask(folder, path, int(dim), classes, modalities, extra, tuple(cases))


def _cases(splitted: Path, split: str, num_modalities: int, labelled: bool) -> list[NndetCase]:
    images, labels = splitted / f"images{split}", splitted / f"labels{split}"
    if not images.is_dir():
        return []
    first = sorted(p for p in images.iterdir() if p.name.endswith(f"_0000{_NIFTI}") and not p.name.startswith("."))
    cases = []
    for file in first:
        case_id = file.name[: -len(f"_0000{_NIFTI}")]
        channels = tuple(images / f"{case_id}_{m:04d}{_NIFTI}" for m in range(num_modalities))
        for modality, channel in enumerate(channels):
            if not channel.is_file():
                raise DatasetError(f"image of modality {modality} of case '{case_id}' not found", channel)
        label = labels / f"{case_id}{_NIFTI}"
        if not label.is_file():
            if labelled:
                raise DatasetError("label file not found", label)
            cases.append(NndetCase(case_id, split, channels, None, None))
            continue
        instances = labels / f"{case_id}.json"
        if not instances.is_file():
            raise DatasetError(f"instance file {instances.name} not found beside the label", label)
        cases.append(NndetCase(case_id, split, channels, label, instances))
    return cases


def read_instances_json(path: Path) -> dict[int, int]:
    """Instance id -> class from a per-case ``{"instances": {"1": class, ...}}`` file.

    Raises:
        DatasetError: Unreadable JSON, no ``instances`` object, or non-integer ids or classes.
    """
    try:
        data = read_json(path)
    except ConfigError as exc:
        raise DatasetError(exc.problem, path) from None
    instances = data.get("instances") if isinstance(data, dict) else None
    if not isinstance(instances, dict):
        raise DatasetError('must hold an "instances" object like {"1": 0}', path)
    parsed: dict[int, int] = {}
    for key, value in instances.items():
        if not str(key).isdecimal() or int(key) < 1:
            raise DatasetError(f"instance id {key!r} is not a positive integer", path)
        # ``value != int(value)`` would raise on NaN and infinities; the bound keeps the uint16 label maps exact.
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or value != int(value) or not 0 <= value < MAX_INSTANCE_CLASSES:
            raise DatasetError(f"instance {key} has class {value!r}; classes are integers from 0 to "
                               f"{MAX_INSTANCE_CLASSES - 1}", path)
        parsed[int(key)] = int(value)
    return dict(sorted(parsed.items()))


def check_instances(instance_ids: set[int] | frozenset[int], instances: dict[int, int], classes: dict[int, str],
                    label_path: Path, json_path: Path) -> None:
    """Check one case's instance map against its JSON and the declared classes.

    Args:
        instance_ids: Non-zero values present in the instance map.
        instances: Instance id -> class from the JSON.
        classes: Declared class index -> name.
        label_path: The instance map, for messages.
        json_path: The JSON, for messages.

    Raises:
        DatasetError: Ids not consecutive from 1, an undeclared class, an empty instance, or an id of the
            map missing from the JSON; one line naming the file.
    """
    listed = sorted(instances)
    if listed != list(range(1, len(listed) + 1)):
        raise DatasetError(f"instance ids {listed} are not consecutive from 1", json_path)
    for instance, class_id in instances.items():
        if class_id not in classes:
            raise DatasetError(f"instance {instance} has class {class_id}, but dataset labels declare classes "
                               f"{', '.join(str(c) for c in classes)}", json_path)
    unlisted = sorted(set(instance_ids) - set(instances))
    if unlisted:
        raise DatasetError(f"label holds instance id(s) {unlisted} that {json_path.name} does not list", label_path)
    empty = sorted(set(instances) - set(instance_ids))
    if empty:
        raise DatasetError(f"instance(s) {empty} listed in {json_path.name} have no voxels (empty instance)",
                           label_path)


def instances_to_semantic(instance_map: np.ndarray, instances: dict[int, int]) -> np.ndarray:
    """The semantic label map of an instance map: instance of class ``c`` -> ``c + 1``, background 0.

    Args:
        instance_map: Integer array ``(Y, X)`` or ``(Z, Y, X)`` of instance ids.
        instances: Instance id -> class (from 0), covering every id of the map.

    Returns:
        A ``uint16`` label map of the same shape.
    """
    lookup = np.zeros(int(instance_map.max(initial=0)) + 1, dtype=np.uint16)
    for instance, class_id in instances.items():
        if instance < len(lookup):
            lookup[instance] = class_id + 1
    return lookup[instance_map]


def load_instance_label(label_file: Path, instances_file: Path, classes: dict[int, str]
                        ) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Read one case's instance map and JSON, check them, and derive the semantic map.

    Args:
        label_file: The instance map.
        instances_file: The ``{case}.json`` beside it.
        classes: Declared class (from 0) -> name (``DatasetDescription.instance_classes``).

    Returns:
        ``(instance_map, semantic_map, instances)``: the instance ids and the labels ``c + 1`` (both of the
        label file's shape, raw axis order) and instance id -> class.

    Raises:
        DatasetError: Unreadable files, or instances that fail :func:`check_instances`.
    """
    instance_map, _ = read_segmentation(label_file)
    instance_map = _integer_labels(instance_map, label_file)
    instances = read_instances_json(instances_file)
    check_instances(set(np.unique(instance_map).tolist()) - {0}, instances, classes, label_file, instances_file)
    return instance_map, instances_to_semantic(instance_map, instances), instances


def convert_nndet(task_folder: Path, raw_root: Path, dataset_id: int | None = None, num_processes: int = 1,
                  overwrite: bool = False) -> Path:
    """Convert an nnDetection task folder into ``raw_root/DatasetNNN_Name`` (layout in the module docstring).

    Args:
        task_folder: The ``TaskNNN_Name`` folder with ``dataset.json``/``.yaml`` and ``raw_splitted/``.
        raw_root: The raw-data folder receiving the dataset; created if missing.
        dataset_id: Number of the new dataset; by default the task number (``Task016_Luna`` -> 16).
        num_processes: Worker processes, one case at a time each.
        overwrite: Replace an existing dataset of the same name once the new one is complete.

    Returns:
        The new dataset folder.

    Raises:
        DatasetError: A malformed task (see :func:`load_nndet_task` and :func:`check_instances`), image and
            label shapes that differ, or an existing dataset without ``overwrite``.
    """
    task = load_nndet_task(task_folder)
    final, dataset_id = task_dataset_folder(task.folder, raw_root, dataset_id)
    num_training = sum(case.split == "Tr" for case in task.cases)
    description = parse_dataset_json(_v2_json(task, num_training, len(task.cases) - num_training),
                                     task.description_file)
    with staged_dataset(final, dataset_id, overwrite) as staging:
        convert = partial(_convert_case, staging=staging, classes=task.classes)
        parallel_map(convert, list(task.cases), num_processes, f"convert {task.folder.name}")
        save_dataset_json(staging / "dataset.json", description)
    logger.debug("converted %s into %s", task.folder, final)
    return final


def _v2_json(task: NndetTask, num_training: int, num_test: int) -> dict[str, Any]:
    labels = {"background": 0} | {name: index + 1 for index, name in task.classes.items()}
    return {"channel_names": {str(k): v for k, v in task.modalities.items()}, "labels": labels,
            "numTraining": num_training, "file_ending": _NIFTI, "numTest": num_test, "dim": task.dim,
            "instance_labels": True, **task.extra,
            "converted_from": f"{task.folder.name} by 'autounet convert nndet'"}


def _convert_case(case: NndetCase, staging: Path, classes: dict[int, str]) -> None:
    out = staging / f"images{case.split}"
    out.mkdir(parents=True, exist_ok=True)
    for channel in case.images:
        shutil.copyfile(channel, out / channel.name)
    if case.label is None or case.instances_json is None:
        return
    instance_map, geometry = read_segmentation(case.label)
    instance_map = _integer_labels(instance_map, case.label)
    for channel in case.images:
        image, _ = read_image([channel])
        if image.shape[1:] != instance_map.shape:
            raise DatasetError(f"image of shape {image.shape[1:]} for an instance map of shape "
                               f"{instance_map.shape}", channel)
    instances = read_instances_json(case.instances_json)
    check_instances(set(np.unique(instance_map).tolist()) - {0}, instances, classes, case.label,
                    case.instances_json)
    labels = staging / f"labels{case.split}"
    write_segmentation(instance_map, geometry, labels / case.label.name)
    write_json(labels / case.instances_json.name, {"instances": {str(k): v for k, v in instances.items()}})
