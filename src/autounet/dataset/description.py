"""``dataset.json`` in nnU-Net v2 format: parsing and validation.

Accepted exactly as nnU-Net v2 writes it: ``channel_names`` (``{"0": "CT"}``), ``labels`` (``{"background":
0, "liver": 1}`` or, for overlapping regions, lists such as ``{"whole": [1, 2, 3]}`` with
``regions_class_order``), ``numTraining``, ``file_ending``, and optionally a label named ``ignore``. Other
keys (``name``, ``description``, ``licence``, ...) are kept unchanged.

``"instance_labels": true`` (written by ``autounet convert nndet`` and ``autounet example detection``) marks
a detection dataset: each label file holds an instance map (0 background, 1..N one id per object) with a
``{case}.json`` beside it, ``{"instances": {"1": class, ...}}``, classes counting from 0; class ``c`` is
the label of value ``c + 1`` in ``labels`` (see :mod:`autounet.dataset.nndet`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autounet.errors import DatasetError
from autounet.io.images import SUPPORTED_ENDINGS
from autounet.io.jsonio import read_json, write_json

__all__ = ["DatasetDescription", "load_dataset_json", "save_dataset_json"]

IGNORE_LABEL_NAME = "ignore"
_REQUIRED = ("channel_names", "labels", "numTraining", "file_ending")


@dataclass(frozen=True)
class DatasetDescription:
    """The validated content of a ``dataset.json``.

    Attributes:
        channel_names: Channel index -> modality name (``"CT"`` selects CT normalisation).
        labels: Label name -> value, or tuple of values for a region (region-based training).
        num_training: Declared number of training cases.
        file_ending: Image file ending, e.g. ``".nii.gz"``.
        regions_class_order: For region-based datasets, the label value each region is written as.
        extra: All other keys, kept as they were.
        instance_labels: Label files are instance maps with a per-case instance JSON (detection datasets).
    """

    channel_names: dict[int, str]
    labels: dict[str, int | tuple[int, ...]]
    num_training: int
    file_ending: str
    regions_class_order: tuple[int, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    instance_labels: bool = False

    @property
    def num_channels(self) -> int:
        """Number of input channels."""
        return len(self.channel_names)

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
        """Every integer value that may appear in a label file."""
        values: set[int] = {0}
        for value in self.labels.values():
            values.update(value if isinstance(value, tuple) else (value,))
        return frozenset(values)

    @property
    def foreground_labels(self) -> tuple[int, ...]:
        """Sorted foreground label values (background and ignore excluded) of a non-region dataset."""
        ignore = self.ignore_label
        return tuple(sorted(v for v in self.allowed_label_values if v != 0 and v != ignore))

    @property
    def instance_classes(self) -> dict[int, str]:
        """Detection class (from 0, as in the instance JSON) -> name: the label of value ``c + 1`` is class ``c``."""
        plain = {value: name for name, value in self.labels.items()
                 if isinstance(value, int) and value > 0 and name != IGNORE_LABEL_NAME}
        return {value - 1: plain[value] for value in sorted(plain)}

    def to_json_dict(self) -> dict[str, Any]:
        """The nnU-Net v2 ``dataset.json`` layout."""
        data: dict[str, Any] = {
            "channel_names": {str(k): v for k, v in sorted(self.channel_names.items())},
            "labels": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.labels.items()},
            "numTraining": self.num_training,
            "file_ending": self.file_ending,
        }
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
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise DatasetError(f"dataset.json lacks the required key(s) {', '.join(missing)}", path)
    channel_names = _parse_channels(data["channel_names"], path)
    labels = _parse_labels(data["labels"], path)
    num_training = data["numTraining"]
    if isinstance(num_training, bool) or not isinstance(num_training, int) or num_training < 0:
        raise DatasetError(f"'numTraining' must be a non-negative integer, got {num_training!r}", path)
    file_ending = data["file_ending"]
    if not isinstance(file_ending, str) or file_ending.lower() not in SUPPORTED_ENDINGS:
        raise DatasetError(f"'file_ending' {file_ending!r} is not supported; use one of "
                           f"{', '.join(SUPPORTED_ENDINGS)}", path)
    regions_class_order = _parse_regions_order(data.get("regions_class_order"), labels, path)
    instance_labels = _parse_instance_labels(data.get("instance_labels", False), labels, path)
    extra = {k: v for k, v in data.items() if k not in (*_REQUIRED, "regions_class_order", "instance_labels")}
    return DatasetDescription(channel_names=channel_names, labels=labels, num_training=num_training,
                              file_ending=file_ending, regions_class_order=regions_class_order, extra=extra,
                              instance_labels=instance_labels)


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


def _parse_instance_labels(raw: Any, labels: dict[str, int | tuple[int, ...]], path: Path) -> bool:
    if not isinstance(raw, bool):
        raise DatasetError(f"'instance_labels' must be true or false, got {raw!r}", path)
    if raw and (IGNORE_LABEL_NAME in labels or any(isinstance(v, tuple) for v in labels.values())):
        raise DatasetError("'instance_labels' datasets declare one plain label per class (no regions, no "
                           "'ignore' label)", path)
    return raw


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
