"""How the labels of a ``dataset.json`` map to network outputs, loss targets, label maps and scores: described
once here and used by training, inference, ensembling, postprocessing and evaluation alike.

Two schemes exist, as in nnU-Net v2:

* **Softmax labels** (the default): one output channel per label value, background included; the target is
  the integer label map. ``num_outputs = 1 + number of foreground labels``.
* **Region-based**: ``labels`` holds lists of values (``{"whole tumour": [1, 2, 3], "core": [2, 3]}``); one
  sigmoid output per region, regions may overlap; the target of region ``r`` is "label value in region r".
  Regions made only of background (``0`` or ``[0]``) produce no output.

An ``ignore`` label (always the highest value) marks voxels without annotation: they get a loss mask of 0
and count in no metric. Segmentations reaching the loss hold label values only: the data pipeline maps the
padding value -1 to background first, as nnU-Net does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from autounet.dataset.description import DEFAULT_TASK, IGNORE_LABEL_NAME, DatasetDescription, LabelTask
from autounet.errors import DatasetError

if TYPE_CHECKING:  # torch is imported by the methods that take tensors: planning and preprocessing never need it
    from torch import Tensor

__all__ = ["DEFAULT_TASK", "LabelScheme", "OutputLayout", "OutputTask", "TaskKind"]

TaskKind = Literal["area", "line"]
"""How a label map is scored: overlap of areas, or distance between lines."""

Label = int | tuple[int, ...]
"""A label value, or the values of a region."""


@dataclass(frozen=True)
class LabelScheme:
    """Label handling of one dataset: network output layout, loss targets and the ignore mask.

    Build it with :meth:`from_description`.

    Attributes:
        labels: Label values predicted by the softmax network, background (0) first; for region-based
            datasets every label value that occurs in a region, sorted.
        regions: For region-based datasets, the label values of each region in output-channel order;
            ``None`` for softmax labels.
        regions_class_order: For region-based datasets, the value each region is written as when a
            prediction is turned into a label map (later regions overwrite earlier ones); else ``None``. This
            is the one place that says how outputs are painted: ``None`` means softmax argmax.
        ignore_label: Value of the ``ignore`` label, or ``None``.
        names: Name of each scored entry (:attr:`scored_labels` order), from ``dataset.json``; empty when built
            by hand (then the values name them).
    """

    labels: tuple[int, ...]
    regions: tuple[tuple[int, ...], ...] | None = None
    regions_class_order: tuple[int, ...] | None = None
    ignore_label: int | None = None
    names: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.regions is not None:
            if not self.regions:
                raise ValueError("a region-based scheme needs at least one region")
            if self.regions_class_order is None or len(self.regions_class_order) != len(self.regions):
                raise ValueError("regions_class_order needs one entry per region")
        elif len(self.labels) < 2 or self.labels != tuple(range(len(self.labels))):
            raise ValueError(f"softmax labels must be 0..n with n >= 1, got {self.labels}")
        if self.ignore_label is not None and self.ignore_label <= max(self.labels):
            raise ValueError(f"the ignore label ({self.ignore_label}) must exceed every other label value")

    @classmethod
    def from_description(cls, description: DatasetDescription) -> LabelScheme:
        """Derive the scheme from a validated ``dataset.json`` with one label map.

        Raises:
            DatasetError: The dataset declares no foreground label or region, so there is nothing to train, or
                it has several label maps (use :meth:`OutputLayout.from_description`).
        """
        return cls.from_task(description.single_task)

    @classmethod
    def from_task(cls, task: LabelTask) -> LabelScheme:
        """Derive the scheme of one label map (one task of a ``dataset.json``).

        Raises:
            DatasetError: The map declares no foreground label or region, so there is nothing to train.
        """
        ignore = task.ignore_label
        if not task.is_region_based:
            labels = tuple(sorted(v for k, v in task.labels.items()
                                  if k != IGNORE_LABEL_NAME and isinstance(v, int)))
            if len(labels) < 2:
                raise DatasetError("dataset.json declares no foreground label; add at least one label besides "
                                   "'background'")
            value_names = {v: k for k, v in task.labels.items() if isinstance(v, int)}
            return cls(labels=labels, ignore_label=ignore,
                       names=tuple(value_names.get(v, str(v)) for v in labels if v != 0))
        regions: list[tuple[int, ...]] = []
        names: list[str] = []
        for name, value in task.labels.items():
            region = value if isinstance(value, tuple) else (value,)
            # Background-only entries ("background": 0 or [0]) are not predicted: nothing to learn there.
            if name == IGNORE_LABEL_NAME or set(region) == {0}:
                continue
            regions.append(tuple(sorted(set(region))))
            names.append(name)
        if not regions:
            raise DatasetError("dataset.json declares no foreground region; add at least one region")
        order = task.regions_class_order
        if order is None or len(order) != len(regions):
            raise DatasetError(f"'regions_class_order' needs {len(regions)} entries, one per region")
        values = tuple(sorted({v for region in regions for v in region} | {0}))
        return cls(labels=values, regions=tuple(regions), regions_class_order=order, ignore_label=ignore,
                   names=tuple(names))

    @property
    def region_based(self) -> bool:
        """Whether the network has one sigmoid output per (possibly overlapping) region."""
        return self.regions is not None

    @property
    def num_outputs(self) -> int:
        """Output channels: classes including background (softmax) or regions (region-based)."""
        return len(self.regions) if self.regions is not None else len(self.labels)

    @property
    def foreground_labels(self) -> tuple[int, ...]:
        """Sorted label values other than background and ignore."""
        return tuple(v for v in self.labels if v != 0)

    @property
    def scored_labels(self) -> tuple[Label, ...]:
        """What Dice and other per-class scores are computed on: every foreground label (softmax), or every
        region as the tuple of its values (region-based), in output order."""
        return tuple(self.regions) if self.regions is not None else self.foreground_labels

    @property
    def scored_label_names(self) -> dict[str, Label]:
        """:attr:`scored_labels` by name (``dataset.json``'s names; the value as text where unnamed)."""
        scored = self.scored_labels
        names = self.names if len(self.names) == len(scored) else tuple(str(label) for label in scored)
        return dict(zip(names, scored, strict=True))

    @property
    def num_metric_channels(self) -> int:
        """Entries of per-class metrics: foreground classes (softmax) or regions (region-based)."""
        return self.num_outputs if self.region_based else self.num_outputs - 1

    def loss_mask(self, seg: Tensor) -> Tensor | None:
        """Float mask ``(B, 1, *spatial)``: 0 at ignore-label voxels, 1 elsewhere; ``None`` without ignore label."""
        if self.ignore_label is None:
            return None
        return (seg != self.ignore_label).float()

    def targets_for_loss(self, seg: Tensor) -> tuple[Tensor, Tensor | None]:
        """Turn a segmentation batch into the loss target and loss mask.

        Args:
            seg: Integer label map ``(B, 1, *spatial)``.

        Returns:
            ``(target, mask)``. For softmax labels the target is the ``int64`` label map ``(B, 1, *spatial)``
            with ignore voxels set to background (their loss is masked anyway); for region-based datasets it
            is a ``float32`` tensor ``(B, R, *spatial)`` with 1 where the voxel's label lies in region ``r``.
            The mask is a ``float32`` ``(B, 1, *spatial)`` tensor, 0 at ignore voxels, or ``None`` when the
            dataset has no ignore label.

        Raises:
            ValueError: ``seg`` does not have a single channel.
        """
        if seg.ndim < 3 or seg.shape[1] != 1:
            raise ValueError(f"expected a segmentation of shape (B, 1, *spatial), got {tuple(seg.shape)}")
        mask = self.loss_mask(seg)
        if self.regions is None:
            target = seg.long()
            if self.ignore_label is not None:
                target = target.masked_fill(seg == self.ignore_label, 0)
            return target, mask
        return self.region_masks(seg).float(), mask

    def region_masks(self, seg: Tensor) -> Tensor:
        """Boolean region membership ``(B, R, *spatial)`` of a label map ``(B, 1, *spatial)``.

        Raises:
            ValueError: The scheme is not region-based.
        """
        import torch

        if self.regions is None:
            raise ValueError("region_masks needs a region-based label scheme")
        channels = []
        for region in self.regions:
            if len(region) == 1:
                channels.append(seg[:, 0] == region[0])
            else:
                channels.append(torch.isin(seg[:, 0], torch.tensor(region, device=seg.device, dtype=seg.dtype)))
        return torch.stack(channels, dim=1)


@dataclass(frozen=True)
class OutputTask:
    """One label map a network predicts, and the output channels that predict it.

    Attributes:
        name: The label map's name (:data:`DEFAULT_TASK` for a dataset with one).
        scheme: How its channels become labels (softmax classes or sigmoid regions) and how it is scored.
        first_channel: Index of its first output channel; it owns ``scheme.num_outputs`` channels from there.
        kind: ``"area"`` (a label per voxel, scored by overlap) or ``"line"`` (one-voxel-wide lines such as
            calving fronts, trained widened, predicted thinned, scored by the mean distance error).
    """

    name: str
    scheme: LabelScheme
    first_channel: int = 0
    kind: TaskKind = "area"

    def __post_init__(self) -> None:
        if self.kind not in ("area", "line"):
            raise ValueError(f"task kind must be 'area' or 'line', got '{self.kind}'")
        if self.kind == "line" and (self.scheme.region_based or len(self.scheme.foreground_labels) != 1):
            raise ValueError(f"line task '{self.name}' needs exactly one foreground label and no regions")

    @property
    def channels(self) -> slice:
        """Its output channels, as a slice of the channel axis."""
        return slice(self.first_channel, self.first_channel + self.scheme.num_outputs)


@dataclass(frozen=True)
class OutputLayout:
    """Which output channels of a network belong to which label map, and how each becomes labels.

    A dataset with one label map (every nnU-Net v2 dataset) has one task owning every channel; datasets with
    several label maps (multi-task) have one task per map, their channels concatenated in task order.

    Attributes:
        tasks: The label maps in output order; channels are consecutive and do not overlap.
    """

    tasks: tuple[OutputTask, ...]

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("an output layout needs at least one task")
        names = [task.name for task in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be distinct, got {names}")
        expected = 0
        for task in self.tasks:
            if task.first_channel != expected:
                raise ValueError(f"task '{task.name}' starts at channel {task.first_channel}, expected {expected}")
            expected += task.scheme.num_outputs

    @classmethod
    def of_schemes(cls, schemes: dict[str, LabelScheme], kinds: dict[str, TaskKind] | None = None) -> OutputLayout:
        """Tasks in the given order, each after the previous one's channels; ``kinds`` by task name
        (``"area"`` where not given)."""
        tasks, first = [], 0
        for name, scheme in schemes.items():
            tasks.append(OutputTask(name, scheme, first, (kinds or {}).get(name, "area")))
            first += scheme.num_outputs
        return cls(tuple(tasks))

    @classmethod
    def from_description(cls, description: DatasetDescription) -> OutputLayout:
        """The layout of a dataset.json: one task per label map, in ``dataset.json`` order (a dataset with
        top-level ``labels`` has one, :data:`DEFAULT_TASK`).

        Raises:
            DatasetError: A map's labels declare nothing to predict (see :meth:`LabelScheme.from_task`).
        """
        return cls.of_schemes({task.name: LabelScheme.from_task(task) for task in description.tasks},
                              kinds={task.name: task.kind for task in description.tasks})  # type: ignore[misc]

    @property
    def num_outputs(self) -> int:
        """Output channels of the whole network."""
        last = self.tasks[-1]
        return last.first_channel + last.scheme.num_outputs

    @property
    def single(self) -> LabelScheme:
        """The scheme of a one-task layout.

        Raises:
            ValueError: The layout has several tasks (callers must then handle each).
        """
        if len(self.tasks) != 1:
            raise ValueError(f"the layout has {len(self.tasks)} tasks; handle each one")
        return self.tasks[0].scheme

    def task(self, name: str) -> OutputTask:
        """The task called ``name``.

        Raises:
            KeyError: No such task (the message lists the known ones).
        """
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"no task '{name}'; the layout has {', '.join(t.name for t in self.tasks)}")
