"""Postprocessing of a model with several label maps: one decision per area task, in one ``postprocessing.json``.

The file holds ``{"schema_version": 1, "tasks": {"zones": {...a PostprocessingPlan...}}}``; a task it does not
name is left as predicted. Line tasks are not decided on: their predictions are thinned to one-voxel lines and
scored by distance, not Dice. A single-map model's ``postprocessing.json`` keeps its layout
(:class:`~autounet.postprocessing.plan.PostprocessingPlan`); :func:`load_any_postprocessing` reads either.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from autounet.dataset.description import LabelTask
from autounet.errors import ConfigError
from autounet.io.jsonio import read_json
from autounet.io.serialization import load_dataclass, save_dataclass
from autounet.postprocessing.decide import CasePair, determine_postprocessing, scored_labels
from autounet.postprocessing.plan import PostprocessingPlan, load_postprocessing

__all__ = ["TaskPostprocessing", "determine_task_postprocessing", "load_any_postprocessing",
           "save_task_postprocessing"]


@dataclass(frozen=True)
class TaskPostprocessing:
    """Each task's postprocessing, by task name; saved as ``postprocessing.json`` of a multi-task model.

    Attributes:
        schema_version: Version of this file's layout.
        tasks: Task name -> what to do to that task's predicted maps.
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int = 1
    tasks: dict[str, PostprocessingPlan] = field(default_factory=dict)

    def for_task(self, name: str) -> PostprocessingPlan | None:
        """The plan of task ``name``, or ``None`` when the file names no plan for it."""
        return self.tasks.get(name)

    def check_tasks(self, names: Sequence[str]) -> None:
        """Refuse plans for tasks the model does not predict.

        Raises:
            ConfigError: A task name not in ``names``.
        """
        if unknown := sorted(set(self.tasks) - set(names)):
            raise ConfigError(f"the postprocessing names task(s) {', '.join(unknown)}, but the model predicts "
                              f"{', '.join(names)}")


def determine_task_postprocessing(pairs: Mapping[str, Sequence[CasePair]], tasks: Sequence[LabelTask],
                                  num_processes: int = 1) -> TaskPostprocessing:
    """Decide each area task's postprocessing on its cross-validation predictions, as for one label map
    (:func:`~autounet.postprocessing.decide.determine_postprocessing`).

    Args:
        pairs: Task name -> (reference, prediction) files of every cross-validation case.
        tasks: The label maps; line tasks are skipped.
        num_processes: Worker processes.

    Raises:
        DatasetError: An area task without pairs, an unreadable file or shapes that differ.
    """
    plans = {}
    for task in tasks:
        if task.kind != "area":
            continue
        plans[task.name] = determine_postprocessing(pairs.get(task.name, ()), scored_labels(task),
                                                    task.is_region_based, task.ignore_label, num_processes)
    return TaskPostprocessing(tasks=plans)


def save_task_postprocessing(path: str | os.PathLike, plan: TaskPostprocessing) -> None:
    """Write ``plan`` as indented JSON, atomically."""
    save_dataclass(path, plan)


def load_any_postprocessing(path: str | os.PathLike) -> PostprocessingPlan | TaskPostprocessing:
    """Read a ``postprocessing.json`` of either layout: per task (it has ``tasks``) or of one label map.

    Raises:
        ConfigError: Missing or invalid file (naming it and the field).
    """
    path = Path(path)
    if path.is_file() and isinstance(data := read_json(path), dict) and "tasks" in data:
        return load_dataclass(TaskPostprocessing, path)
    return load_postprocessing(path)
