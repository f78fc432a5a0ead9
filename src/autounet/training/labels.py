"""How the labels of a ``dataset.json`` map to network outputs and loss targets.

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

from dataclasses import dataclass

import torch
from torch import Tensor

from autounet.dataset.description import IGNORE_LABEL_NAME, DatasetDescription
from autounet.errors import DatasetError

__all__ = ["LabelScheme"]


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
            prediction is turned into a label map (later regions overwrite earlier ones); else ``None``.
        ignore_label: Value of the ``ignore`` label, or ``None``.
    """

    labels: tuple[int, ...]
    regions: tuple[tuple[int, ...], ...] | None = None
    regions_class_order: tuple[int, ...] | None = None
    ignore_label: int | None = None

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
        """Derive the scheme from a validated ``dataset.json``.

        Raises:
            DatasetError: The dataset declares no foreground label or region, so there is nothing to train.
        """
        ignore = description.ignore_label
        if not description.is_region_based:
            labels = tuple(sorted(v for k, v in description.labels.items()
                                  if k != IGNORE_LABEL_NAME and isinstance(v, int)))
            if len(labels) < 2:
                raise DatasetError("dataset.json declares no foreground label; add at least one label besides "
                                   "'background'")
            return cls(labels=labels, ignore_label=ignore)
        regions: list[tuple[int, ...]] = []
        for name, value in description.labels.items():
            region = value if isinstance(value, tuple) else (value,)
            # Background-only entries ("background": 0 or [0]) are not predicted: nothing to learn there.
            if name == IGNORE_LABEL_NAME or set(region) == {0}:
                continue
            regions.append(tuple(sorted(set(region))))
        if not regions:
            raise DatasetError("dataset.json declares no foreground region; add at least one region")
        order = description.regions_class_order
        if order is None or len(order) != len(regions):
            raise DatasetError(f"'regions_class_order' needs {len(regions)} entries, one per region")
        values = tuple(sorted({v for region in regions for v in region} | {0}))
        return cls(labels=values, regions=tuple(regions), regions_class_order=order, ignore_label=ignore)

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
        if self.regions is None:
            raise ValueError("region_masks needs a region-based label scheme")
        channels = []
        for region in self.regions:
            if len(region) == 1:
                channels.append(seg[:, 0] == region[0])
            else:
                channels.append(torch.isin(seg[:, 0], torch.tensor(region, device=seg.device, dtype=seg.dtype)))
        return torch.stack(channels, dim=1)
