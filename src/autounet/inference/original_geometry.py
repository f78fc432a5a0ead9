"""From network output in preprocessed space back to the original image: resample to the cropped shape,
turn into labels, un-crop, undo the axis permutation.

As nnU-Net v2, the logits are resampled and the nonlinearity comes after (argmax of the resampled logits;
regions on where a resampled logit is > 0), so a model gives the same labels under both tools.

Memory: the original grid can be far larger than the preprocessed one (a 512x512x800 CT holds 210 M voxels,
840 MB per float32 channel). Logits are therefore resampled one class at a time and folded into a running
argmax (:class:`~autounet.inference.logits.SegmentationBuilder`), so without ``return_probabilities`` the
original-size float data alive at once is one resampled channel plus the running maximum, whatever the
number of classes. Every channel is resampled by the same call as all classes together would be, so the
result does not depend on this. Probabilities, when asked for, are the softmax of the resampled logits,
taken in slabs in place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from autounet.inference.logits import SegmentationBuilder, logits_to_probabilities
from autounet.io.jsonio import atomic_write
from autounet.planning.plans import ConfigurationPlan, Plans
from autounet.preprocessing.properties import CaseProperties
from autounet.preprocessing.resample import resample_to_shape

__all__ = ["DEFAULT_CHUNK_VOXELS", "probabilities_in_slabs", "save_probabilities", "to_original_geometry"]

DEFAULT_CHUNK_VOXELS = 2**24
"""Voxels per slab of the softmax (times K float32 values of scratch memory)."""


def to_original_geometry(logits: torch.Tensor, properties: CaseProperties, plans: Plans,
                      configuration: ConfigurationPlan, region_class_order: Sequence[int] | None = None,
                      return_probabilities: bool = False,
                      chunk_voxels: int = DEFAULT_CHUNK_VOXELS) -> tuple[np.ndarray, np.ndarray | None]:
    """Segmentation (and probabilities) of a case in its original voxel grid.

    Args:
        logits: ``(K, *spatial)`` network output at the preprocessed spacing, plan axis order.
        properties: The case's preprocessing record (crop box, shapes, original geometry).
        plans: Supplies the axis order to undo.
        configuration: Supplies the resampling settings.
        region_class_order: For region-based models, the label painted for each region.
        return_probabilities: Also return probabilities in the original grid.
        chunk_voxels: Voxels per slab of the softmax of returned probabilities (memory knob; the result does
            not depend on it).

    Returns:
        ``seg`` integer ``(*original spatial)`` in raw axis order, and float32 probabilities
        ``(K, *original spatial)`` (background outside the crop box) or ``None``. The probabilities are a
        transposed view (not C-contiguous) when the plan permutes axes, to avoid a copy of the largest array.
    """
    region_based = region_class_order is not None
    num_channels = logits.shape[0]
    original_spacing = _transposed(properties.original_geometry.spacing, plans.axis_order)
    # Logits are smooth: linear interpolation in-plane, nearest across thick slices (nnU-Net).
    plan = replace(configuration.resampling, image_order=1)
    box = tuple(slice(start, stop) for start, stop in properties.bbox_used_for_cropping)
    full = None
    if return_probabilities:
        full = np.zeros((num_channels, *properties.shape_before_crop), dtype=np.float32)
        if not region_based:
            full[0] = 1.0  # outside the crop box is background with certainty
    builder = SegmentationBuilder(num_channels, region_class_order, region_threshold=0.0)
    for channel in range(num_channels):
        source = logits[channel:channel + 1].detach().to("cpu", torch.float32).numpy()
        resampled = resample_to_shape(source, properties.shape_after_crop, properties.spacing_after_resampling,
                                      original_spacing, plan)[0]
        if full is not None:
            full[(channel, *box)] = resampled  # before the builder may reuse `resampled` as its maximum
        if np.may_share_memory(resampled, source):
            resampled = resampled.copy()  # unchanged shape: a view of the caller's logits, which we must not modify
        builder.add(torch.from_numpy(resampled))
        del resampled
    cropped_seg = builder.result().numpy()
    seg = np.zeros(properties.shape_before_crop, dtype=cropped_seg.dtype)
    seg[box] = cropped_seg
    del cropped_seg
    inverse = tuple(int(i) for i in np.argsort(plans.axis_order))
    seg = np.ascontiguousarray(seg.transpose(inverse))
    if full is None:
        return seg, None
    # Inside the crop box `full` holds resampled logits: turn them into probabilities where they are.
    probabilities_in_slabs(torch.from_numpy(full[(slice(None), *box)]), region_based, overwrite=True,
                           chunk_voxels=chunk_voxels)
    return seg, full.transpose((0, *(i + 1 for i in inverse)))


def probabilities_in_slabs(logits: torch.Tensor, region_based: bool, overwrite: bool = False,
                           chunk_voxels: int = DEFAULT_CHUNK_VOXELS) -> torch.Tensor:
    """Softmax (or sigmoid) of ``(K, *spatial)`` logits, computed in slabs along the first spatial axis.

    Args:
        logits: ``(K, *spatial)`` logits, any floating dtype and device.
        region_based: Sigmoid per channel instead of a softmax over channels.
        overwrite: Write the result into ``logits`` (only when they are float32 on the CPU; else a new tensor).
        chunk_voxels: Spatial voxels per slab; the scratch memory is about ``K * chunk_voxels`` float32.

    Returns:
        Float32 probabilities ``(K, *spatial)`` on the CPU (``logits`` itself when overwritten).
    """
    if logits.ndim < 2:
        raise ValueError(f"logits must be (K, *spatial), got shape {tuple(logits.shape)}")
    in_place = overwrite and logits.dtype == torch.float32 and logits.device.type == "cpu"
    out = logits if in_place else torch.empty(logits.shape, dtype=torch.float32)
    rows = max(1, chunk_voxels // max(1, math.prod(logits.shape[2:])))
    for start in range(0, logits.shape[1], rows):
        # Each voxel's softmax involves only its own K values, so slabs give the same numbers as one call.
        out[:, start:start + rows] = logits_to_probabilities(logits[:, start:start + rows], region_based).cpu()
    return out


def _transposed(values: Sequence[float], axis_order: Sequence[int]) -> tuple[float, ...]:
    return tuple(float(values[a]) for a in axis_order)


def save_probabilities(path: Path, probabilities: np.ndarray) -> None:
    """Write ``probabilities`` ``(K, *spatial)`` float32 as ``<path>`` (``.npz``, key ``probabilities``),
    atomically. The one format that ensembling and postprocessing decisions read back. A non-contiguous view
    is written in C order without a full copy."""
    with atomic_write(path, "wb") as handle:
        np.savez_compressed(handle, probabilities=probabilities)
