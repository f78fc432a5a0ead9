"""Anchor-to-box matching (IoU thresholds, ATSS) and the sampling of anchors that enter the losses.

Both matchers return, per anchor, the index of its ground-truth box or a negative code:
:data:`BELOW_LOW_THRESHOLD` (``-1``, a negative anchor) or :data:`BETWEEN_THRESHOLDS` (``-2``, ignored),
as torchvision's ``Matcher`` does. Boxes follow :mod:`autounet.detection.boxes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from autounet.detection.boxes import box_centers, box_iou

__all__ = ["BELOW_LOW_THRESHOLD", "BETWEEN_THRESHOLDS", "ATSSMatcher", "HardNegativeSampler", "Matcher"]

BELOW_LOW_THRESHOLD = -1
BETWEEN_THRESHOLDS = -2


class Matcher:
    """Match by IoU thresholds (Faster R-CNN / RetinaNet).

    Args:
        high_threshold: Anchors with best IoU at or above this are matched to that box.
        low_threshold: Anchors with best IoU below this are negatives; those in between are ignored.
        allow_low_quality_matches: Also match every box to the anchors of its highest IoU, even below
            ``high_threshold``, so that no box is left without an anchor.
    """

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False) -> None:
        if low_threshold > high_threshold:
            raise ValueError(f"low threshold {low_threshold} above high threshold {high_threshold}")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: torch.Tensor) -> torch.Tensor:
        """Per-anchor matches from an ``(M boxes, N anchors)`` IoU matrix: ``(N,)`` int64."""
        num_boxes, num_anchors = match_quality_matrix.shape
        if num_boxes == 0:
            return torch.full((num_anchors,), BELOW_LOW_THRESHOLD, dtype=torch.int64,
                              device=match_quality_matrix.device)
        best, matches = match_quality_matrix.max(dim=0)
        result = matches.clone()
        result[best < self.high_threshold] = BETWEEN_THRESHOLDS
        result[best < self.low_threshold] = BELOW_LOW_THRESHOLD
        if self.allow_low_quality_matches:
            best_per_box = match_quality_matrix.max(dim=1, keepdim=True).values
            # Every anchor that ties for a box's best IoU keeps its own best box, as torchvision does.
            rescued = torch.nonzero((match_quality_matrix == best_per_box) & (best_per_box > 0))[:, 1]
            result[rescued] = matches[rescued]
        return result


class ATSSMatcher:
    """Adaptive training sample selection (Zhang et al., CVPR 2020), in 2D and 3D.

    For each box, the ``num_candidates * shapes per position`` anchors whose centres lie closest to the
    box centre are taken on every level; their IoUs with the box give the threshold ``mean + std``
    (unbiased standard deviation; 0 for a single candidate). Candidates at or above it whose centre lies
    strictly inside the box are positives; an anchor positive for several boxes takes the one of highest
    IoU. All other anchors are negatives (``BELOW_LOW_THRESHOLD``).

    Args:
        num_candidates: Closest anchors per level and per anchor shape.
        center_in_box: Require the anchor centre inside the box.
    """

    def __init__(self, num_candidates: int = 4, center_in_box: bool = True) -> None:
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be at least 1, got {num_candidates}")
        self.num_candidates = num_candidates
        self.center_in_box = center_in_box

    def __call__(self, boxes: torch.Tensor, anchors: torch.Tensor, num_anchors_per_level: Sequence[int],
                 num_anchors_per_location: Sequence[int]) -> torch.Tensor:
        """Per-anchor matches.

        Args:
            boxes: ``(M, 2 * ndim)`` ground-truth boxes of one image.
            anchors: ``(N, 2 * ndim)`` anchors of all levels, concatenated level by level.
            num_anchors_per_level: Number of anchors of each level (summing to ``N``).
            num_anchors_per_location: Number of anchor shapes per position of each level.

        Returns:
            ``(N,)`` int64: the matched box index, or ``BELOW_LOW_THRESHOLD``.
        """
        if sum(num_anchors_per_level) != len(anchors):
            raise ValueError(f"levels hold {sum(num_anchors_per_level)} anchors, got {len(anchors)}")
        matches = torch.full((len(anchors),), BELOW_LOW_THRESHOLD, dtype=torch.int64, device=anchors.device)
        if len(boxes) == 0 or len(anchors) == 0:
            return matches
        iou = box_iou(boxes, anchors)  # (M, N)
        distances = torch.cdist(box_centers(boxes).float(), box_centers(anchors).float())  # (M, N)
        candidates = self._candidates(distances, num_anchors_per_level, num_anchors_per_location)  # (M, K)
        candidate_iou = iou.gather(1, candidates)
        spread = candidate_iou.std(dim=1, keepdim=True) if candidates.shape[1] > 1 else 0 * candidate_iou[:, :1]
        threshold = candidate_iou.mean(dim=1, keepdim=True) + spread
        positive = candidate_iou >= threshold
        if self.center_in_box:
            positive &= self._centre_inside(boxes, anchors, candidates)
        # Scatter the positives into an (M, N) IoU matrix that is -1 elsewhere; an anchor takes its best box.
        accepted = torch.full_like(iou, -1.0)
        accepted.scatter_(1, candidates, torch.where(positive, candidate_iou, torch.full_like(candidate_iou, -1.0)))
        best, best_box = accepted.max(dim=0)
        matches[best >= 0] = best_box[best >= 0]
        return matches

    def _candidates(self, distances: torch.Tensor, per_level: Sequence[int], per_location: Sequence[int]
                    ) -> torch.Tensor:
        chosen, start = [], 0
        for count, shapes in zip(per_level, per_location, strict=True):
            k = min(self.num_candidates * shapes, count)
            if k > 0:
                level = distances[:, start:start + count]
                chosen.append(level.topk(k, dim=1, largest=False).indices + start)
            start += count
        return torch.cat(chosen, dim=1)

    @staticmethod
    def _centre_inside(boxes: torch.Tensor, anchors: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        ndim = boxes.shape[1] // 2
        centres = box_centers(anchors)[candidates]  # (M, K, ndim)
        inside_low = centres > boxes[:, None, :ndim]
        inside_high = centres < boxes[:, None, ndim:]
        return (inside_low & inside_high).all(dim=-1)


class HardNegativeSampler:
    """Choose the anchors of each image that enter the classification loss.

    Positives (match ``>= 0``) are drawn at random up to ``batch_size_per_image * positive_fraction``.
    Negatives (``BELOW_LOW_THRESHOLD``) number ``max(min_negatives, positives * (1 - f) / f)``; with
    ``pool_size`` they are drawn at random from the ``pool_size`` times as many highest-scoring negatives
    (hard negative mining, as in nnDetection and Retina U-Net), without it at random from all negatives
    (torchvision's balanced sampler). Ignored anchors (``BETWEEN_THRESHOLDS``) are never drawn.

    Args:
        batch_size_per_image: Upper bound of positives, as ``batch_size_per_image * positive_fraction``.
        positive_fraction: Wanted share of positives among the drawn anchors, in (0, 1].
        min_negatives: Negatives drawn even when an image has no positive.
        pool_size: Size of the hard-negative pool relative to the number drawn; ``None`` for random.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float, min_negatives: int = 1,
                 pool_size: float | None = 20.0) -> None:
        if not 0 < positive_fraction <= 1:
            raise ValueError(f"positive_fraction must lie in (0, 1], got {positive_fraction}")
        if pool_size is not None and pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.min_negatives = min_negatives
        self.pool_size = pool_size

    def __call__(self, matches: Sequence[torch.Tensor], scores: Sequence[torch.Tensor] | None = None,
                 generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Boolean positive and negative masks per image.

        Args:
            matches: Per image, ``(N_i,)`` matches from a matcher.
            scores: Per image, ``(N_i,)`` foreground scores (e.g. the highest class probability); needed
                when ``pool_size`` is set.
            generator: Random source, for reproducible sampling.

        Returns:
            ``(positive_masks, negative_masks)``, each a list of ``(N_i,)`` bool tensors.
        """
        if self.pool_size is not None and scores is None:
            raise ValueError("hard negative mining needs the anchors' scores")
        positives, negatives = [], []
        for index, image_matches in enumerate(matches):
            positive_index = torch.nonzero(image_matches >= 0).flatten()
            negative_index = torch.nonzero(image_matches == BELOW_LOW_THRESHOLD).flatten()
            num_positive = min(len(positive_index), int(self.batch_size_per_image * self.positive_fraction))
            positive_index = positive_index[_random_subset(len(positive_index), num_positive, generator)]
            wanted = num_positive * (1 - self.positive_fraction) / self.positive_fraction
            num_negative = min(len(negative_index), max(self.min_negatives, math.ceil(wanted - 1e-9)))
            if self.pool_size is not None and scores is not None and num_negative > 0:
                pool = min(len(negative_index), math.ceil(num_negative * self.pool_size))
                hardest = scores[index][negative_index].detach().topk(pool).indices
                negative_index = negative_index[hardest]
            negative_index = negative_index[_random_subset(len(negative_index), num_negative, generator)]
            positives.append(_mask(len(image_matches), positive_index, image_matches.device))
            negatives.append(_mask(len(image_matches), negative_index, image_matches.device))
        return positives, negatives


def _random_subset(population: int, count: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randperm(population, generator=generator)[:count]


def _mask(length: int, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    mask = torch.zeros(length, dtype=torch.bool, device=device)
    mask[index] = True
    return mask
