"""Dataset integrity verification: every problem of a raw dataset at once, each naming its file.

:func:`verify_dataset` never raises for a broken dataset and never writes into the dataset folder; it
collects problems (which make the dataset unusable) and warnings (worth a look, not fatal):

- ``dataset.json`` missing or malformed (invalid JSON, missing keys, bad labels, nnU-Net v1 format):
  reported alone, since nothing else can be checked without it;
- ``imagesTr/`` or ``labelsTr/`` missing; no training cases at all; ``numTraining`` not matching;
- file names: endings other than ``file_ending``, image files without the ``_NNNN`` channel suffix,
  duplicate case ids (ids in one folder that are equal ignoring letter case), missing or undeclared
  channel files, images without labels and labels without images;
- file contents, one case at a time in worker processes: unreadable or truncated files, 4D data, NaN or
  Inf, channel count after reading (an RGB PNG/BMP/TIFF supplies three), shape and geometry (spacing,
  origin, direction) of every channel and of the label against the first channel, non-integer or
  undeclared label values, and one dimensionality across all cases (a single slice stored as 3D counts as 2D,
  as in nnU-Net);
- ``imagesTs/``, when present, gets the name, channel and readability checks;
- a dataset declaring ``tasks`` (several label maps) has every map of every case checked like a single label
  map, in ``labelsTr/<task>/`` (and ``labelsTs/<task>/`` when present): present, no stray files, same geometry
  as the image, only the values its task declares.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from autounet.dataset._checks import CaseResult, Layout, Problem, check_case, scan_layout
from autounet.dataset._task_checks import scan_task_labels
from autounet.dataset.description import DatasetDescription, load_dataset_json
from autounet.errors import DatasetError
from autounet.io.geometry import describe_dimensionality
from autounet.progress import parallel_map

__all__ = [
    "DatasetSummary",
    "Problem",
    "VerificationReport",
    "require_valid_dataset",
    "verify_command",
    "verify_dataset",
]

logger = logging.getLogger(__name__)

_DATASET_FOLDER = re.compile(r"^Dataset(\d{3})_")
# Ratios of 3 to 10 are common (thick-slice MR) and planning handles them; beyond 10 a wrong header
# (e.g. slice thickness in cm) is likely enough to ask for a look.
_ANISOTROPY_RATIO = 10.0
T = TypeVar("T")


@dataclass(frozen=True)
class DatasetSummary:
    """Statistics of the training cases that could be read.

    Attributes:
        name: Dataset folder name, e.g. ``Dataset501_Brain``.
        num_cases: Training cases (case ids in ``imagesTr/``).
        num_test_cases: Cases in ``imagesTs/`` (0 without that folder).
        num_channels: Input channels declared in ``dataset.json``.
        channel_names: Channel names in channel order.
        ndim: Spatial dimensionality (2 or 3).
        file_ending: File ending from ``dataset.json``.
        labels: Label name -> value (or tuple of values for a region), as in ``dataset.json``; for a dataset
            with several label maps, ``task/name`` -> value.
        median_shape: Per-axis median spatial shape, ``(Z, Y, X)`` or ``(Y, X)``, in voxels.
        median_spacing: Per-axis median voxel spacing in mm, same axis order.
        min_shape: Per-axis minimum spatial shape in voxels.
        max_shape: Per-axis maximum spatial shape in voxels.
        cases_per_label: Label name -> number of training cases whose label map contains it (for a
            region, any of its values).
    """

    name: str
    num_cases: int
    num_test_cases: int
    num_channels: int
    channel_names: tuple[str, ...]
    ndim: int
    file_ending: str
    labels: dict[str, int | tuple[int, ...]]
    median_shape: tuple[int, ...]
    median_spacing: tuple[float, ...]
    min_shape: tuple[int, ...]
    max_shape: tuple[int, ...]
    cases_per_label: dict[str, int]


@dataclass(frozen=True)
class VerificationReport:
    """The outcome of :func:`verify_dataset`.

    Attributes:
        dataset: The dataset folder.
        problems: Everything that makes the dataset unusable, in a stable order.
        summary: Statistics of the readable training cases; ``None`` if ``dataset.json`` is unusable or
            no case could be read.
        warnings: Oddities that do not stop training (e.g. a label map without foreground).
    """

    dataset: Path
    problems: tuple[Problem, ...]
    summary: DatasetSummary | None
    warnings: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether no problem was found (warnings do not count)."""
        return not self.problems


def verify_dataset(root: str | os.PathLike, num_processes: int = 1) -> VerificationReport:
    """Check a raw dataset thoroughly and report every problem at once.

    Reads each case once, one case at a time per worker process; never modifies the dataset folder.

    Args:
        root: The dataset folder (``DatasetNNN_Name/``).
        num_processes: Worker processes for reading cases; 1 reads in this process.

    Returns:
        The report; ``report.ok`` tells whether the dataset is usable. Dataset faults never raise.
    """
    root = Path(root)
    description, problem = _load_description(root)
    if description is None:
        return VerificationReport(dataset=root, problems=(problem,) if problem else (), summary=None)
    layout = scan_layout(root, description)
    if description.has_task_folders:
        scan_task_labels(root, description, layout)
    logger.info("Verifying %s: %d case(s) to read", root.name, len(layout.tasks))
    results: list[CaseResult] = parallel_map(check_case, layout.tasks, num_processes, "Verifying")
    problems = list(layout.problems)
    warnings = list(layout.warnings)
    for result in results:
        problems.extend(result.problems)
        warnings.extend(result.warnings)
    problems.extend(_dimensionality_problems(results))
    problems.extend(_num_training_problems(root, description, layout))
    summary = _summarize(root, description, results, layout)
    if summary is not None:
        warnings.extend(_spacing_warnings(root, summary))
    # Grouped by file (stable, so one file's problems keep their order): fixing goes file by file.
    return VerificationReport(dataset=root, problems=_by_path(problems), summary=summary,
                              warnings=_by_path(warnings))


def require_valid_dataset(root: str | os.PathLike, num_processes: int = 1) -> None:
    """Verify a dataset and stop with one line if it has problems (for commands that need clean data).

    Args:
        root: The dataset folder.
        num_processes: Worker processes for reading cases.

    Raises:
        DatasetError: The dataset has problems; the message gives their number, the first one and the
            command that lists them all.
    """
    root = Path(root)
    report = verify_dataset(root, num_processes)
    if report.warnings:
        logger.warning("%d warning(s) about %s, first: %s; run '%s' for the list", len(report.warnings),
                       root.name, report.warnings[0], verify_command(root))
    if not report.ok:
        count = len(report.problems)
        raise DatasetError(f"{count} problem{'s' if count != 1 else ''}, first: {report.problems[0]}; run "
                           f"'{verify_command(root)}' for the full list", root)


def verify_command(root: str | os.PathLike) -> str:
    """The ``autounet verify`` command line for a dataset folder (by id when the name has one)."""
    root = Path(root)
    match = _DATASET_FOLDER.match(root.name)
    spec = str(int(match.group(1))) if match else shlex.quote(str(root))
    return f"autounet verify -d {spec}"


def _by_path(problems: list[Problem]) -> tuple[Problem, ...]:
    return tuple(sorted(problems, key=lambda problem: str(problem.path)))


def _load_description(root: Path) -> tuple[DatasetDescription | None, Problem | None]:
    if not root.is_dir():
        return None, Problem(root, "dataset folder not found")
    json_path = root / "dataset.json"
    if not json_path.is_file():
        return None, Problem(json_path, "missing dataset.json; it must declare channel_names, labels, "
                                        "numTraining and file_ending")
    try:
        return load_dataset_json(json_path), None
    except DatasetError as exc:
        return None, Problem(json_path, " ".join(exc.problem.split()))


def _majority(results: list[CaseResult], key: Callable[[CaseResult], T | None]) -> T | None:
    # Training cases decide; test cases only count when there are no readable training cases.
    for group in ([r for r in results if not r.is_test], results):
        counts = Counter(value for r in group if (value := key(r)) is not None)
        if counts:
            return counts.most_common(1)[0][0]
    return None


def _array_ndim(result: CaseResult) -> int | None:
    return result.ndim


def _dimensionality(result: CaseResult) -> str | None:
    # A single slice stored in a 3D file counts as 2D (as in nnU-Net), so a 2D NIfTI among 3D ones stands out.
    return describe_dimensionality(result.shape) if result.shape is not None else None


def _dimensionality_problems(results: list[CaseResult]) -> list[Problem]:
    majority = _majority(results, _dimensionality)
    with_dims = [r for r in results if _dimensionality(r) is not None and not r.is_test]
    agreeing = sum(_dimensionality(r) == majority for r in with_dims)
    return [Problem(r.first_file, (
        f"case '{r.case_id}' is {_dimensionality(r)} but {agreeing} of {len(with_dims)} training cases are "
        f"{majority} (its shape is {r.shape}); all cases must have the same dimensionality (remove the case or "
        "store it like the others)"))
        for r in results if _dimensionality(r) is not None and _dimensionality(r) != majority]


def _num_training_problems(root: Path, description: DatasetDescription, layout: Layout) -> list[Problem]:
    found = layout.num_training_cases
    if found is None or found == description.num_training:
        return []
    return [Problem(root / "dataset.json", (
        f"numTraining is {description.num_training} but imagesTr/ holds {found} case(s); set "
        f"\"numTraining\": {found}"))]


def _summarize(root: Path, description: DatasetDescription, results: list[CaseResult],
               layout: Layout) -> DatasetSummary | None:
    majority = _majority(results, _array_ndim)
    training = [r for r in results if not r.is_test]
    readable = [r for r in training if r.shape is not None and r.spacing is not None and r.ndim == majority]
    if majority is None or not readable:
        return None
    shapes = np.array([r.shape for r in readable])
    spacings = np.array([r.spacing for r in readable])
    labels, cases_per_label = _label_counts(description, training)
    return DatasetSummary(
        name=root.name, num_cases=layout.num_training_cases or 0,
        num_test_cases=len(results) - len(training), num_channels=description.num_channels,
        channel_names=tuple(description.channel_names[c] for c in sorted(description.channel_names)),
        ndim=majority, file_ending=description.file_ending, labels=labels,
        median_shape=tuple(int(round(float(v))) for v in np.median(shapes, axis=0)),
        median_spacing=tuple(float(v) for v in np.median(spacings, axis=0)),
        min_shape=tuple(int(v) for v in shapes.min(axis=0)),
        max_shape=tuple(int(v) for v in shapes.max(axis=0)),
        cases_per_label=cases_per_label)


def _label_counts(description: DatasetDescription, training: list[CaseResult]
                  ) -> tuple[dict[str, int | tuple[int, ...]], dict[str, int]]:
    """Declared labels and how many training cases hold each; ``task/name`` keys for multi-task datasets."""
    labels: dict[str, int | tuple[int, ...]] = {}
    counts: dict[str, int] = {}
    for task in description.tasks:
        prefix = f"{task.name}/" if description.has_task_folders else ""
        for name, value in task.labels.items():
            values = value if isinstance(value, tuple) else (value,)
            labels[prefix + name] = value
            found = [_values_of(r, task.name, description) for r in training]
            counts[prefix + name] = sum(1 for v in found if v is not None and not v.isdisjoint(values))
    return labels, counts


def _values_of(result: CaseResult, task: str, description: DatasetDescription) -> frozenset[int] | None:
    if not description.has_task_folders:
        return result.label_values
    return dict(result.task_label_values).get(task)


def _spacing_warnings(root: Path, summary: DatasetSummary) -> list[Problem]:
    ratio = max(summary.median_spacing) / min(summary.median_spacing)
    if ratio <= _ANISOTROPY_RATIO:
        return []
    spacing = " x ".join(f"{s:.4g}" for s in summary.median_spacing)
    return [Problem(root, (f"median spacing {spacing} mm is very anisotropic (ratio {ratio:.1f}); check the "
                           "image headers if this is unexpected"))]
