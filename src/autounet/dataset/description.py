"""``dataset.json`` in nnU-Net v2 format: parsing and validation.

Accepted exactly as nnU-Net v2 writes it: ``channel_names`` (``{"0": "CT"}``), ``labels`` (``{"background":
0, "liver": 1}`` or, for overlapping regions, lists such as ``{"whole": [1, 2, 3]}`` with
``regions_class_order``), ``numTraining``, ``file_ending``, and optionally a label named ``ignore``. Other
keys (``name``, ``description``, ``licence``, ...) are kept unchanged.

A dataset with several label maps per image (multi-task) declares ``tasks`` instead of ``labels``: each task has
its own ``labels`` (and optionally ``regions_class_order`` and an ``ignore`` label) and a ``kind``, ``area``
(regions of the image, the default) or ``line`` (a one-pixel-wide line such as a calving front; one foreground
label). Its label files lie in one folder per task, ``labelsTr/<task>/<case><file_ending>``::

    "tasks": {"zones": {"labels": {"background": 0, "rock": 1, "glacier": 2, "ocean": 3}, "kind": "area"},
              "front": {"labels": {"background": 0, "front": 1}, "kind": "line",
                        "boundary": {"task": "zones", "inside": ["glacier"], "outside": ["ocean"]}}}

A line task may say which line it is in an area task's terms with ``boundary``: the voxels of the ``inside``
labels that touch a voxel of the ``outside`` labels (the calving front is glacier next to ocean). Prediction can
then take the line from the predicted areas instead of the line's own output (``autounet predict
--line-source boundary``), and derived tasks (:mod:`autounet.dataset.derived`) are lines of this kind.

Both forms describe their label maps as :class:`LabelTask` objects (:attr:`DatasetDescription.tasks`); a
dataset with top-level ``labels`` has one task named :data:`DEFAULT_TASK` whose files lie in ``labelsTr/``.

``"instance_labels": true`` (written by ``autounet convert nndet`` and ``autounet example detection``) marks
a detection dataset: each label file holds an instance map (0 background, 1..N one id per object) with a
``{case}.json`` beside it, ``{"instances": {"1": class, ...}}``, classes counting from 0; class ``c`` is
the label of value ``c + 1`` in ``labels`` (see :mod:`autounet.dataset.nndet`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autounet.errors import DatasetError
from autounet.io.images import SUPPORTED_ENDINGS
from autounet.io.jsonio import read_json, write_json

__all__ = ["DEFAULT_TASK", "TASK_KINDS", "DatasetDescription", "LabelTask", "LineBoundary", "check_boundaries",
           "load_dataset_json", "parse_dataset_json", "save_dataset_json"]

IGNORE_LABEL_NAME = "ignore"
DEFAULT_TASK = "labels"
"""Name of the one label map of a dataset.json with a top-level ``labels`` entry (every nnU-Net v2 dataset)."""
TASK_KINDS = ("area", "line")
"""Kinds of label map: ``area`` (regions) and ``line`` (one-pixel-wide lines, scored by distance)."""
_REQUIRED = ("channel_names", "numTraining", "file_ending")
# A task name is a folder name under labelsTr/: portable, no separators, no hidden or special names.
_TASK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_TASK_KEYS = ("labels", "kind", "regions_class_order", "boundary")

Label = int | tuple[int, ...]


@dataclass(frozen=True)
class LineBoundary:
    """A line described in an area task's terms: the voxels of ``inside`` labels touching ``outside`` labels.

    Attributes:
        task: The area task whose labels bound the line.
        inside: Names of the labels on whose border the line lies (the line's voxels carry one of them).
        outside: Names of the labels across the line.
    """

    task: str
    inside: tuple[str, ...]
    outside: tuple[str, ...]

    def values(self, area: LabelTask) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The label values of :attr:`inside` and :attr:`outside` in ``area`` (the task :attr:`task`)."""
        def of(names: tuple[str, ...]) -> tuple[int, ...]:
            return tuple(int(area.labels[name]) for name in names)  # type: ignore[arg-type]
        return of(self.inside), of(self.outside)

    def to_json_dict(self) -> dict[str, Any]:
        """The ``boundary`` entry of a line task in ``dataset.json``."""
        return {"task": self.task, "inside": list(self.inside), "outside": list(self.outside)}


@dataclass(frozen=True)
class LabelTask:
    """One label map of a dataset: its name, labels and kind.

    Attributes:
        name: The map's name; for multi-task datasets also its folder under ``labelsTr/`` and ``labelsTs/``.
        labels: Label name -> value, or tuple of values for a region.
        kind: ``"area"`` (regions) or ``"line"`` (one-pixel-wide lines with one foreground label).
        regions_class_order: For region-based labels, the value each region is written as.
        boundary: For a line task, the area task's labels it separates (see :class:`LineBoundary`); ``None``
            when the dataset does not say.
    """

    name: str
    labels: dict[str, Label]
    kind: str = "area"
    regions_class_order: tuple[int, ...] | None = None
    boundary: LineBoundary | None = None

    @property
    def is_region_based(self) -> bool:
        """Whether labels are (possibly overlapping) regions given as value lists."""
        return any(isinstance(v, tuple) for k, v in self.labels.items() if k != IGNORE_LABEL_NAME)

    @property
    def ignore_label(self) -> int | None:
        """The value of the ``ignore`` label, excluded from losses and metrics, or ``None``."""
        value = self.labels.get(IGNORE_LABEL_NAME)
        return value if isinstance(value, int) else None

    @property
    def allowed_label_values(self) -> frozenset[int]:
        """Every integer value that may appear in this map's label files."""
        values: set[int] = {0}
        for value in self.labels.values():
            values.update(value if isinstance(value, tuple) else (value,))
        return frozenset(values)

    @property
    def foreground_labels(self) -> tuple[int, ...]:
        """Sorted foreground label values (background and ignore excluded) of a non-region map."""
        ignore = self.ignore_label
        return tuple(sorted(v for v in self.allowed_label_values if v != 0 and v != ignore))

    def to_json_dict(self) -> dict[str, Any]:
        """The task's entry under ``"tasks"`` in ``dataset.json``."""
        data: dict[str, Any] = {"labels": _labels_json(self.labels), "kind": self.kind}
        if self.regions_class_order is not None:
            data["regions_class_order"] = list(self.regions_class_order)
        if self.boundary is not None:
            data["boundary"] = self.boundary.to_json_dict()
        return data


@dataclass(frozen=True)
class DatasetDescription:
    """The validated content of a ``dataset.json``.

    Attributes:
        channel_names: Channel index -> modality name (``"CT"`` selects CT normalisation).
        labels: Label name -> value, or tuple of values for a region (region-based training); empty for a
            dataset that declares ``tasks`` (see :attr:`tasks`).
        num_training: Declared number of training cases.
        file_ending: Image file ending, e.g. ``".nii.gz"``.
        regions_class_order: For region-based datasets, the label value each region is written as.
        extra: All other keys, kept as they were.
        declared_tasks: The label maps of a dataset.json with ``tasks``, in file order; empty for one with
            top-level ``labels``.
        instance_labels: Label files are instance maps with a per-case instance JSON (detection datasets).
    """

    channel_names: dict[int, str]
    labels: dict[str, Label]
    num_training: int
    file_ending: str
    regions_class_order: tuple[int, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    declared_tasks: tuple[LabelTask, ...] = ()
    instance_labels: bool = False

    @property
    def num_channels(self) -> int:
        """Number of input channels."""
        return len(self.channel_names)

    @property
    def tasks(self) -> tuple[LabelTask, ...]:
        """Every label map, in order: the declared tasks, or one task :data:`DEFAULT_TASK` for ``labels``."""
        if self.declared_tasks:
            return self.declared_tasks
        return (LabelTask(DEFAULT_TASK, self.labels, "area", self.regions_class_order),)

    @property
    def has_task_folders(self) -> bool:
        """Whether label files lie in one folder per task (``labelsTr/<task>/``), as ``tasks`` declares."""
        return bool(self.declared_tasks)

    @property
    def single_task(self) -> LabelTask:
        """The one label map of the dataset.

        Raises:
            DatasetError: The dataset has several label maps, which the calling step cannot handle.
        """
        tasks = self.tasks
        if len(tasks) != 1:
            raise DatasetError(f"the dataset has {len(tasks)} label maps (tasks {', '.join(t.name for t in tasks)}) "
                               "but this step handles only one")
        return tasks[0]

    @property
    def is_region_based(self) -> bool:
        """Whether the one label map's labels are regions given as value lists (see :attr:`single_task`)."""
        return self.single_task.is_region_based

    @property
    def ignore_label(self) -> int | None:
        """The value of the one label map's ``ignore`` label, or ``None`` (see :attr:`single_task`)."""
        return self.single_task.ignore_label

    @property
    def allowed_label_values(self) -> frozenset[int]:
        """Every integer value that may appear in a label file of the one label map."""
        return self.single_task.allowed_label_values

    @property
    def foreground_labels(self) -> tuple[int, ...]:
        """Sorted foreground label values (background and ignore excluded) of a non-region dataset."""
        return self.single_task.foreground_labels

    @property
    def instance_classes(self) -> dict[int, str]:
        """Detection class (from 0, as in the instance JSON) -> name: the label of value ``c + 1`` is class ``c``."""
        plain = {value: name for name, value in self.labels.items()
                 if isinstance(value, int) and value > 0 and name != IGNORE_LABEL_NAME}
        return {value - 1: plain[value] for value in sorted(plain)}

    def to_json_dict(self) -> dict[str, Any]:
        """The nnU-Net v2 ``dataset.json`` layout (with ``tasks`` instead of ``labels`` for multi-task)."""
        data: dict[str, Any] = {"channel_names": {str(k): v for k, v in sorted(self.channel_names.items())}}
        if self.declared_tasks:
            data["tasks"] = {task.name: task.to_json_dict() for task in self.declared_tasks}
        else:
            data["labels"] = _labels_json(self.labels)
        data["numTraining"] = self.num_training
        data["file_ending"] = self.file_ending
        if self.regions_class_order is not None:
            data["regions_class_order"] = list(self.regions_class_order)
        if self.instance_labels:
            data["instance_labels"] = True
        data.update(self.extra)
        return data


def load_dataset_json(path: str | os.PathLike) -> DatasetDescription:
    """Read and validate a ``dataset.json``.

    Raises:
        DatasetError: Missing/malformed keys, labels that are not consecutive from 0, a legacy (nnU-Net v1)
            file, an unsupported file ending; the message names the file and the key.
    """
    path = Path(path)
    try:
        data = read_json(path)
    except Exception as exc:  # ConfigError from read_json; report as a dataset problem
        raise DatasetError(getattr(exc, "problem", str(exc)), path) from None
    return parse_dataset_json(data, path)


def parse_dataset_json(data: Any, path: Path) -> DatasetDescription:
    """Validate already-parsed ``dataset.json`` content (see :func:`load_dataset_json`)."""
    if not isinstance(data, dict):
        raise DatasetError("dataset.json must hold a JSON object", path)
    if "modality" in data and "channel_names" not in data:
        raise DatasetError("this is an nnU-Net v1 / MSD dataset.json ('modality' key); convert the task "
                           "folder with 'autounet convert msd'", path)
    present = set(data) | ({"labels"} if "tasks" in data else set())
    missing = [k for k in ("channel_names", "labels", "numTraining", "file_ending") if k not in present]
    if missing:
        raise DatasetError(f"dataset.json lacks the required key(s) {', '.join(missing)}", path)
    if "labels" in data and "tasks" in data:
        raise DatasetError("dataset.json has both 'labels' and 'tasks'; declare one label map with 'labels' or "
                           "several with 'tasks'", path)
    channel_names = _parse_channels(data["channel_names"], path)
    if "tasks" in data:
        return _parse_multi_task(data, channel_names, path)
    labels = _parse_labels(data["labels"], path)
    num_training, file_ending = _parse_counts(data, path)
    regions_class_order = _parse_regions_order(data.get("regions_class_order"), labels, path)
    instance_labels = _parse_instance_labels(data.get("instance_labels", False), labels, path)
    extra = {k: v for k, v in data.items()
             if k not in (*_REQUIRED, "labels", "regions_class_order", "instance_labels")}
    return DatasetDescription(channel_names=channel_names, labels=labels, num_training=num_training,
                              file_ending=file_ending, regions_class_order=regions_class_order, extra=extra,
                              instance_labels=instance_labels)


def _parse_counts(data: dict[str, Any], path: Path) -> tuple[int, str]:
    """``numTraining`` and ``file_ending``."""
    num_training = data["numTraining"]
    if isinstance(num_training, bool) or not isinstance(num_training, int) or num_training < 0:
        raise DatasetError(f"'numTraining' must be a non-negative integer, got {num_training!r}", path)
    file_ending = data["file_ending"]
    if not isinstance(file_ending, str) or file_ending.lower() not in SUPPORTED_ENDINGS:
        raise DatasetError(f"'file_ending' {file_ending!r} is not supported; use one of "
                           f"{', '.join(SUPPORTED_ENDINGS)}", path)
    return num_training, file_ending


def _parse_multi_task(data: dict[str, Any], channel_names: dict[int, str], path: Path) -> DatasetDescription:
    """A dataset.json with ``tasks``: one validated :class:`LabelTask` per entry."""
    raw = data["tasks"]
    if not isinstance(raw, dict) or not raw:
        raise DatasetError("'tasks' must be a non-empty object like {\"zones\": {\"labels\": {\"background\": 0, "
                           "\"rock\": 1}, \"kind\": \"area\"}}", path)
    if "regions_class_order" in data:
        raise DatasetError("top-level 'regions_class_order' belongs inside a task when 'tasks' is used", path)
    tasks: list[LabelTask] = []
    folded: dict[str, str] = {}
    for name, entry in raw.items():
        if not _TASK_NAME.match(name):
            raise DatasetError(f"task name {name!r} must start with a letter and hold only letters, digits, '_' "
                               "and '-' (at most 64): it names the task's folder under labelsTr/", path)
        if (other := folded.setdefault(name.casefold(), name)) != name:
            raise DatasetError(f"task names {other!r} and {name!r} differ only in letter case; their folders "
                               "would collide on Windows and macOS", path)
        tasks.append(_parse_task(name, entry, path))
    check_boundaries(tasks, path)
    num_training, file_ending = _parse_counts(data, path)
    extra = {k: v for k, v in data.items() if k not in (*_REQUIRED, "tasks")}
    return DatasetDescription(channel_names=channel_names, labels={}, num_training=num_training,
                              file_ending=file_ending, extra=extra, declared_tasks=tuple(tasks))


def _parse_task(name: str, entry: Any, path: Path) -> LabelTask:
    where = f"task {name!r}"
    if not isinstance(entry, dict) or "labels" not in entry:
        raise DatasetError(f"{where} must be an object with 'labels' (and optionally 'kind', "
                           "'regions_class_order')", path)
    if unknown := sorted(set(entry) - set(_TASK_KEYS)):
        raise DatasetError(f"{where} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_TASK_KEYS)}",
                           path)
    kind = entry.get("kind", "area")
    if kind not in TASK_KINDS:
        raise DatasetError(f"{where} has kind {kind!r}; use 'area' or 'line'", path)
    try:
        labels = _parse_labels(entry["labels"], path)
        order = _parse_regions_order(entry.get("regions_class_order"), labels, path)
    except DatasetError as exc:
        raise DatasetError(f"{where}: {exc.problem}", path) from None
    boundary = _parse_boundary(entry["boundary"], where, path) if "boundary" in entry else None
    task = LabelTask(name, labels, kind, order, boundary)
    if kind == "line" and (task.is_region_based or len(task.foreground_labels) != 1):
        raise DatasetError(f"{where} is a line task and needs exactly one foreground label (e.g. "
                           "{\"background\": 0, \"front\": 1}), no regions", path)
    if boundary is not None and kind != "line":
        raise DatasetError(f"{where} has a 'boundary' but only line tasks (\"kind\": \"line\") have one", path)
    return task


def _parse_boundary(raw: Any, where: str, path: Path) -> LineBoundary:
    """A line task's ``boundary``: ``{"task": "zones", "inside": ["glacier"], "outside": ["ocean"]}``."""
    shape = ("must be {\"task\": NAME, \"inside\": [LABEL, ...], \"outside\": [LABEL, ...]}")
    if not isinstance(raw, dict) or set(raw) != {"task", "inside", "outside"} or not isinstance(raw["task"], str):
        raise DatasetError(f"{where}: 'boundary' {shape}", path)
    names = []
    for side in ("inside", "outside"):
        value = raw[side]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise DatasetError(f"{where}: 'boundary' {side!r} must be a non-empty list of label names", path)
        names.append(tuple(value))
    return LineBoundary(raw["task"], names[0], names[1])


def check_boundaries(tasks: list[LabelTask] | tuple[LabelTask, ...], path: Path | None) -> None:
    """Every line ``boundary`` names an area task of ``tasks`` and disjoint plain labels of it.

    Raises:
        DatasetError: The first boundary that does not fit, naming its task.
    """
    by_name = {task.name: task for task in tasks}
    for task in tasks:
        if task.boundary is None:
            continue
        where, boundary = f"task {task.name!r}: 'boundary'", task.boundary
        area = by_name.get(boundary.task)
        if area is None or area.kind != "area" or area.is_region_based:
            raise DatasetError(f"{where} names {boundary.task!r}, which is not an area task with plain labels "
                               f"(tasks: {', '.join(by_name)})", path)
        for name in (*boundary.inside, *boundary.outside):
            if name not in area.labels or name == IGNORE_LABEL_NAME:
                raise DatasetError(f"{where} names label {name!r}, which task {area.name!r} does not declare "
                                   f"(labels: {', '.join(area.labels)})", path)
        if set(boundary.inside) & set(boundary.outside):
            raise DatasetError(f"{where} has label(s) both inside and outside", path)


def save_dataset_json(path: str | os.PathLike, description: DatasetDescription) -> None:
    """Write a ``dataset.json`` atomically in nnU-Net v2 layout."""
    write_json(path, description.to_json_dict())


def _parse_channels(raw: Any, path: Path) -> dict[int, str]:
    if not isinstance(raw, dict) or not raw:
        raise DatasetError("'channel_names' must be a non-empty object like {\"0\": \"CT\"}", path)
    channels: dict[int, str] = {}
    for key, name in raw.items():
        if not str(key).isdecimal() or not isinstance(name, str):
            raise DatasetError(f"'channel_names' entry {key!r}: {name!r} must map an index to a name", path)
        channels[int(key)] = name
    if sorted(channels) != list(range(len(channels))):
        raise DatasetError(f"'channel_names' indices must be 0..{len(channels) - 1}, got {sorted(channels)}", path)
    return channels


def _parse_labels(raw: Any, path: Path) -> dict[str, int | tuple[int, ...]]:
    if not isinstance(raw, dict) or not raw:
        raise DatasetError("'labels' must be a non-empty object like {\"background\": 0, \"tumour\": 1}", path)
    labels: dict[str, int | tuple[int, ...]] = {}
    for name, value in raw.items():
        if isinstance(value, list) and value and all(_is_int(v) for v in value):
            labels[name] = tuple(value)
        elif _is_int(value):
            labels[name] = value
        else:
            raise DatasetError(f"label {name!r} has value {value!r}; use an integer or a list of integers", path)
    if labels.get("background") not in (0, (0,)):
        raise DatasetError("'labels' must contain \"background\": 0", path)
    plain = sorted(v for k, v in labels.items() if isinstance(v, int) and k != IGNORE_LABEL_NAME)
    is_regions = any(isinstance(v, tuple) for v in labels.values())
    if not is_regions and plain != list(range(len(plain))):
        raise DatasetError(f"label values must be consecutive from 0, got {plain}", path)
    ignore = labels.get(IGNORE_LABEL_NAME)
    if ignore is not None:
        if not isinstance(ignore, int):
            raise DatasetError("the 'ignore' label must be a single integer", path)
        others = [x for k, v in labels.items() if k != IGNORE_LABEL_NAME
                  for x in (v if isinstance(v, tuple) else (v,))]
        if ignore <= max(others):
            raise DatasetError(f"the 'ignore' label ({ignore}) must have the highest value", path)
    return labels


def _parse_regions_order(raw: Any, labels: dict[str, int | tuple[int, ...]], path: Path) -> tuple[int, ...] | None:
    regions = [k for k in labels if k not in ("background", IGNORE_LABEL_NAME)]
    is_regions = any(isinstance(v, tuple) for v in labels.values())
    if raw is None:
        if is_regions:
            raise DatasetError("region-based labels (lists) need 'regions_class_order'", path)
        return None
    if not isinstance(raw, list) or not all(_is_int(v) for v in raw):
        raise DatasetError("'regions_class_order' must be a list of integers", path)
    if is_regions and len(raw) != len(regions):
        raise DatasetError(f"'regions_class_order' has {len(raw)} entries for {len(regions)} regions", path)
    if len(set(raw)) != len(raw):
        raise DatasetError(f"'regions_class_order' {raw} repeats a value; each region needs its own", path)
    declared = {x for v in labels.values() for x in (v if isinstance(v, tuple) else (v,))}
    if undeclared := sorted(set(raw) - declared):
        raise DatasetError(f"'regions_class_order' names label value(s) {undeclared} that no label declares", path)
    return tuple(raw)


def _labels_json(labels: dict[str, Label]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in labels.items()}


def _parse_instance_labels(raw: Any, labels: dict[str, Label], path: Path) -> bool:
    if not isinstance(raw, bool):
        raise DatasetError(f"'instance_labels' must be true or false, got {raw!r}", path)
    if raw and (IGNORE_LABEL_NAME in labels or any(isinstance(v, tuple) for v in labels.values())):
        raise DatasetError("'instance_labels' datasets declare one plain label per class (no regions, no "
                           "'ignore' label)", path)
    return raw


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
