"""Overlap metrics between a reference and a predicted label map."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LabelOverlap", "label_overlaps"]


@dataclass(frozen=True)
class LabelOverlap:
    """Voxel counts and overlap scores of one label (or region) in one case.

    Dice and IoU are NaN when the label is absent from both reference and prediction: a perfect but
    uninformative case, left out of means (as nnU-Net).
    """

    tp: int
    fp: int
    fn: int

    @property
    def dice(self) -> float:
        """``2 TP / (2 TP + FP + FN)``."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else float("nan")

    @property
    def iou(self) -> float:
        """``TP / (TP + FP + FN)``."""
        denominator = self.tp + self.fp + self.fn
        return self.tp / denominator if denominator else float("nan")

    @property
    def precision(self) -> float:
        """``TP / (TP + FP)``."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        """``TP / (TP + FN)``."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")


def label_overlaps(reference: np.ndarray, prediction: np.ndarray, labels: Sequence[int | Sequence[int]],
                   ignore_label: int | None = None) -> list[LabelOverlap]:
    """Counts per label; a label given as a sequence is a region (the union of its values).

    Args:
        reference: Integer label map.
        prediction: Integer label map of the same shape.
        labels: Labels or regions to score.
        ignore_label: Voxels with this reference value are excluded.

    Raises:
        ValueError: Shapes differ.
    """
    if reference.shape != prediction.shape:
        raise ValueError(f"reference shape {reference.shape} differs from prediction shape {prediction.shape}")
    valid = reference != ignore_label if ignore_label is not None else None
    results = []
    for label in labels:
        values = list(label) if isinstance(label, Sequence) else [label]
        ref_mask, pred_mask = np.isin(reference, values), np.isin(prediction, values)
        if valid is not None:
            ref_mask &= valid
            pred_mask &= valid
        tp = int(np.count_nonzero(ref_mask & pred_mask))
        results.append(LabelOverlap(tp=tp, fp=int(np.count_nonzero(pred_mask)) - tp,
                                    fn=int(np.count_nonzero(ref_mask)) - tp))
    return results
