"""Online pseudo-Dice: hard Dice per class accumulated over a validation epoch, and its moving average.

As in nnU-Net v2, validation patches are scored during training by counting true positives, false
positives and false negatives of the hard prediction (argmax, or sigmoid > 0.5 for regions) over all
validation batches of an epoch; the Dice per class is ``2 TP / (2 TP + FP + FN)`` of those sums (a "global"
Dice, not a mean over patches). The exponential moving average of its mean over classes selects the best
checkpoint.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from autounet.dataset.labels import LabelScheme
from autounet.errors import CheckpointError, ConfigError
from autounet.io.serialization import from_dict, to_dict

__all__ = ["PseudoDiceTracker", "tp_fp_fn"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def tp_fp_fn(logits: Tensor, seg: Tensor, scheme: LabelScheme) -> tuple[Tensor, Tensor, Tensor]:
    """Hard true positives, false positives and false negatives per foreground class or region.

    Args:
        logits: Network output ``(B, C, *spatial)`` at the resolution of ``seg`` (with deep supervision, the
            full-resolution output).
        seg: Integer label map ``(B, 1, *spatial)``.
        scheme: Label handling; ignore-label voxels count nowhere.

    Returns:
        ``(tp, fp, fn)``, each an ``int64`` tensor of shape ``(scheme.num_metric_channels,)`` summed over the
        batch and space: foreground classes 1..C-1 (softmax) or every region (region-based).
    """
    if logits.shape[0] != seg.shape[0] or logits.shape[2:] != seg.shape[2:]:
        raise ValueError(f"logits {tuple(logits.shape)} and seg {tuple(seg.shape)} differ in batch or spatial size")
    valid = scheme.loss_mask(seg)
    if scheme.region_based:
        # sigmoid(x) > 0.5 exactly when x > 0; skipping the sigmoid changes nothing.
        predicted = logits > 0
        reference = scheme.region_masks(seg)
        if valid is not None:
            keep = valid.bool()
            predicted, reference = predicted & keep, reference & keep
        axes = (0, *range(2, logits.ndim))
        tp = (predicted & reference).sum(axes)
        return tp, predicted.sum(axes) - tp, reference.sum(axes) - tp
    num_classes = logits.shape[1]
    predicted = logits.argmax(1)
    reference = seg[:, 0].long()
    # One bincount of (reference, prediction) pairs gives the whole confusion matrix in a single pass,
    # however many classes; ignore voxels go to an extra bin that is dropped.
    pairs = reference * num_classes + predicted
    if valid is not None:
        pairs = torch.where(valid[:, 0].bool(), pairs, num_classes * num_classes)
    counts = torch.bincount(pairs.reshape(-1), minlength=num_classes * num_classes + 1)
    confusion = counts[: num_classes * num_classes].reshape(num_classes, num_classes)
    tp = confusion.diagonal()
    fp = confusion.sum(0) - tp
    fn = confusion.sum(1) - tp
    return tp[1:], fp[1:], fn[1:]


@dataclass(frozen=True)
class _TrackerState:
    """The JSON-able state of a :class:`PseudoDiceTracker` (stored in checkpoints)."""

    SCHEMA_VERSION = 1

    schema_version: int
    tp: list[float]
    fp: list[float]
    fn: list[float]
    ema: float | None


@dataclass
class PseudoDiceTracker:
    """Accumulates TP/FP/FN over a validation epoch and tracks the moving average of the mean pseudo-Dice.

    Typical use per epoch: :meth:`update` after every validation batch, then ``mean_dice()`` and
    ``update_ema(...)``, then :meth:`reset` before the next epoch.

    Attributes:
        tp: Summed true positives per foreground class or region (empty before the first update).
        fp: Summed false positives.
        fn: Summed false negatives.
        ema: Moving average of the mean pseudo-Dice, ``None`` before the first value.
    """

    tp: list[float] = field(default_factory=list)
    fp: list[float] = field(default_factory=list)
    fn: list[float] = field(default_factory=list)
    ema: float | None = None

    def update(self, tp: Tensor | list[float], fp: Tensor | list[float], fn: Tensor | list[float]) -> None:
        """Add the counts of one validation batch (as returned by :func:`tp_fp_fn`).

        Raises:
            ValueError: The number of classes differs from earlier updates.
        """
        new = [_as_floats(x) for x in (tp, fp, fn)]
        if len({len(x) for x in new}) != 1:
            raise ValueError("tp, fp and fn must have the same length")
        if not self.tp:
            self.tp, self.fp, self.fn = ([0.0] * len(new[0]) for _ in range(3))
        if len(new[0]) != len(self.tp):
            raise ValueError(f"got counts for {len(new[0])} classes, earlier batches had {len(self.tp)}")
        for total, values in zip((self.tp, self.fp, self.fn), new, strict=True):
            for index, value in enumerate(values):
                total[index] += value

    def reset(self) -> None:
        """Forget the accumulated counts (start of a validation epoch); the moving average is kept."""
        self.tp, self.fp, self.fn = [], [], []

    def sum_over_ranks(self, sum_over_ranks: Callable[[list[float]], list[float]]) -> None:
        """Replace the counts by their element-wise sums over the data-parallel ranks, so the pseudo-Dice comes
        from the TP/FP/FN of every rank's batches, not a mean of per-rank Dice values (no-op before counts)."""
        if self.tp:
            classes = len(self.tp)
            counts = sum_over_ranks([*self.tp, *self.fp, *self.fn])
            self.tp, self.fp, self.fn = (counts[i * classes:(i + 1) * classes] for i in range(3))

    def dice_per_class(self) -> list[float]:
        """``2 TP / (2 TP + FP + FN)`` per class; NaN for a class absent from reference and prediction."""
        return [2 * t / (2 * t + p + n) if (2 * t + p + n) > 0 else math.nan
                for t, p, n in zip(self.tp, self.fp, self.fn, strict=True)]

    def mean_dice(self) -> float:
        """Mean of :meth:`dice_per_class` over classes that are not NaN; NaN when there are none."""
        values = [d for d in self.dice_per_class() if not math.isnan(d)]
        return sum(values) / len(values) if values else math.nan

    def update_ema(self, value: float, alpha: float = 0.9) -> float | None:
        """Fold a new epoch's mean pseudo-Dice into the moving average.

        ``ema = alpha * ema + (1 - alpha) * value``; the first value is taken as is (nnU-Net v2). A NaN or
        infinite value (no class seen in a whole validation epoch) is skipped with a warning, since it would
        poison every later average.

        Returns:
            The moving average after the update (``None`` if no finite value was seen yet).
        """
        if not math.isfinite(value):
            logger.warning("pseudo-Dice %s is not finite (no foreground in this validation epoch); the moving "
                           "average is left unchanged", value)
            return self.ema
        self.ema = float(value) if self.ema is None else alpha * self.ema + (1 - alpha) * float(value)
        return self.ema

    def state_dict(self) -> dict[str, Any]:
        """Plain-JSON state (floats and lists) for an exact resume."""
        state = _TrackerState(schema_version=_TrackerState.SCHEMA_VERSION, tp=list(self.tp), fp=list(self.fp),
                              fn=list(self.fn), ema=self.ema)
        return to_dict(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by :meth:`state_dict`.

        Raises:
            CheckpointError: The state is malformed or from a newer autounet.
        """
        try:
            loaded = from_dict(_TrackerState, state)
        except ConfigError as exc:
            raise CheckpointError(f"pseudo-Dice tracker state: {exc.problem}") from None
        if not len(loaded.tp) == len(loaded.fp) == len(loaded.fn):
            raise CheckpointError("pseudo-Dice tracker state: tp, fp and fn differ in length")
        self.tp, self.fp, self.fn, self.ema = list(loaded.tp), list(loaded.fp), list(loaded.fn), loaded.ema


def _as_floats(values: Tensor | list[float]) -> list[float]:
    if isinstance(values, Tensor):
        return [float(v) for v in values.detach().cpu().reshape(-1).tolist()]
    return [float(v) for v in values]
