"""Raw datasets in nnU-Net v2 layout: finding them by id or name and listing their cases.

Layout::

    DatasetNNN_Name/
      dataset.json
      imagesTr/{case}_{channel:04d}{ending}
      labelsTr/{case}{ending}                 (several label maps: labelsTr/{task}/{case}{ending})
      imagesTs/{case}_{channel:04d}{ending}   (optional)
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from autounet.dataset.description import DatasetDescription, load_dataset_json
from autounet.errors import DatasetError
from autounet.io.images import MULTICHANNEL_ENDINGS, split_ending

__all__ = [
    "RawCase",
    "RawDataset",
    "case_channel_files",
    "dataset_folder_name",
    "find_raw_dataset",
    "group_channel_files",
    "list_test_cases",
    "label_folders",
    "load_raw_dataset",
    "no_case_error",
]

_DATASET_FOLDER = re.compile(r"^Dataset(\d{3})_(.+)$")
_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class RawCase:
    """One case of a raw dataset.

    Attributes:
        case_id: The file-name stem shared by its channel files and label.
        image_files: Channel files in channel order.
        label_files: Its label maps, one per task of the dataset (:class:`~autounet.dataset.labels.OutputLayout`
            order; every nnU-Net v2 dataset has exactly one); empty for test cases.
        instances_file: For a dataset with instance labels, the ``{case}.json`` beside the label (instance id
            -> class from 0); ``None`` otherwise.
    """

    case_id: str
    image_files: tuple[Path, ...]
    label_files: tuple[Path, ...] = ()
    instances_file: Path | None = None

    @property
    def label_file(self) -> Path | None:
        """The first (for nnU-Net v2 datasets: the only) label map, or ``None`` for test cases."""
        return self.label_files[0] if self.label_files else None


@dataclass(frozen=True)
class RawDataset:
    """A validated raw dataset folder and its training cases."""

    root: Path
    description: DatasetDescription
    cases: tuple[RawCase, ...]

    @property
    def name(self) -> str:
        """Folder name, e.g. ``Dataset501_Brain``."""
        return self.root.name

    @property
    def dataset_id(self) -> int | None:
        """The numeric id from the folder name, or ``None`` for folders without one."""
        match = _DATASET_FOLDER.match(self.root.name)
        return int(match.group(1)) if match else None

    def case(self, case_id: str) -> RawCase:
        """The case with the given id."""
        for case in self.cases:
            if case.case_id == case_id:
                return case
        raise DatasetError(f"no case '{case_id}' in this dataset", self.root)


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``DatasetNNN_Name`` for an id and a short name."""
    if not 0 <= dataset_id <= 999:
        raise DatasetError(f"dataset id must be between 0 and 999, got {dataset_id}")
    return f"Dataset{dataset_id:03d}_{name}"


def find_raw_dataset(raw_root: str | os.PathLike, spec: str | int) -> Path:
    """Locate a dataset folder by id (``501``), full folder name or short name, or as a path.

    Raises:
        DatasetError: Nothing or more than one folder matches; the message lists what exists.
    """
    raw_root = Path(raw_root)
    text = str(spec)
    as_path = Path(text)
    if as_path.is_dir() and (as_path / "dataset.json").exists():
        return as_path.absolute()
    candidates = sorted(p for p in raw_root.iterdir() if p.is_dir()) if raw_root.is_dir() else []
    matches = []
    for folder in candidates:
        match = _DATASET_FOLDER.match(folder.name)
        if folder.name == text or (match and (match.group(2) == text or (text.isdigit()
                                                                         and int(match.group(1)) == int(text)))):
            matches.append(folder)
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(p.name for p in candidates) or "none"
    if not matches:
        raise DatasetError(f"no dataset '{text}' here (found: {known}); set --data-root or AUTOUNET_DATA, or "
                           "create one with 'autounet example'", raw_root)
    raise DatasetError(f"dataset '{text}' is ambiguous: {', '.join(p.name for p in matches)}", raw_root)


def group_channel_files(folder: Path, ending: str) -> tuple[dict[str, dict[int, Path]], list[Path]]:
    """Group ``{case}_{channel:04d}{ending}`` files of a folder by case.

    Returns:
        ``{case_id: {channel: path}}`` and the files that do not follow the naming pattern.
    """
    groups: dict[str, dict[int, Path]] = defaultdict(dict)
    strays: list[Path] = []
    if not folder.is_dir():
        return {}, []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if not path.name.lower().endswith(ending.lower()):
            strays.append(path)
            continue
        match = _CHANNEL_FILE.match(path.name[: -len(ending)])
        if match is None:
            strays.append(path)
            continue
        groups[match.group("case")][int(match.group("channel"))] = path
    return dict(groups), strays


def no_case_error(folder: Path, ending: str) -> DatasetError:
    """The error for a folder without ``<case>_NNNN<ending>`` files, saying what it holds instead: a model reads
    only its dataset's file ending (as nnU-Net does), so images of another format are the usual cause.

    Args:
        folder: The input folder searched.
        ending: The file ending the model reads (``dataset.json``'s ``file_ending``).
    """
    message = f"no case found: expected files named <case>_0000{ending}"
    if not folder.is_dir():
        return DatasetError(f"{message}, but the folder does not exist", folder)
    found: dict[str, int] = defaultdict(int)
    for path in folder.iterdir():
        parts = split_ending(path.name) if path.is_file() and not path.name.startswith(".") else None
        if parts is not None and parts[1].lower() != ending.lower():
            found[parts[1]] += 1
    if found:
        other = ", ".join(f"{count} ending {name}" for name, count in sorted(found.items()))
        message += f"; the folder holds image files of another format ({other}): convert them to {ending}"
    return DatasetError(message, folder)


def case_channel_files(channels: dict[int, Path], ending: str, num_channels: int) -> list[Path]:
    """The channel files of one case in channel order, by the rule ``verify`` applies and training reads.

    A case holds ``_0000`` .. ``_{n-1}`` without gaps. Normally ``n`` is the declared channel count; with a
    natural-image ending (PNG, BMP, TIFF), where one file may hold several channels (an RGB image holds
    three), ``n`` may be smaller, and the channel count after reading is what must match.

    Args:
        channels: ``{channel: file}`` of one case (from :func:`group_channel_files`).
        ending: The dataset's file ending.
        num_channels: Channels declared in ``dataset.json``.

    Returns:
        The files, ``_0000`` first.

    Raises:
        DatasetError: Missing or extra channel files, naming the first file of the case.
    """
    present = sorted(channels)
    natural = ending.lower() in MULTICHANNEL_ENDINGS
    fits = present == list(range(len(present))) and (len(present) <= num_channels if natural
                                                      else len(present) == num_channels)
    if not present or not fits:
        found = ", ".join(f"{c:04d}" for c in present) or "none"
        expected = f"0000 to {num_channels - 1:04d}" + (" (fewer when one file holds several channels, as RGB)"
                                                         if natural and num_channels > 1 else "")
        raise DatasetError(f"case has channel files {found} but the model expects {num_channels} channel(s), "
                           f"{expected}", channels[present[0]] if present else None)
    return [channels[c] for c in present]


def load_raw_dataset(root: str | os.PathLike) -> RawDataset:
    """Load ``dataset.json`` and pair each training case's channel files with its label.

    This does a quick structural check only (files exist and pair up); :func:`autounet.dataset.verify`
    does the thorough one and reports every problem at once.

    Raises:
        DatasetError: Missing folders, malformed ``dataset.json``, or cases that do not pair up.
    """
    root = Path(root)
    description = load_dataset_json(root / "dataset.json")
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise DatasetError(f"missing folder {folder.name}/", root)
    groups, _ = group_channel_files(images_dir, description.file_ending)
    folders = label_folders(labels_dir, description)
    cases = []
    for case_id in sorted(groups):
        labels = tuple(folder / f"{case_id}{description.file_ending}" for folder in folders)
        for label in labels:
            if not label.is_file():
                raise DatasetError(f"case '{case_id}' has no label file; run 'autounet verify' for a full report",
                                   label)
        channels = groups[case_id]
        instances = labels_dir / f"{case_id}.json" if description.instance_labels else None
        if instances is not None and not instances.is_file():
            raise DatasetError(f"case '{case_id}' has no instance file {instances.name}; run 'autounet verify' "
                               "for a full report", instances)
        cases.append(RawCase(case_id, tuple(channels[c] for c in sorted(channels)), labels, instances))
    if not cases:
        raise DatasetError("no training cases found in imagesTr/", root)
    return RawDataset(root=root, description=description, cases=tuple(cases))


def label_folders(labels_dir: str | os.PathLike, description: DatasetDescription) -> tuple[Path, ...]:
    """The folder of each label map, in task order: ``labelsTr/`` itself for a dataset with one map declared
    by ``labels``, ``labelsTr/<task>/`` for each task of a dataset declaring ``tasks`` (the same for
    ``labelsTs/``)."""
    labels_dir = Path(labels_dir)
    if not description.has_task_folders:
        return (labels_dir,)
    return tuple(labels_dir / task.name for task in description.tasks)


def list_test_cases(root: str | os.PathLike, ending: str) -> tuple[RawCase, ...]:
    """The cases of ``imagesTs/`` (no labels), if that folder exists."""
    groups, _ = group_channel_files(Path(root) / "imagesTs", ending)
    return tuple(RawCase(cid, tuple(ch[c] for c in sorted(ch))) for cid, ch in sorted(groups.items()))
