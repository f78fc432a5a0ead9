"""From a multi-task network's logits to the label maps a prediction writes, one per task.

The network predicts the tasks it was trained on (the dataset's, or those its configuration's label derivation
computes, :mod:`autounet.dataset.derived`). Each becomes a label map in the original geometry; fused classes
are split back into their line and area maps; each task's postprocessing is applied; line tasks become
one-voxel lines, either thinned from their own output (``head``) or taken as the ``boundary`` that
``dataset.json`` declares for them between labels of a predicted area map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from autounet.dataset.derived import LabelDerivation, output_tasks, split_fused
from autounet.dataset.description import DatasetDescription, LabelTask
from autounet.dataset.labels import OutputLayout
from autounet.errors import ConfigError
from autounet.inference.original_geometry import to_original_geometry
from autounet.planning.plans import ConfigurationPlan, Plans
from autounet.postprocessing import TaskPostprocessing, apply_postprocessing
from autounet.postprocessing.lines import boundary_between, thin_to_line
from autounet.preprocessing.properties import CaseProperties

__all__ = ["LINE_SOURCES", "TaskMap", "TaskOutputs"]

LINE_SOURCES = ("head", "boundary")
"""Where line tasks come from: their own output, thinned, or the declared boundary of a predicted area map."""

TaskMap = tuple[str, np.ndarray, "np.ndarray | None"]
"""Task name, label map and, when asked for, the probabilities of the network task it comes from."""


@dataclass(frozen=True)
class TaskOutputs:
    """How the network's tasks become the written maps.

    Attributes:
        description: The dataset's ``dataset.json`` (its tasks are written, plus derived lines).
        derivation: The configuration's label derivation, or ``None``.
        layout: The network's output channels per trained task.
        line_source: One of :data:`LINE_SOURCES`.
        postprocessing: Each task's postprocessing, or ``None``.
    """

    description: DatasetDescription
    derivation: LabelDerivation | None
    layout: OutputLayout
    line_source: str = "head"
    postprocessing: TaskPostprocessing | None = None

    def __post_init__(self) -> None:
        if self.line_source not in LINE_SOURCES:
            raise ConfigError(f"line source '{self.line_source}' is unknown; use one of {', '.join(LINE_SOURCES)}")
        lines = [task for task in self.tasks if task.kind == "line"]
        if self.line_source == "boundary":
            if not lines:
                raise ConfigError("the line source 'boundary' needs a line task; the model predicts none")
            if missing := [task.name for task in lines if task.boundary is None]:
                raise ConfigError(f"the line source 'boundary' needs a 'boundary' for every line task in "
                                  f"dataset.json; task {missing[0]!r} has none")
        if self.postprocessing is not None:
            self.postprocessing.check_tasks([task.name for task in self.tasks])

    @property
    def tasks(self) -> tuple[LabelTask, ...]:
        """The written maps in order: the dataset's tasks, then derived lines."""
        return output_tasks(self.description, self.derivation)

    def maps(self, logits: torch.Tensor, properties: CaseProperties, plans: Plans, configuration: ConfigurationPlan,
             save_probabilities: bool) -> list[TaskMap]:
        """Every written map of one case in the original grid (see the module docstring)."""
        network_maps, probabilities = {}, {}
        for task in self.layout.tasks:
            network_maps[task.name], probabilities[task.name] = to_original_geometry(
                logits[task.channels], properties, plans, configuration, task.scheme.regions_class_order,
                return_probabilities=save_probabilities)
        maps = split_fused(network_maps, self.description, self.derivation)
        if self.postprocessing is not None:
            for name, seg in maps.items():
                if (plan := self.postprocessing.for_task(name)) is not None:
                    maps[name] = apply_postprocessing(seg, plan)
        tasks = self.tasks
        by_name = {task.name: task for task in tasks}
        lines = {task.name: self._line(task, maps, by_name) for task in tasks if task.kind == "line"}
        maps.update(lines)
        return [(task.name, maps[task.name], probabilities.get(task.name)) for task in tasks]

    def _line(self, task: LabelTask, maps: dict[str, np.ndarray], tasks: dict[str, LabelTask]) -> np.ndarray:
        """The one-voxel line of a line task, from its own map or from the boundary in its area map."""
        label = task.foreground_labels[0]
        own = maps[task.name]
        if self.line_source == "boundary" and task.boundary is not None:
            inside, outside = task.boundary.values(tasks[task.boundary.task])
            line = boundary_between(maps[task.boundary.task], inside, outside)
        else:
            line = thin_to_line(own == label)
        return (line * label).astype(own.dtype)
