"""The dataset fingerprint: what planning needs to know about a dataset, and nothing it can recompute."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from autounet.io.serialization import OMIT_WHEN_DEFAULT

__all__ = ["ChannelIntensityStats", "Fingerprint"]


@dataclass(frozen=True)
class ChannelIntensityStats:
    """Intensity statistics of one channel over foreground (labelled) voxels of all training cases."""

    mean: float
    median: float
    std: float
    min: float
    max: float
    percentile_00_5: float
    percentile_99_5: float


@dataclass(frozen=True)
class Fingerprint:
    """Per-case geometry and per-channel foreground intensity statistics of a dataset.

    Attributes:
        schema_version: Version of this file layout.
        ndim: Spatial dimensions of the images (2 or 3).
        case_ids: Training cases, in the order of the per-case lists below.
        spacings: Voxel spacing per case, array axis order, mm.
        shapes_before_crop: Spatial shape per case as stored.
        shapes_after_crop: Spatial shape per case after cropping to the non-zero region.
        relative_sizes_after_crop: Voxels after crop / voxels before, per case.
        foreground_intensity: Statistics per input channel.
        num_foreground_samples_per_case: How many foreground voxels were sampled per case per channel.
        boxes_per_case: For a dataset with instance labels, the number of instances per case (cases in
            ``case_ids`` order); empty when the dataset has none (box statistics not recorded).
        box_sizes_mm: The box extent of every instance in mm, raw array axis order, cases in order
            (``boxes_per_case`` rows each). In mm rather than voxels so that planning converts them to any
            target spacing; detection configurations fit their anchors to them.
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int
    ndim: int
    case_ids: tuple[str, ...]
    spacings: tuple[tuple[float, ...], ...]
    shapes_before_crop: tuple[tuple[int, ...], ...]
    shapes_after_crop: tuple[tuple[int, ...], ...]
    relative_sizes_after_crop: tuple[float, ...]
    foreground_intensity: tuple[ChannelIntensityStats, ...]
    num_foreground_samples_per_case: int = 10000
    # Left out of the JSON when empty: segmentation fingerprints stay as they were.
    boxes_per_case: tuple[int, ...] = field(default=(), metadata=OMIT_WHEN_DEFAULT)
    box_sizes_mm: tuple[tuple[float, ...], ...] = field(default=(), metadata=OMIT_WHEN_DEFAULT)

    @property
    def median_relative_size_after_crop(self) -> float:
        """Median fraction of voxels kept by cropping (drives the non-zero-mask normalisation rule)."""
        return float(np.median(self.relative_sizes_after_crop))

    @property
    def median_spacing(self) -> tuple[float, ...]:
        """Per-axis median spacing."""
        return tuple(float(v) for v in np.median(np.asarray(self.spacings), axis=0))

    @property
    def num_channels(self) -> int:
        """Number of input channels."""
        return len(self.foreground_intensity)
