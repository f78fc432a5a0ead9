"""Label maps computed from a dataset's own maps: derived line tasks and fused labels.

Two variants of the glacier calving-front work, described as data (a configuration's ``label_derivation`` in
``plans.json``) and computed once, when preprocessing reads a case's label files:

* a **derived line**: a new line task whose map is the boundary between labels of an area task, e.g. the
  glacier's border with rock and radar shadow::

      {"derived_lines": [{"name": "glacier_rock", "boundary": {"task": "zones", "inside": ["glacier"],
                                                                  "outside": ["rock", "background"]}}]}

* a **fused line**: a line task painted into an area task as one more class (widened to ``width`` voxels) and
  trained as that single map; prediction splits it back into the two maps, the class voxels becoming the
  ``restore`` label in the area map::

      {"fused_lines": [{"line": "front", "into": "zones", "restore": "glacier", "width": 5}]}

The network is trained on the derived description (:func:`derive_description`); the dataset's files stay as
they are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from autounet.dataset.description import (
    IGNORE_LABEL_NAME,
    DatasetDescription,
    LabelTask,
    LineBoundary,
    check_boundaries,
)
from autounet.errors import DatasetError

__all__ = ["DerivedLine", "FusedLine", "LabelDerivation", "boundary_mask", "derive_description",
           "derive_label_maps", "output_tasks", "split_fused"]


@dataclass(frozen=True)
class DerivedLine:
    """A line task computed from an area task: the voxels of ``boundary.inside`` next to ``boundary.outside``.

    Attributes:
        name: The new task's name (and its one foreground label's name).
        boundary: Which area task's labels it separates.
    """

    name: str
    boundary: LineBoundary


@dataclass(frozen=True)
class FusedLine:
    """A line task painted into an area task as an extra class (the line task is then not trained on its own).

    Attributes:
        line: The line task.
        into: The area task (plain labels, no ignore label) that receives the class, named as the line's label.
        restore: Label of ``into`` that the class's voxels become when a prediction is split back.
        width: The line is widened to this many voxels (a square or cube neighbourhood) before painting.
    """

    line: str
    into: str
    restore: str
    width: int = 1

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"a fused line's width must be >= 1, got {self.width}")


@dataclass(frozen=True)
class LabelDerivation:
    """The label maps a configuration trains on, computed from the dataset's: see the module docstring.

    Attributes:
        derived_lines: Line tasks added, computed from area tasks (before any fusion).
        fused_lines: Line tasks painted into area tasks as extra classes.
    """

    derived_lines: tuple[DerivedLine, ...] = ()
    fused_lines: tuple[FusedLine, ...] = ()


def boundary_mask(labels: np.ndarray, inside: tuple[int, ...], outside: tuple[int, ...]) -> np.ndarray:
    """Voxels whose label is in ``inside`` and that share a face with a voxel whose label is in ``outside``.

    Returns:
        Boolean mask, same shape as ``labels``.
    """
    labels = np.asarray(labels)
    face_neighbours = ndimage.generate_binary_structure(labels.ndim, 1)
    near_outside = ndimage.binary_dilation(np.isin(labels, outside), structure=face_neighbours)
    return np.isin(labels, inside) & near_outside


def derive_description(description: DatasetDescription, derivation: LabelDerivation | None) -> DatasetDescription:
    """The dataset description a configuration trains on: derived lines added, fused lines moved into their
    area tasks (as the next label value). ``None`` or an empty derivation returns ``description`` itself.

    Raises:
        DatasetError: A derivation that does not fit the dataset (unknown task or label, a name taken twice,
            fusing into a task with regions or an ignore label), naming the entry.
    """
    if derivation is None or derivation == LabelDerivation():
        return description
    tasks = {task.name: task for task in description.tasks}
    for line in derivation.derived_lines:
        if line.name in tasks:
            raise DatasetError(f"derived line {line.name!r}: the dataset already has a task of that name")
        tasks[line.name] = LabelTask(line.name, {"background": 0, line.name: 1}, "line", None, line.boundary)
    check_boundaries(tuple(tasks.values()), None)
    for fused in derivation.fused_lines:
        line, into = _fusion_tasks(tasks, fused)
        name = _line_label_name(line)
        tasks[into.name] = replace(into, labels={**into.labels, name: _fused_value(into)})
        del tasks[line.name]
    return replace(description, labels={}, regions_class_order=None, declared_tasks=tuple(tasks.values()))


def derive_label_maps(maps: np.ndarray, description: DatasetDescription,
                      derivation: LabelDerivation | None) -> np.ndarray:
    """A case's label maps as the configuration trains on them.

    Args:
        maps: The dataset's maps as read (``(*spatial)`` for one task, ``(tasks, *spatial)`` for several).
        description: The dataset's description (not derived).
        derivation: What to compute; ``None`` returns ``maps``.

    Returns:
        The maps of :func:`derive_description`'s tasks, in its order, stacked the same way.
    """
    derived = derive_description(description, derivation)
    if derived is description or derivation is None:
        return maps
    raw = description.tasks
    by_name = {task.name: (maps[index] if len(raw) > 1 else maps) for index, task in enumerate(raw)}
    tasks = {task.name: task for task in raw}
    for line in derivation.derived_lines:
        inside, outside = line.boundary.values(tasks[line.boundary.task])
        by_name[line.name] = boundary_mask(by_name[line.boundary.task], inside, outside).astype(maps.dtype)
        tasks[line.name] = LabelTask(line.name, {"background": 0, line.name: 1}, "line")
    values = _fused_values(derived, tasks, derivation)
    for fused in derivation.fused_lines:
        line = by_name.pop(fused.line) == tasks[fused.line].foreground_labels[0]
        if fused.width > 1:
            line = ndimage.maximum_filter(line, size=fused.width)
        by_name[fused.into] = np.where(line, values[fused.line], by_name[fused.into]).astype(maps.dtype)
    result = [by_name[task.name] for task in derived.tasks]
    return np.stack(result) if len(result) > 1 else result[0]


def output_tasks(description: DatasetDescription, derivation: LabelDerivation | None) -> tuple[LabelTask, ...]:
    """The maps a prediction writes: the dataset's tasks (fused ones split back) and the derived lines."""
    derived = {task.name: task for task in derive_description(description, derivation).tasks}
    return (*description.tasks, *(derived[line.name] for line in (derivation.derived_lines if derivation else ())))


def split_fused(maps: dict[str, np.ndarray], description: DatasetDescription,
                derivation: LabelDerivation | None) -> dict[str, np.ndarray]:
    """Predicted maps of the derived tasks turned back into :func:`output_tasks`' maps: each fused class
    becomes its line task's map (its foreground label) and, in the area map, the ``restore`` label.

    Args:
        maps: Task name -> label map, for every task of :func:`derive_description`.
        description: The dataset's description (not derived).
        derivation: What the model was trained on.

    Returns:
        Task name -> label map, in :func:`output_tasks`' order.
    """
    result = dict(maps)
    tasks = {task.name: task for task in description.tasks}
    values = _fused_values(derive_description(description, derivation), tasks, derivation)
    for fused in derivation.fused_lines if derivation else ():
        into, line = tasks[fused.into], tasks[fused.line]
        area = result[fused.into]
        painted = area == values[fused.line]
        result[fused.line] = (painted * line.foreground_labels[0]).astype(area.dtype)
        result[fused.into] = np.where(painted, into.labels[fused.restore], area).astype(area.dtype)
    return {task.name: result[task.name] for task in output_tasks(description, derivation)}


def _fusion_tasks(tasks: dict[str, LabelTask], fused: FusedLine) -> tuple[LabelTask, LabelTask]:
    where = f"fused line {fused.line!r} into {fused.into!r}"
    line, into = tasks.get(fused.line), tasks.get(fused.into)
    if line is None or line.kind != "line":
        raise DatasetError(f"{where}: {fused.line!r} is not a line task (tasks: {', '.join(tasks)})")
    if into is None or into.kind != "area" or into.is_region_based or into.ignore_label is not None:
        raise DatasetError(f"{where}: {fused.into!r} is not an area task with plain labels and no ignore label")
    if fused.restore not in into.labels or fused.restore == IGNORE_LABEL_NAME:
        raise DatasetError(f"{where}: 'restore' names {fused.restore!r}, which {fused.into!r} does not declare")
    if _line_label_name(line) in into.labels:
        raise DatasetError(f"{where}: {fused.into!r} already has a label {_line_label_name(line)!r}")
    return line, into


def _line_label_name(line: LabelTask) -> str:
    value = line.foreground_labels[0]
    return next(name for name, v in line.labels.items() if v == value)


def _fused_values(derived: DatasetDescription, tasks: dict[str, LabelTask],
                  derivation: LabelDerivation | None) -> dict[str, int]:
    """Fused line task name -> the value of its class in the derived area map."""
    areas = {task.name: task for task in derived.tasks}
    return {fused.line: int(areas[fused.into].labels[_line_label_name(tasks[fused.line])])  # type: ignore[arg-type]
            for fused in (derivation.fused_lines if derivation else ())}


def _fused_value(into: LabelTask) -> int:
    """The value of the fused class: one above the area task's labels (they run 0..n without an ignore label)."""
    return max(v for v in into.labels.values() if isinstance(v, int)) + 1
