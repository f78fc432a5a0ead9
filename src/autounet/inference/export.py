"""From network output in preprocessed space back to the original image: resample to the cropped shape,
turn into labels, un-crop, undo the axis permutation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from autounet.inference.logits import logits_to_probabilities, logits_to_segmentation
from autounet.io.jsonio import atomic_write
from autounet.planning.plans import ConfigurationPlan, Plans
from autounet.preprocessing.properties import CaseProperties
from autounet.preprocessing.resample import resample_to_shape

__all__ = ["export_prediction", "save_probabilities"]


def export_prediction(logits: torch.Tensor, properties: CaseProperties, plans: Plans,
                      configuration: ConfigurationPlan, region_class_order: Sequence[int] | None = None,
                      return_probabilities: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Segmentation (and probabilities) of a case in its original voxel grid.

    Args:
        logits: ``(K, *spatial)`` network output at the preprocessed spacing, plan axis order.
        properties: The case's preprocessing record (crop box, shapes, original geometry).
        plans: Supplies the axis order to undo.
        configuration: Supplies the resampling settings.
        region_class_order: For region-based models, the label painted for each region.
        return_probabilities: Also return probabilities in the original grid.

    Returns:
        ``seg`` integer ``(*original spatial)`` in raw axis order, and float32 probabilities
        ``(K, *original spatial)`` (background outside the crop box) or ``None``.
    """
    region_based = region_class_order is not None
    probabilities = logits_to_probabilities(logits.float(), region_based).cpu().numpy()
    original_spacing = _transposed(properties.original_geometry.spacing, plans.axis_order)
    # Probabilities are smooth: linear interpolation in-plane, nearest across thick slices (nnU-Net).
    plan = replace(configuration.resampling, image_order=1)
    probabilities = resample_to_shape(probabilities, properties.shape_after_crop, properties.spacing_after_resampling,
                                      original_spacing, plan)
    # Argmax of probabilities equals argmax of logits; a sigmoid region is on where p > 0.5, i.e. p - 0.5 > 0.
    scores = torch.from_numpy(np.ascontiguousarray(probabilities))
    cropped_seg = logits_to_segmentation(scores - 0.5 if region_based else scores, region_class_order).numpy()
    box = tuple(slice(start, stop) for start, stop in properties.bbox_used_for_cropping)
    seg = np.zeros(properties.shape_before_crop, dtype=cropped_seg.dtype)
    seg[box] = cropped_seg
    inverse = tuple(int(i) for i in np.argsort(plans.axis_order))
    seg = np.ascontiguousarray(seg.transpose(inverse))
    if not return_probabilities:
        return seg, None
    full = np.zeros((probabilities.shape[0], *properties.shape_before_crop), dtype=np.float32)
    if not region_based:
        full[0] = 1.0  # outside the crop box is background with certainty
    full[(slice(None), *box)] = probabilities
    return seg, np.ascontiguousarray(full.transpose((0, *(i + 1 for i in inverse))))


def _transposed(values: Sequence[float], axis_order: Sequence[int]) -> tuple[float, ...]:
    return tuple(float(values[a]) for a in axis_order)


def save_probabilities(path: Path, probabilities: np.ndarray) -> None:
    """Write ``probabilities`` ``(K, *spatial)`` float32 as ``<path>`` (``.npz``, key ``probabilities``),
    atomically. The one format that ensembling and postprocessing decisions read back."""
    with atomic_write(path, "wb") as handle:
        np.savez_compressed(handle, probabilities=probabilities)
