"""Reducing overlapping predicted boxes: non-maximum suppression and weighted box clustering, 2D and 3D.

NMS keeps the best box of every group of overlapping boxes (per window at inference). Weighted box
clustering (WBC; Jaeger et al., Retina U-Net, 2018, also nnDetection's ensembling) instead merges each
group into one box: coordinates are averaged with the boxes' weighted scores as weights, and the score is
lowered when fewer predictions than expected contributed (a box seen by one of four flips counts less than
one seen by all four). Boxes follow :mod:`autounet.detection.boxes`.
"""

from __future__ import annotations

import torch

from autounet.detection.boxes import box_iou, box_volume

__all__ = ["batched_nms", "batched_weighted_box_clustering", "nms", "weighted_box_clustering"]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression.

    Args:
        boxes: ``(N, 2 * ndim)`` boxes.
        scores: ``(N,)`` scores.
        iou_threshold: A box is dropped when its IoU with a kept, higher-scoring box exceeds this.

    Returns:
        ``(K,)`` int64 indices of the kept boxes, by decreasing score (ties: lower index first).
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    if len(order) == 0:
        return order
    overlaps = box_iou(boxes[order], boxes[order])
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    keep = []
    for position in range(len(order)):
        if suppressed[position]:
            continue
        keep.append(position)
        suppressed |= overlaps[position] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.int64, device=boxes.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_threshold: float
                ) -> torch.Tensor:
    """NMS within each class: boxes of different classes never suppress each other.

    Returns:
        ``(K,)`` int64 indices of the kept boxes, by decreasing score over all classes.
    """
    keep = [torch.nonzero(classes == c).flatten()[nms(boxes[classes == c], scores[classes == c], iou_threshold)]
            for c in torch.unique(classes)]
    if not keep:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    kept = torch.cat(keep)
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


def weighted_box_clustering(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
                            box_weights: torch.Tensor | None = None, sources: torch.Tensor | None = None,
                            expected_predictions: torch.Tensor | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge overlapping boxes into score-weighted clusters.

    Repeatedly, the highest-scoring remaining box and every remaining box overlapping it by more than
    ``iou_threshold`` form a cluster. With ``sources``, each source votes once: only its highest-scoring
    member counts, the others are absorbed (one window pass that boxes an object confidently also
    leaves weaker, larger boxes around it; counted, they would enlarge the cluster box and pull its score
    down, the more the more passes are fused). Each counted member's weight is ``IoU with the top box *
    volume * box_weight``; the cluster box is their average weighted by ``weight * score``; the cluster score
    is ``sum(weight * score) / (sum(weight) + missing * mean(weight))``, where ``missing`` is how many of the
    expected predictions (mean of ``expected_predictions`` over the counted members) came from no member
    source. Without ``expected_predictions`` nothing counts as missing and the score is the weighted mean.

    Args:
        boxes: ``(N, 2 * ndim)`` boxes of one class, from any number of windows, flips and folds.
        scores: ``(N,)`` scores in [0, 1].
        iou_threshold: Boxes overlapping the cluster's top box by more than this join the cluster.
        box_weights: ``(N,)`` weight of each box, e.g. lower near window borders; ones by default.
        sources: ``(N,)`` id of the prediction each box came from (window x flip x fold); by default
            every box is its own source.
        expected_predictions: ``(N,)`` how many predictions could have seen each box (windows covering
            it x flips x folds).

    Returns:
        ``(boxes, scores)`` of the clusters, ``(K, 2 * ndim)`` and ``(K,)``, by decreasing score.
    """
    count = len(boxes)
    weights_in = box_weights if box_weights is not None else torch.ones_like(scores)
    source_ids = sources if sources is not None else torch.arange(count, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    overlaps = box_iou(boxes, boxes)
    volumes = box_volume(boxes)
    remaining = torch.ones(count, dtype=torch.bool, device=boxes.device)
    merged_boxes, merged_scores = [], []
    for top in order.tolist():
        if not remaining[top]:
            continue
        members = remaining & (overlaps[top] > iou_threshold)
        members[top] = True  # an empty top box (IoU 0 with itself) still forms its own cluster
        remaining &= ~members
        if sources is not None:
            members = _best_per_source(members, scores, source_ids)
        weight = overlaps[top, members].clamp(min=1e-6) * volumes[members].clamp(min=1e-6) * weights_in[members]
        weighted_scores = weight * scores[members]
        missing = 0.0
        if expected_predictions is not None:
            expected = expected_predictions[members].float().mean()
            missing = (expected - len(torch.unique(source_ids[members]))).clamp(min=0)
        merged_scores.append(weighted_scores.sum() / (weight.sum() + missing * weight.mean()))
        coordinate_weights = weighted_scores / weighted_scores.sum().clamp(min=torch.finfo(scores.dtype).tiny)
        merged_boxes.append((coordinate_weights[:, None] * boxes[members]).sum(dim=0))
    if not merged_boxes:
        return boxes.new_zeros((0, boxes.shape[1])), scores.new_zeros((0,))
    result_boxes, result_scores = torch.stack(merged_boxes), torch.stack(merged_scores).to(scores.dtype)
    final = torch.sort(result_scores, descending=True, stable=True).indices
    return result_boxes[final], result_scores[final]


def _best_per_source(members: torch.Tensor, scores: torch.Tensor, source_ids: torch.Tensor) -> torch.Tensor:
    """The members that count: the highest-scoring one of each source (ties: the lower index)."""
    index = torch.nonzero(members).flatten()
    by_score = index[torch.sort(scores[index], descending=True, stable=True).indices]
    # A stable sort by source keeps the score order within each source, so its first entry is its best.
    by_source = by_score[torch.sort(source_ids[by_score], stable=True).indices]
    ids = source_ids[by_source]
    first = torch.ones_like(ids, dtype=torch.bool)
    first[1:] = ids[1:] != ids[:-1]
    counted = torch.zeros_like(members)
    counted[by_source[first]] = True
    return counted


def batched_weighted_box_clustering(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
                                    iou_threshold: float, box_weights: torch.Tensor | None = None,
                                    sources: torch.Tensor | None = None,
                                    expected_predictions: torch.Tensor | None = None
                                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`weighted_box_clustering` within each class.

    Returns:
        ``(boxes, scores, classes)`` of the clusters of all classes, by decreasing score.
    """
    out_boxes, out_scores, out_classes = [], [], []
    for c in torch.unique(classes):
        member = classes == c
        cluster_boxes, cluster_scores = weighted_box_clustering(
            boxes[member], scores[member], iou_threshold, _subset(box_weights, member), _subset(sources, member),
            _subset(expected_predictions, member))
        out_boxes.append(cluster_boxes)
        out_scores.append(cluster_scores)
        out_classes.append(torch.full_like(cluster_scores, int(c), dtype=classes.dtype))
    if not out_boxes:
        return boxes.new_zeros((0, boxes.shape[1])), scores.new_zeros((0,)), classes.new_zeros((0,))
    all_scores = torch.cat(out_scores)
    order = torch.sort(all_scores, descending=True, stable=True).indices
    return torch.cat(out_boxes)[order], all_scores[order], torch.cat(out_classes)[order]


def _subset(values: torch.Tensor | None, member: torch.Tensor) -> torch.Tensor | None:
    return values[member] if values is not None else None
