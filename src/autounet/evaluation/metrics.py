"""Overlap metrics between a reference and a predicted label map."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from autounet.evaluation.surface import surface_metrics

__all__ = ["METRIC_NAMES", "Label", "LabelMetrics", "LabelOverlap", "case_metrics", "label_mask", "label_overlaps"]

Label = int | tuple[int, ...]
"""A label value, or a region: a tuple of values scored as their union."""

METRIC_NAMES: tuple[str, ...] = ("dice", "iou", "precision", "recall", "hd95_mm", "nsd")
"""The scores of :class:`LabelMetrics`, in the order summaries and tables list them."""


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
    return [_overlap(ref_mask, pred_mask)
            for ref_mask, pred_mask in _label_masks(reference, prediction, labels, ignore_label)]


def label_mask(label_map: np.ndarray, label: int | Sequence[int]) -> np.ndarray:
    """Boolean mask of a label, or of a region (a sequence of values, taken as their union).

    Args:
        label_map: Integer label map of any shape.
        label: A value, or a sequence of values.

    Returns:
        ``bool`` array of the shape of ``label_map``.
    """
    values = list(label) if isinstance(label, Sequence) else [label]
    return np.isin(label_map, values)


def _masks(reference: np.ndarray, prediction: np.ndarray, label: int | Sequence[int],
           valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    ref_mask, pred_mask = label_mask(reference, label), label_mask(prediction, label)
    if valid is not None:
        ref_mask &= valid
        pred_mask &= valid
    return ref_mask, pred_mask


def _overlap(ref_mask: np.ndarray, pred_mask: np.ndarray) -> LabelOverlap:
    tp = int(np.count_nonzero(ref_mask & pred_mask))
    return LabelOverlap(tp=tp, fp=int(np.count_nonzero(pred_mask)) - tp, fn=int(np.count_nonzero(ref_mask)) - tp)


@dataclass(frozen=True)
class LabelMetrics:
    """Every score of one label (or region) in one case.

    Attributes:
        overlap: Voxel counts, from which Dice, IoU, precision and recall follow.
        hd95_mm: 95th-percentile symmetric surface distance in mm; NaN when the label is absent from both
            masks, the image diagonal when absent from exactly one (see :mod:`autounet.evaluation.surface`).
        nsd: Normalised surface Dice at the tolerance of the evaluation; NaN when absent from both masks,
            0 when absent from exactly one.
    """

    overlap: LabelOverlap
    hd95_mm: float
    nsd: float

    @classmethod
    def absent(cls) -> LabelMetrics:
        """The scores of a label found in neither mask: no voxels, every score undefined (NaN)."""
        return cls(overlap=LabelOverlap(tp=0, fp=0, fn=0), hd95_mm=math.nan, nsd=math.nan)

    @property
    def hd95_is_penalty(self) -> bool:
        """Whether ``hd95_mm`` is the empty-mask penalty rather than a measured distance."""
        counts = self.overlap
        return (counts.tp + counts.fn == 0) != (counts.tp + counts.fp == 0)

    def as_dict(self) -> dict[str, float | int]:
        """The scores named as in :data:`METRIC_NAMES`, then the voxel counts ``tp``, ``fp``, ``fn``,
        ``n_reference`` and ``n_prediction``."""
        counts = self.overlap
        return {"dice": counts.dice, "iou": counts.iou, "precision": counts.precision, "recall": counts.recall,
                "hd95_mm": self.hd95_mm, "nsd": self.nsd, "tp": counts.tp, "fp": counts.fp, "fn": counts.fn,
                "n_reference": counts.tp + counts.fn, "n_prediction": counts.tp + counts.fp}


def case_metrics(reference: np.ndarray, prediction: np.ndarray, labels: Sequence[int | Sequence[int]],
                 spacing_mm: Sequence[float], ignore_label: int | None = None,
                 tolerance_mm: float = 1.0) -> list[LabelMetrics]:
    """Overlap and surface scores per label or region of one case.

    Args:
        reference: Integer label map ``(Z, Y, X)`` or ``(Y, X)``.
        prediction: Integer label map of the same shape.
        labels: Labels or regions (sequences of values, scored as their union) to score.
        spacing_mm: Voxel size per axis in mm, same axis order.
        ignore_label: Voxels with this reference value are left out of both masks.
        tolerance_mm: Tolerance of the normalised surface Dice, in mm.

    Returns:
        One :class:`LabelMetrics` per entry of ``labels``, in order.

    Raises:
        ValueError: Shapes or spacing do not fit, or the tolerance is negative.
    """
    results = []
    for ref_mask, pred_mask in _label_masks(reference, prediction, labels, ignore_label):
        hd, nsd = surface_metrics(ref_mask, pred_mask, spacing_mm, tolerance_mm)
        results.append(LabelMetrics(overlap=_overlap(ref_mask, pred_mask), hd95_mm=hd, nsd=nsd))
    return results


def _label_masks(reference: np.ndarray, prediction: np.ndarray, labels: Sequence[int | Sequence[int]],
                 ignore_label: int | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Reference and prediction masks of each label, ignore-label voxels removed from both."""
    if reference.shape != prediction.shape:
        raise ValueError(f"reference shape {reference.shape} differs from prediction shape {prediction.shape}")
    valid = reference != ignore_label if ignore_label is not None else None
    for label in labels:
        yield _masks(reference, prediction, label, valid)
