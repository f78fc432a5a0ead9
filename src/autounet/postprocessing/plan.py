"""The postprocessing decision as a typed, versioned JSON file (``postprocessing.json``), and applying it.

The only postprocessing autounet decides on is nnU-Net's: keep only the largest connected component of the
whole foreground, and/or of single labels (or regions). Voxels removed that way become background (0).

Region-based models: a region is a mask of the label map (the voxels whose value lies in the region's value
set), as nnU-Net does; the plan stores each region as its value set in ``largest_component_regions``, so
applying a plan never needs the dataset.json.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cc3d
import numpy as np

from autounet.errors import ConfigError
from autounet.io.serialization import load_dataclass, save_dataclass

__all__ = [
    "POSTPROCESSING_FILE",
    "DecisionStep",
    "PostprocessingPlan",
    "apply_postprocessing",
    "keep_largest_component",
    "load_postprocessing",
    "save_postprocessing",
]

POSTPROCESSING_FILE = "postprocessing.json"


@dataclass(frozen=True)
class DecisionStep:
    """One trial of the decision: mean Dice over the cross-validation cases without and with the step.

    Attributes:
        target: ``"foreground"``, or the label (``"2"``) / region (``"1+2+3"``) tried on its own.
        dice_before: Mean Dice before the step: of every foreground label/region for ``"foreground"``,
            else of that label/region; ``None`` when undefined (absent from every reference and prediction).
        dice_after: The same with the step applied.
        per_label_dice_before: Label/region name -> mean Dice before (foreground step only).
        per_label_dice_after: Label/region name -> mean Dice after (foreground step only).
        accepted: Whether the step is part of the plan.
    """

    target: str
    dice_before: float | None
    dice_after: float | None
    accepted: bool
    per_label_dice_before: dict[str, float | None] | None = None
    per_label_dice_after: dict[str, float | None] | None = None


@dataclass(frozen=True)
class PostprocessingPlan:
    """What to do to every predicted label map; saved as ``postprocessing.json``.

    Attributes:
        schema_version: Version of this file's layout.
        largest_component_foreground: Keep only the largest connected component of all foreground (every
            non-zero value) together; the rest becomes background.
        largest_component_labels: Label values of which only the largest component is kept (softmax models).
        largest_component_regions: Regions, each given by its label values, of which only the largest
            component is kept (region-based models: a region is the mask of those values in the label map).
        steps: How the decision was reached (documentation only; not needed to apply the plan).
        num_cases: Cross-validation cases the decision was made on (documentation only).
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int = 1
    largest_component_foreground: bool = False
    largest_component_labels: tuple[int, ...] = ()
    largest_component_regions: tuple[tuple[int, ...], ...] = ()
    steps: tuple[DecisionStep, ...] = ()
    num_cases: int = 0

    def __post_init__(self) -> None:
        if any(label <= 0 for label in self.largest_component_labels):
            raise ValueError("largest_component_labels must hold foreground label values (> 0)")
        if any(not region or 0 in region for region in self.largest_component_regions):
            raise ValueError("largest_component_regions must hold non-empty value lists without background (0)")

    @property
    def is_identity(self) -> bool:
        """Whether applying the plan changes nothing."""
        return not (self.largest_component_foreground or self.largest_component_labels
                    or self.largest_component_regions)


def keep_largest_component(segmentation: np.ndarray, values: Sequence[int], background: int = 0) -> np.ndarray:
    """Keep only the largest connected component of the voxels whose value is in ``values``.

    Connectivity is full (26 neighbours in 3D, 8 in 2D); spacing plays no role. On equal sizes the component
    met first in C order is kept, so the result is deterministic.

    Args:
        segmentation: Integer label map ``(Z, Y, X)`` or ``(Y, X)``; not modified.
        values: Label values forming the mask (one label, a region, or all foreground).
        background: Value given to the removed voxels.

    Returns:
        A new label map of the same shape and dtype.

    Raises:
        ValueError: ``segmentation`` is neither 2D nor 3D.
    """
    if segmentation.ndim not in (2, 3):
        raise ValueError(f"expected a label map (Z, Y, X) or (Y, X), got shape {segmentation.shape}")
    result = segmentation.copy()
    mask = np.isin(segmentation, list(values))
    if not mask.any():
        return result
    components, count = cc3d.connected_components(mask, connectivity=26 if mask.ndim == 3 else 8,
                                                  return_N=True)
    if count <= 1:
        return result
    sizes = np.bincount(components.ravel())
    sizes[0] = 0  # component 0 is everything outside the mask
    result[mask & (components != int(np.argmax(sizes)))] = background
    return result


def apply_postprocessing(segmentation: np.ndarray, plan: PostprocessingPlan) -> np.ndarray:
    """Apply a plan to one label map: the foreground step first, then each label, then each region.

    Args:
        segmentation: Integer label map ``(Z, Y, X)`` or ``(Y, X)`` in any axis order; not modified.
        plan: The decision, usually from :func:`load_postprocessing`.

    Returns:
        The postprocessed label map, same shape and dtype (the input itself when the plan is empty).
    """
    if plan.is_identity:
        return segmentation
    result = segmentation
    if plan.largest_component_foreground:
        foreground = [int(v) for v in np.unique(result) if v != 0]
        result = keep_largest_component(result, foreground)
    for label in plan.largest_component_labels:
        result = keep_largest_component(result, (label,))
    for region in plan.largest_component_regions:
        result = keep_largest_component(result, region)
    return result


def save_postprocessing(path: str | os.PathLike, plan: PostprocessingPlan) -> None:
    """Write ``plan`` as indented JSON, atomically."""
    save_dataclass(path, plan)


def load_postprocessing(path: str | os.PathLike) -> PostprocessingPlan:
    """Read and validate a ``postprocessing.json``.

    Raises:
        ConfigError: The file is missing, not JSON, has unknown/mistyped fields or a newer schema version;
            the message names the file and the field.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"is a folder; give the {POSTPROCESSING_FILE} file itself", path)
    return load_dataclass(PostprocessingPlan, path)
