"""The pieces of dataset verification: folder layout checks and the per-case reading check.

:func:`scan_layout` looks only at file names (fast, single process) and returns the problems it finds
plus one :class:`CaseTask` per case; :func:`check_case` reads one case and is what the worker processes
run. Nothing here writes to the dataset folder.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from autounet.dataset._instances import check_instance_label
from autounet.dataset.description import DatasetDescription
from autounet.errors import ImageIOError
from autounet.io.geometry import ImageGeometry
from autounet.io.images import MULTICHANNEL_ENDINGS, read_image, read_segmentation, split_ending

__all__ = ["CaseResult", "CaseTask", "Layout", "Problem", "TaskLabelFile", "check_case", "scan_layout"]

# Same pattern as autounet.dataset.raw: a case id, an underscore and a four-digit channel index.
_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
# Files some formats keep beside the main file under the same stem: detached pixel data of MetaImage and
# NRRD headers, and the spacing sidecar of 3D TIFF volumes. They are not stray files.
_COMPANIONS: dict[str, tuple[str, ...]] = {
    ".mhd": (".raw", ".zraw", ".raw.gz"),
    ".nhdr": (".raw", ".raw.gz"),
    ".tif": (".json",),
    ".tiff": (".json",),
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset.

    Attributes:
        path: The file (or folder) concerned; for a missing file, the path it should have.
        message: One line saying what is wrong and, where obvious, what to do.
    """

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class TaskLabelFile:
    """One label map of a case of a multi-task dataset (``labelsTr/<task>/<case>``) and what it may hold.

    Attributes:
        task: The task's name.
        path: The label file.
        allowed_labels: Label values the task declares.
        ignore_label: The task's ``ignore`` label value, which does not count as foreground.
    """

    task: str
    path: Path
    allowed_labels: frozenset[int]
    ignore_label: int | None


@dataclass(frozen=True)
class CaseTask:
    """What a worker needs to check one case (picklable).

    Attributes:
        case_id: The case's file-name stem.
        image_files: Its channel files in channel order (possibly incomplete; gaps are reported elsewhere).
        label_file: Its label map, or ``None`` for test cases and cases whose label is missing.
        expected_channels: Channels the case must have after reading, or ``None`` to skip that check
            (because the file names already showed a channel problem).
        allowed_labels: Label values declared in ``dataset.json``.
        ignore_label: The ``ignore`` label value, which does not count as foreground.
        is_test: Whether the case comes from ``imagesTs/``.
        task_labels: For multi-task datasets, the case's label maps that exist, one per task (``label_file``
            is then ``None``).
        instances_file: For a dataset with instance labels, the case's instance JSON beside its label.
        instance_classes: For a dataset with instance labels, class (from 0) -> name; ``None`` otherwise.
    """

    case_id: str
    image_files: tuple[Path, ...]
    label_file: Path | None
    expected_channels: int | None
    allowed_labels: frozenset[int]
    ignore_label: int | None
    is_test: bool = False
    task_labels: tuple[TaskLabelFile, ...] = ()
    instances_file: Path | None = None
    instance_classes: dict[int, str] | None = None


@dataclass(frozen=True)
class CaseResult:
    """What reading one case found.

    Attributes:
        case_id: The case's file-name stem.
        is_test: Whether the case comes from ``imagesTs/``.
        first_file: Its first channel file, named in dataset-level problems about the case.
        problems: Faults that make the dataset unusable.
        warnings: Oddities worth a look that do not stop training.
        ndim: Spatial dimensionality of the images, ``None`` if no image file was readable.
        num_channels: Channels found in the readable image files.
        shape: Spatial shape ``(Z, Y, X)`` or ``(Y, X)`` of the first readable channel.
        spacing: Its voxel spacing in mm, same axis order.
        label_values: Values present in the label map, ``None`` when there is no usable label.
        task_label_values: For multi-task datasets, ``(task, values)`` of each checked label map; values are
            ``None`` for an unusable file.
    """

    case_id: str
    is_test: bool
    first_file: Path
    problems: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    ndim: int | None
    num_channels: int
    shape: tuple[int, ...] | None
    spacing: tuple[float, ...] | None
    label_values: frozenset[int] | None
    task_label_values: tuple[tuple[str, frozenset[int] | None], ...] = ()


@dataclass
class Layout:
    """The result of :func:`scan_layout`.

    Attributes:
        tasks: One task per training case (sorted by id), then one per test case.
        problems: Layout problems (folders, names, endings, pairing, channels).
        warnings: Layout oddities that do not stop training.
        num_training_cases: Distinct case ids in ``imagesTr/``, or ``None`` if that folder is missing.
    """

    tasks: list[CaseTask] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    num_training_cases: int | None = None


@dataclass
class _Reference:
    """The first readable channel of a case, which the others and the label are compared with."""

    path: Path
    shape: tuple[int, ...]
    geometry: ImageGeometry


def scan_layout(root: Path, description: DatasetDescription) -> Layout:
    """Check folder layout and file names, and list the cases to read.

    Args:
        root: The dataset folder.
        description: Its validated ``dataset.json``.

    Returns:
        Problems found from file names alone, and the per-case reading tasks.
    """
    layout = Layout()
    ending = description.file_ending
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    for folder, what in ((images_dir, f"training images ({{case}}_{{NNNN}}{ending})"),
                         (labels_dir, f"training labels ({{case}}{ending})")):
        if not folder.is_dir():
            layout.problems.append(Problem(folder, f"missing folder {folder.name}/; it must hold the {what}"))
    images: dict[str, dict[int, Path]] = {}
    if images_dir.is_dir():
        images = _scan_image_folder(images_dir, ending, layout)
        layout.num_training_cases = len(images)
    # Multi-task label folders (labelsTr/<task>/) are checked by autounet.dataset._task_checks; an
    # instance-label dataset keeps {case}.json beside each label file.
    scan_labels = labels_dir.is_dir() and not description.has_task_folders
    companions = (".json",) if description.instance_labels else ()
    labels = _scan_label_folder(labels_dir, ending, layout, companions) if scan_labels else None
    if images_dir.is_dir() and labels is not None:
        _pair_images_and_labels(images, labels, labels_dir, ending, layout)
    if images_dir.is_dir() and not images:
        layout.problems.append(Problem(images_dir, f"empty dataset: no training cases (files named "
                                                   f"{{case}}_0000{ending}) in imagesTr/"))
    for case_id in sorted(images):
        label = labels.get(case_id) if labels is not None else None
        layout.tasks.append(_make_task(case_id, images[case_id], label, images_dir, description, layout))
    test_dir = root / "imagesTs"
    if test_dir.is_dir():
        test_images = _scan_image_folder(test_dir, ending, layout)
        for case_id in sorted(test_images):
            task = _make_task(case_id, test_images[case_id], None, test_dir, description, layout)
            layout.tasks.append(task)
    return layout


def _scan_files(folder: Path, ending: str, layout: Layout, companions: tuple[str, ...] = ()) -> list[tuple[str, Path]]:
    """``(stem, path)`` of the files with the dataset's ending; wrong endings become problems."""
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        layout.problems.append(Problem(folder, f"cannot list folder: {exc.strerror or exc}"))
        return []
    names = {p.name for p in entries}
    stems: list[tuple[str, Path]] = []
    for path in entries:
        if path.is_dir():
            layout.warnings.append(Problem(path, f"sub-folder in {folder.name}/ is ignored"))
        elif not path.exists():
            layout.problems.append(Problem(path, "broken symbolic link; its target does not exist"))
        elif not path.is_file():
            layout.problems.append(Problem(path, "not a regular file; remove it from this folder"))
        elif path.name.endswith(ending):
            stems.append((path.name[: -len(ending)], path))
        elif not _is_companion(path.name, ending, names, companions):
            layout.problems.append(Problem(path, _ending_message(path.name, ending)))
    return stems


def _is_companion(name: str, ending: str, names: set[str], extra: tuple[str, ...] = ()) -> bool:
    for companion in (*_COMPANIONS.get(ending.lower(), ()), *extra):
        if name.lower().endswith(companion) and name[: -len(companion)] + ending in names:
            return True
    return False


def _ending_message(name: str, ending: str) -> str:
    if name.lower().endswith(ending.lower()):
        return (f"file ending differs in letter case from dataset.json's file_ending '{ending}'; rename the "
                "file")
    split = split_ending(name)
    if split is not None:
        return (f"wrong file ending '{split[1]}': dataset.json's file_ending is '{ending}'; convert the file "
                "or fix file_ending")
    return f"not a '{ending}' file (dataset.json's file_ending); remove it from this folder"


def _scan_image_folder(folder: Path, ending: str, layout: Layout) -> dict[str, dict[int, Path]]:
    """``{case_id: {channel: path}}`` of a folder of channel files; bad names become problems."""
    cases: dict[str, dict[int, Path]] = defaultdict(dict)
    for stem, path in _scan_files(folder, ending, layout):
        match = _CHANNEL_FILE.match(stem)
        if match is None:
            layout.problems.append(Problem(path, (
                f"name does not follow {{case}}_{{NNNN}}{ending}: image files need a 4-digit channel suffix, "
                f"e.g. {stem}_0000{ending}")))
            continue
        cases[match.group("case")][int(match.group("channel"))] = path
    _report_case_collisions({c: min(ch.values()) for c, ch in cases.items()}, layout)
    return dict(cases)


def _scan_label_folder(folder: Path, ending: str, layout: Layout, companions: tuple[str, ...] = ()
                       ) -> dict[str, Path]:
    labels = dict(_scan_files(folder, ending, layout, companions))
    _report_case_collisions(labels, layout)
    return labels


def _report_case_collisions(first_files: dict[str, Path], layout: Layout) -> None:
    """Duplicate case ids: ids within one folder that are equal when letter case is ignored.

    On a case-sensitive file system they are distinct, but copied to Windows or macOS one silently
    overwrites the other, and outputs named by case id would collide.
    """
    seen: dict[str, str] = {}
    for case_id in sorted(first_files):
        other = seen.setdefault(case_id.casefold(), case_id)
        if other != case_id:
            layout.problems.append(Problem(first_files[case_id], (
                f"duplicate case id: '{case_id}' and '{other}' differ only in letter case and collide on "
                "case-insensitive file systems (Windows, macOS); rename one")))


def _pair_images_and_labels(images: dict[str, dict[int, Path]], labels: dict[str, Path], labels_dir: Path,
                            ending: str, layout: Layout) -> None:
    for case_id in sorted(images):
        if case_id not in labels:
            layout.problems.append(Problem(labels_dir / f"{case_id}{ending}", (
                f"case '{case_id}' has images but no label file; add this label or remove its images")))
    folded = {c.casefold(): c for c in images}
    for stem in sorted(labels):
        if stem in images:
            continue
        match = _CHANNEL_FILE.match(stem)
        if match is not None and match.group("case") in images:
            message = (f"label named like an image channel file; labels are named {{case}}{ending}, "
                       f"rename it to {match.group('case')}{ending}")
        else:
            message = f"label without images: no imagesTr/{stem}_0000{ending}"
            if stem.casefold() in folded:
                message += f" (image case '{folded[stem.casefold()]}' differs only in letter case)"
        layout.problems.append(Problem(labels[stem], message))


def _make_task(case_id: str, channels: dict[int, Path], label: Path | None, folder: Path,
               description: DatasetDescription, layout: Layout) -> CaseTask:
    ending = description.file_ending
    declared = description.num_channels
    count_before = len(layout.problems)
    present = sorted(channels)
    for channel in present:
        if channel >= declared:
            layout.problems.append(Problem(channels[channel], (
                f"channel {channel} is not declared: dataset.json channel_names has {declared} channel(s) "
                f"(_0000 to _{declared - 1:04d})")))
    # An RGB natural image supplies three channels from one file, so there only gaps are certain errors;
    # the channel count is checked after reading.
    natural = ending.lower() in MULTICHANNEL_ENDINGS
    in_range = [c for c in present if c < declared]
    needed = (max(in_range) + 1 if in_range else 1) if natural else declared
    for channel in range(needed):
        if channel not in channels:
            layout.problems.append(Problem(folder / f"{case_id}_{channel:04d}{ending}", (
                f"missing channel {channel} ('{description.channel_names[channel]}') of case '{case_id}'; "
                f"dataset.json declares {declared} channel(s)")))
    clean = len(layout.problems) == count_before
    instances = description.instance_labels and label is not None
    return CaseTask(case_id=case_id, image_files=tuple(channels[c] for c in present), label_file=label,
                    expected_channels=declared if clean else None,
                    allowed_labels=description.tasks[0].allowed_label_values,
                    ignore_label=description.tasks[0].ignore_label,
                    is_test=folder.name == "imagesTs",
                    instances_file=label.parent / f"{case_id}.json" if instances and label else None,
                    instance_classes=description.instance_classes if instances else None)


def check_case(task: CaseTask) -> CaseResult:
    """Read one case and check it; runs in a worker process, one case at a time (bounded memory).

    Channels are read one by one and only the first channel's shape and geometry are kept, so memory
    stays at about one channel plus the label map.

    Args:
        task: The case's files and what ``dataset.json`` declares.

    Returns:
        The problems, warnings and statistics of the case. Dataset problems never raise.
    """
    problems: list[Problem] = []
    warnings: list[Problem] = []
    reference: _Reference | None = None
    num_channels = 0
    all_read = True
    for path in task.image_files:
        try:
            data, geometry = read_image([path])
        except ImageIOError as exc:
            problems.append(_problem_from_error(exc, path))
            all_read = False
            continue
        num_channels += data.shape[0]
        low = float(data.min()) if data.size else 0.0
        if data.size and low == float(data.max()):
            warnings.append(Problem(path, f"image is constant (every voxel is {low:g}); is it empty?"))
        if (shear := _shear_problem(path, geometry)) is not None:
            problems.append(shear)
        if reference is None:
            reference = _Reference(path, tuple(data.shape[1:]), geometry)
        else:
            shape = tuple(data.shape[1:])
            problems.extend(_compare_with_reference(path, shape, geometry, reference, "channel"))
        del data
    if all_read and task.expected_channels is not None and num_channels != task.expected_channels:
        problems.append(Problem(task.image_files[0], (
            f"case '{task.case_id}' has {num_channels} channel(s) after reading {len(task.image_files)} "
            f"file(s) but dataset.json declares {task.expected_channels}; add or remove channel files "
            "(an RGB image counts as 3 channels)")))
    label_values = None
    if task.label_file is not None:
        label_values = _check_label(task.label_file, task, reference, problems, warnings)
    task_values = _check_task_labels(task, reference, problems, warnings)
    return CaseResult(
        case_id=task.case_id, is_test=task.is_test, first_file=task.image_files[0],
        problems=tuple(problems), warnings=tuple(warnings),
        ndim=reference.geometry.ndim if reference else None, num_channels=num_channels,
        shape=reference.shape if reference else None,
        spacing=reference.geometry.spacing if reference else None, label_values=label_values,
        task_label_values=task_values)


def _check_task_labels(task: CaseTask, reference: _Reference | None, problems: list[Problem],
                       warnings: list[Problem]) -> tuple[tuple[str, frozenset[int] | None], ...]:
    """Check each label map of a multi-task case against the image and its task's declared values."""
    found = []
    for label in task.task_labels:
        declared = replace(task, allowed_labels=label.allowed_labels, ignore_label=label.ignore_label)
        first_new = len(problems)
        found.append((label.task, _check_label(label.path, declared, reference, problems, warnings)))
        # The task's labels are where undeclared values must be added, not a top-level 'labels'.
        problems[first_new:] = [replace(p, message=p.message.replace("to 'labels'", f"to task '{label.task}' labels"))
                                for p in problems[first_new:]]
    return tuple(found)


def _shear_problem(path: Path, geometry: ImageGeometry) -> Problem | None:
    """A sheared affine (axes not perpendicular): spacing and resampling would silently be wrong."""
    direction = geometry.direction_matrix()
    if np.allclose(direction.T @ direction, np.eye(geometry.ndim), atol=1e-3):
        return None
    return Problem(path, "the header's affine is sheared (image axes are not perpendicular), so voxel spacing is "
                         "not defined; resample the image to an orthogonal grid (or fix the sform) first")


def _problem_from_error(exc: ImageIOError, path: Path) -> Problem:
    # The readers' messages already say what is wrong (4D data, NaN/Inf, truncation); keep them one line.
    return Problem(exc.path or path, " ".join(exc.problem.split()))


def _compare_with_reference(path: Path, shape: tuple[int, ...], geometry: ImageGeometry,
                            reference: _Reference, what: str) -> list[Problem]:
    problems = []
    if shape != reference.shape:
        problems.append(Problem(path, f"{what} shape {shape} differs from image shape {reference.shape} of "
                                      f"{reference.path.name}"))
    mismatch = geometry.mismatch(reference.geometry)
    if mismatch is not None:
        problems.append(Problem(path, (
            f"{what} geometry differs from {reference.path.name}: {mismatch}; all files of a case must share "
            "spacing, origin and direction (copy the image header or resample)")))
    return problems


def _check_label(path: Path, task: CaseTask, reference: _Reference | None, problems: list[Problem],
                 warnings: list[Problem]) -> frozenset[int] | None:
    """Check the label map of a case; return the label values it holds, or ``None`` if unusable."""
    try:
        seg, geometry = read_segmentation(path)
    except ImageIOError as exc:
        problems.append(_problem_from_error(exc, path))
        return None
    if reference is not None:
        problems.extend(_compare_with_reference(path, tuple(seg.shape), geometry, reference, "label"))
    uniques = np.unique(seg)
    del seg
    if uniques.dtype.kind == "f":
        if not np.isfinite(uniques).all():
            problems.append(Problem(path, "label map contains NaN or Inf values"))
            return None
        fractional = uniques[uniques != np.round(uniques)]
        if fractional.size:
            examples = ", ".join(f"{v:g}" for v in fractional[:3])
            problems.append(Problem(path, (
                f"non-integer label values (e.g. {examples}); label maps must hold whole numbers (was it "
                "resampled with linear interpolation? use nearest-neighbour)")))
            return None
    values = frozenset(int(v) for v in uniques)
    if task.instances_file is not None and task.instance_classes is not None:
        semantic, faults, notes = check_instance_label(path, values, task.instances_file, task.instance_classes)
        problems.extend(Problem(*fault) for fault in faults)
        warnings.extend(Problem(*note) for note in notes)
        return semantic
    undeclared = sorted(values - task.allowed_labels)
    if undeclared:
        declared = ", ".join(str(v) for v in sorted(task.allowed_labels))
        problems.append(Problem(path, (
            f"label values {undeclared} not declared in dataset.json (declared: {declared}); add them to "
            "'labels' or fix the label map")))
    if not values - {0, task.ignore_label}:
        warnings.append(Problem(path, "label map has no foreground (background only)"))
    return values
