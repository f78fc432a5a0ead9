"""Turning predicted logits into probabilities or a label map (softmax classes or sigmoid regions)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["SegmentationBuilder", "logits_to_probabilities", "logits_to_segmentation"]


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
    builder = SegmentationBuilder(logits.shape[0], region_class_order, region_threshold=0.0)
    for channel in range(logits.shape[0]):
        # The builder keeps the first softmax channel as its running maximum and updates it in place.
        builder.add(logits[channel].clone() if channel == 0 and region_class_order is None else logits[channel])
    return builder.result()


class SegmentationBuilder:
    """Builds a label map from score channels given one at a time, so that only one channel (plus the running
    maximum) is ever held: the rule of :func:`logits_to_segmentation` for scores that are too large to stack.

    Softmax scores: running argmax, the first channel winning ties. Region scores: channel ``i`` paints
    ``region_class_order[i]`` where its score exceeds ``region_threshold`` (0 for logits, 0.5 for
    probabilities).

    Args:
        num_channels: K, the number of channels that :meth:`add` will receive.
        region_class_order: For region-based outputs, the label painted for each channel; else ``None``.
        region_threshold: Score above which a region channel is on.

    Raises:
        ValueError: ``region_class_order`` does not have K entries.
    """

    def __init__(self, num_channels: int, region_class_order: Sequence[int] | None = None,
                 region_threshold: float = 0.0) -> None:
        if region_class_order is not None and len(region_class_order) != num_channels:
            raise ValueError(f"region_class_order has {len(region_class_order)} entries for {num_channels} "
                             "region channels")
        self.num_channels = num_channels
        self.region_class_order = tuple(region_class_order) if region_class_order is not None else None
        self.region_threshold = region_threshold
        if self.region_class_order is not None:
            self.dtype = torch.uint8 if max(self.region_class_order, default=0) <= 255 else torch.int32
        else:
            self.dtype = torch.uint8 if num_channels <= 256 else torch.int32
        self._segmentation: torch.Tensor | None = None
        self._best: torch.Tensor | None = None
        self._added = 0

    def add(self, scores: torch.Tensor) -> None:
        """Add the next channel ``(*spatial)``. A softmax model's first channel becomes the running maximum
        and is modified in place later: pass a tensor the caller no longer needs (or a copy)."""
        if self._added >= self.num_channels:
            raise ValueError(f"all {self.num_channels} channels were already added")
        channel = self._added
        self._added += 1
        if self._segmentation is None:
            self._segmentation = torch.zeros(scores.shape, dtype=self.dtype, device=scores.device)
        if self.region_class_order is not None:
            self._segmentation.masked_fill_(scores > self.region_threshold, self.region_class_order[channel])
            return
        if self._best is None:
            self._best = scores
            return
        # A running maximum over channels is ~10x faster on CPU than torch.argmax along the (strided) first
        # axis; strict ">" keeps the first channel on ties, like argmax.
        self._segmentation.masked_fill_(scores > self._best, channel)
        torch.maximum(self._best, scores, out=self._best)

    def result(self) -> torch.Tensor:
        """The label map ``(*spatial)`` (``uint8``, or ``int32`` for labels beyond 255).

        Raises:
            ValueError: Not every channel was added.
        """
        if self._added != self.num_channels or self._segmentation is None:
            raise ValueError(f"{self._added} of {self.num_channels} channels were added")
        self._best = None
        return self._segmentation
