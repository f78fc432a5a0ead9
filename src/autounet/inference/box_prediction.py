"""Boxes of a whole image: detectors run over sliding windows, mirrored passes and folds, fused into one set
and mapped back to the input's voxel grid and world coordinates.

Windows are placed as for segmentation (:func:`~autounet.inference.sliding_window.iter_window_batches`). For
every window batch, every fold and every subset of the mirror axes, the detector sees the (flipped) patches;
its boxes are flipped back, shifted into the image and handed to a
:class:`~autounet.detection.detections.BoxMerger`, which fuses all of them by weighted box clustering per
class. Only boxes are kept per window, never dense outputs, so memory does not grow with the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from autounet.detection.box_files import OriginalBox, boxes_in_world
from autounet.detection.boxes import flip_boxes
from autounet.detection.detections import BoxFusionSettings, BoxMerger, Detections, Detector
from autounet.inference.sliding_window import SlidingWindowSettings, iter_window_batches, pad_to_patch
from autounet.inference.tta import mirror_dim_combinations
from autounet.preprocessing.properties import CaseProperties

__all__ = ["boxes_to_original", "predict_boxes_sliding_window"]


def predict_boxes_sliding_window(detectors: Sequence[Detector], image: torch.Tensor,
                                 settings: SlidingWindowSettings, fusion: BoxFusionSettings,
                                 device: torch.device | None = None) -> Detections:
    """Detections of a preprocessed image from every window, mirrored pass and detector (fold).

    Args:
        detectors: One per fold; each maps ``(B, C, *patch)`` patches on ``device`` to one
            :class:`Detections` per patch in patch coordinates.
        image: Preprocessed image ``(C, *spatial)`` with as many spatial axes as the patch.
        settings: Window placement, mirroring and batching (``use_gaussian`` is not used: boxes are weighted
            by their position in the window instead).
        fusion: How the boxes are fused and filtered.
        device: Where the detectors run; default ``image.device``.

    Returns:
        The fused detections in the image's voxel coordinates, on the CPU.

    Raises:
        ValueError: No detector, or a patch with fewer axes than the image (boxes need whole volumes).
    """
    if not detectors:
        raise ValueError("no detector to predict with")
    patch = tuple(int(p) for p in settings.patch_size)
    if image.ndim - 1 != len(patch):
        raise ValueError(f"image of shape {tuple(image.shape)} does not fit the {len(patch)}D patch {patch}: "
                         "boxes are predicted on patches with the image's axes")
    device = image.device if device is None else torch.device(device)
    with torch.inference_mode():
        padded, crop = pad_to_patch(image.to(device), patch)
        merger = BoxMerger(padded.shape[1:], crop, patch, fusion)
        flips = mirror_dim_combinations(settings.mirror_axes)
        for batch in iter_window_batches(tuple(padded.shape[1:]), settings):
            patches = torch.stack([padded[(slice(None), *window)] for window in batch])
            starts = [tuple(int(w.start) for w in window) for window in batch]  # type: ignore[union-attr]
            for detector in detectors:
                for dims in flips:
                    found = detector(torch.flip(patches, dims) if dims else patches)
                    spatial_axes = [d - 2 for d in dims]
                    for start, detections in zip(starts, found, strict=True):
                        if dims and len(detections):
                            detections = Detections(flip_boxes(detections.boxes, patch, spatial_axes),
                                                    detections.scores, detections.classes)
                        merger.add(start, detections)
        return merger.finalize()


def boxes_to_original(detections: Detections, properties: CaseProperties,
                      axis_order: Sequence[int]) -> list[OriginalBox]:
    """Map detections of the preprocessed image (plan axis order, cropped, resampled) to the input image.

    Edges scale with the resampling (``shape_after_crop / shape_after_resampling`` per axis), move by the crop
    box's start, and return to the input's axis order; world coordinates come from its geometry.
    """
    ndim = len(properties.shape_after_resampling)
    boxes = detections.boxes.detach().cpu().double().numpy()
    scale = np.asarray(properties.shape_after_crop, dtype=np.float64) / np.asarray(
        properties.shape_after_resampling, dtype=np.float64)
    start = np.asarray([low for low, _ in properties.bbox_used_for_cropping], dtype=np.float64)
    lower = boxes[:, :ndim] * scale + start
    upper = boxes[:, ndim:] * scale + start
    inverse = np.argsort(np.asarray(axis_order))
    return boxes_in_world(np.concatenate([lower[:, inverse], upper[:, inverse]], axis=1),
                          detections.scores.detach().cpu().numpy(), detections.classes.detach().cpu().numpy(),
                          properties.original_geometry)
