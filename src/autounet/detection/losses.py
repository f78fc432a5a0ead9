"""Losses of the detection heads: anchors matched to boxes, sampled, then classification and box regression.

:class:`DetectionLoss` composes injected parts, each with a default: a matcher (:class:`ATSSMatcher`) assigns
every anchor a box or marks it negative, a sampler (:class:`HardNegativeSampler`) picks the anchors entering
the classification loss (all positives up to a share, and the hardest negatives), :class:`ClassificationLoss`
(binary cross-entropy or sigmoid focal loss per class) scores them, and :class:`RegressionLoss` (GIoU of the
decoded boxes, Retina U-Net's choice, or smooth L1 of the deltas) scores the positives' boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor
from torch.nn import functional

from autounet.detection.boxes import generalized_box_iou_loss
from autounet.detection.coder import BoxCoder, detector_coder
from autounet.detection.matcher import ATSSMatcher, HardNegativeSampler
from autounet.detection.retina_unet import RetinaUNetOutput

__all__ = ["AnchorMatcher", "BoxTargets", "ClassificationLoss", "DetectionLoss", "DetectionLossTerms",
           "RegressionLoss"]


@dataclass(frozen=True)
class BoxTargets:
    """Ground truth of a batch.

    Attributes:
        boxes: Per image, ``(M_i, 2 * ndim)`` boxes (:mod:`autounet.detection.boxes`).
        classes: Per image, ``(M_i,)`` int64 classes counting from 0.
    """

    boxes: list[Tensor]
    classes: list[Tensor]


class AnchorMatcher(Protocol):
    """Assigns each anchor a box index, or a negative code (``-1`` negative, ``-2`` ignored)."""

    def __call__(self, boxes: Tensor, anchors: Tensor, num_anchors_per_level: Sequence[int],
                 num_anchors_per_location: Sequence[int]) -> Tensor:
        """``(N,)`` int64 matches of the ``(N, 2 * ndim)`` anchors to the ``(M, 2 * ndim)`` boxes."""
        ...


class ClassificationLoss:
    """Per-class sigmoid loss of the sampled anchors.

    Args:
        kind: ``"bce"`` (binary cross-entropy, the mean over sampled anchors and classes; nnDetection) or
            ``"focal"`` (sigmoid focal loss summed over sampled anchors and classes, divided by the number of
            positives; Lin et al., 2017).
        alpha: Focal loss: weight of the positive term (``1 - alpha`` for the negative one).
        gamma: Focal loss: focusing exponent.
    """

    def __init__(self, kind: Literal["bce", "focal"] = "bce", alpha: float = 0.25, gamma: float = 2.0) -> None:
        if kind not in ("bce", "focal"):
            raise ValueError(f"classification loss must be 'bce' or 'focal', got '{kind}'")
        self.kind = kind
        self.alpha = alpha
        self.gamma = gamma

    def __call__(self, logits: Tensor, targets: Tensor, num_positives: int) -> Tensor:
        """Loss of ``(K, C)`` logits against ``(K, C)`` 0/1 targets of the ``K`` sampled anchors."""
        if len(logits) == 0:
            return logits.sum()
        bce = functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        if self.kind == "bce":
            return bce.mean()
        probability = torch.sigmoid(logits)
        # 1 - p_t: how wrong the prediction is; well-classified anchors are scaled down by its power gamma.
        wrongness = probability * (1 - targets) + (1 - probability) * targets
        weight = self.alpha * targets + (1 - self.alpha) * (1 - targets)
        return (weight * wrongness ** self.gamma * bce).sum() / max(num_positives, 1)


class RegressionLoss:
    """Box-regression loss of the positive anchors, averaged over them.

    Args:
        kind: ``"giou"`` (``1 - GIoU`` of the decoded and the target boxes; Retina U-Net, nnDetection) or
            ``"smooth_l1"`` (smooth L1 between predicted and target deltas, summed over coordinates).
        beta: Smooth L1: where the loss turns from quadratic to linear.
    """

    def __init__(self, kind: Literal["giou", "smooth_l1"] = "giou", beta: float = 1.0 / 9) -> None:
        if kind not in ("giou", "smooth_l1"):
            raise ValueError(f"regression loss must be 'giou' or 'smooth_l1', got '{kind}'")
        self.kind = kind
        self.beta = beta

    def __call__(self, deltas: Tensor, anchors: Tensor, target_boxes: Tensor, coder: BoxCoder) -> Tensor:
        """Loss of ``(P, 2 * ndim)`` deltas of the positive anchors against their matched boxes."""
        if len(deltas) == 0:
            return deltas.sum()
        if self.kind == "giou":
            return generalized_box_iou_loss(coder.decode(deltas, anchors), target_boxes).mean()
        targets = coder.encode(target_boxes, anchors)
        return functional.smooth_l1_loss(deltas, targets, beta=self.beta, reduction="none").sum(dim=1).mean()


@dataclass(frozen=True)
class DetectionLossTerms:
    """The two detection losses of a batch and how many positive anchors they came from."""

    classification: Tensor
    regression: Tensor
    num_positives: int


class DetectionLoss:
    """Match, sample, and score a :class:`RetinaUNetOutput` against the boxes of its batch.

    Args:
        matcher: ``None``: :class:`ATSSMatcher` with 4 candidates per level and shape.
        sampler: ``None``: :class:`HardNegativeSampler` drawing up to 32 anchors per image, a third of them
            positive, negatives from the 20-fold pool of the highest-scoring ones (nnDetection's setting).
        coder: ``None``: :func:`~autounet.detection.coder.detector_coder` (the default of :class:`RetinaUNet` too).
        classification_loss: ``None``: binary cross-entropy.
        regression_loss: ``None``: GIoU.
    """

    def __init__(self, matcher: AnchorMatcher | None = None, sampler: HardNegativeSampler | None = None,
                 coder: BoxCoder | None = None, classification_loss: ClassificationLoss | None = None,
                 regression_loss: RegressionLoss | None = None) -> None:
        self.matcher = matcher or ATSSMatcher(num_candidates=4)
        self.sampler = sampler or HardNegativeSampler(batch_size_per_image=32, positive_fraction=0.33,
                                                      min_negatives=1, pool_size=20.0)
        self.coder = coder or detector_coder()
        self.classification_loss = classification_loss or ClassificationLoss()
        self.regression_loss = regression_loss or RegressionLoss()

    def __call__(self, output: RetinaUNetOutput, targets: BoxTargets, generator: torch.Generator | None = None
                 ) -> DetectionLossTerms:
        """The classification and regression losses of a batch.

        Args:
            output: The network's output.
            targets: Boxes and classes per image.
            generator: Random source of the sampler (a resumed run draws the same anchors).
        """
        if len(targets.boxes) != output.class_logits.shape[0]:
            raise ValueError(f"{len(targets.boxes)} box sets for a batch of {output.class_logits.shape[0]}")
        anchors = output.anchors
        matches = [self.matcher(boxes.to(anchors), anchors, output.num_anchors_per_level,
                                output.num_anchors_per_location) for boxes in targets.boxes]
        scores = [logits.detach().max(dim=1).values for logits in output.class_logits]
        positives, negatives = self.sampler(matches, scores, generator)
        logits, labels, deltas, anchor_rows, target_boxes = [], [], [], [], []
        for image, (match, positive, negative) in enumerate(zip(matches, positives, negatives, strict=True)):
            sampled = positive | negative
            image_labels = torch.zeros_like(output.class_logits[image])
            matched = torch.nonzero(match >= 0).flatten()
            image_labels[matched, targets.classes[image].to(anchors.device)[match[matched]]] = 1.0
            logits.append(output.class_logits[image][sampled])
            labels.append(image_labels[sampled])
            # Every positive anchor regresses its box, not only the sampled ones (as nnDetection does).
            deltas.append(output.box_deltas[image][matched])
            anchor_rows.append(anchors[matched])
            target_boxes.append(targets.boxes[image].to(anchors)[match[matched]])
        num_positives = sum(len(rows) for rows in anchor_rows)
        classification = self.classification_loss(torch.cat(logits), torch.cat(labels),
                                                   sum(int(p.sum()) for p in positives))
        regression = self.regression_loss(torch.cat(deltas), torch.cat(anchor_rows), torch.cat(target_boxes),
                                          self.coder)
        return DetectionLossTerms(classification, regression, num_positives)
