"""Turning predicted logits into probabilities or a label map (softmax classes or sigmoid regions)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["logits_to_probabilities", "logits_to_segmentation"]


def logits_to_probabilities(logits: torch.Tensor, region_based: bool) -> torch.Tensor:
    """Apply the output nonlinearity: softmax over classes, or an independent sigmoid per region.

    Args:
        logits: ``(K, *spatial)`` logits, channel axis first, any floating dtype and device.
        region_based: The K channels are overlapping regions (sigmoid) rather than exclusive classes (softmax).

    Returns:
        Float32 probabilities ``(K, *spatial)`` on the device of ``logits``.
    """
    logits = logits.float()
    return torch.sigmoid(logits) if region_based else torch.softmax(logits, dim=0)


def logits_to_segmentation(logits: torch.Tensor, region_class_order: Sequence[int] | None = None) -> torch.Tensor:
    """Label map from logits, as nnU-Net.

    Softmax outputs (``region_class_order is None``): the label is the channel with the largest logit (the
    first one on ties), which equals the argmax of the probabilities. Region outputs: channel ``i`` is on
    where its sigmoid exceeds 0.5, i.e. where its logit is > 0; regions are painted in channel order with
    label ``region_class_order[i]``, so later (nested, smaller) regions overwrite earlier ones.

    Args:
        logits: ``(K, *spatial)`` logits, channel axis first, any floating dtype and device.
        region_class_order: For region-based outputs, the label painted for each of the K channels.

    Returns:
        Label map ``(*spatial)`` on the device of ``logits``; ``torch.uint8`` when every label fits (at most
        256 classes, or region labels <= 255), else ``torch.int32``.

    Raises:
        ValueError: ``logits`` has no spatial axis, or ``region_class_order`` does not have K entries.
    """
    if logits.ndim < 2:
        raise ValueError(f"logits must be (K, *spatial), got shape {tuple(logits.shape)}")
    num_channels = logits.shape[0]
    if region_class_order is not None:
        if len(region_class_order) != num_channels:
            raise ValueError(f"region_class_order has {len(region_class_order)} entries for {num_channels} "
                             "region channels")
        dtype = torch.uint8 if max(region_class_order, default=0) <= 255 else torch.int32
        segmentation = torch.zeros(logits.shape[1:], dtype=dtype, device=logits.device)
        for channel, label in enumerate(region_class_order):
            segmentation.masked_fill_(logits[channel] > 0, label)
        return segmentation
    # A running maximum over channels is ~10x faster on CPU than torch.argmax along the (strided) first axis.
    segmentation = torch.zeros(logits.shape[1:], dtype=torch.uint8 if num_channels <= 256 else torch.int32,
                               device=logits.device)
    best = logits[0].clone()
    for channel in range(1, num_channels):
        # Strict ">" keeps the first channel on ties, like argmax.
        segmentation.masked_fill_(logits[channel] > best, channel)
        torch.maximum(best, logits[channel], out=best)
    return segmentation
