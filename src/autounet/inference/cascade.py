"""The link between the two stages of a cascade: the low-resolution stage's prediction, moved to the
full-resolution stage's preprocessed grid, becomes extra one-hot input channels of the full-resolution network.

Training (the low-resolution stage's cross-validation predictions) and inference use these same two functions,
so the cascade network sees the same kind of input in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from autounet.inference.logits import logits_to_segmentation
from autounet.planning.plans import ConfigurationPlan
from autounet.preprocessing.resample import resample_to_shape

__all__ = ["previous_stage_one_hot", "segmentation_for_next_stage"]


def segmentation_for_next_stage(logits: torch.Tensor, target_shape: Sequence[int], configuration: ConfigurationPlan,
                                region_class_order: Sequence[int] | None = None) -> np.ndarray:
    """Label map of a lower stage, in the next stage's preprocessed grid.

    Both stages crop the same box and use the same axis order; only the spacing differs, so moving between
    them is a resampling to ``target_shape``. Logits are resampled (linear in-plane; across thick slices as the
    lower stage's probability resampling says, deciding anisotropy from the lower stage's spacing, as nnU-Net
    does), then turned into labels.

    Args:
        logits: ``(K, *spatial)`` logits of the lower stage in its preprocessed grid.
        target_shape: Spatial shape of the next stage's preprocessed data of the same case.
        configuration: The lower stage's configuration (spacing and resampling settings).
        region_class_order: For region-based models, the label painted for each output channel.

    Returns:
        Label map ``target_shape``, ``uint8`` (``int32`` beyond 255 labels).
    """
    spacing = tuple(configuration.spacing)
    plan = replace(configuration.resampling, image_order=1)
    resampled = resample_to_shape(logits.float().cpu().numpy(), target_shape, spacing, spacing, plan)
    return logits_to_segmentation(torch.from_numpy(resampled), region_class_order).numpy()


def previous_stage_one_hot(seg: torch.Tensor, foreground_labels: Sequence[int], channel_axis: int = 0) -> torch.Tensor:
    """One channel per foreground label (1 inside, 0 outside): the cascade network's extra inputs.

    Args:
        seg: Label map ``(*spatial)``, or a batch ``(B, *spatial)`` with ``channel_axis=1``; any integer dtype.
            Negative values (patch padding) count as background.
        foreground_labels: Labels to encode, in channel order (background is all zeros, as in nnU-Net).
        channel_axis: Where the new channel axis goes.

    Returns:
        Float32 ``(L, *spatial)`` (or ``(B, L, *spatial)``) on ``seg``'s device.
    """
    shape = list(seg.shape)
    shape.insert(channel_axis, len(foreground_labels))
    out = torch.zeros(shape, dtype=torch.float32, device=seg.device)
    for index, label in enumerate(foreground_labels):
        out.select(channel_axis, index).masked_fill_(seg == label, 1.0)
    return out
