from __future__ import annotations

import pytest
import torch

from autounet.detection.clustering import batched_nms, batched_weighted_box_clustering, nms, weighted_box_clustering


def _nms_case() -> tuple[torch.Tensor, torch.Tensor]:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0],
                          [0.0, 0.0, 10.0, 9.0]])
    return boxes, torch.tensor([0.9, 0.8, 0.7, 0.95])


def test_nms_hand_made_2d() -> None:
    boxes, scores = _nms_case()
    # D (0.95) suppresses A (IoU 0.9) and B (IoU 72/118); C lies apart.
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    # At 0.65 B survives D (IoU 0.61) but not A, which D suppressed already: B stays.
    assert nms(boxes, scores, 0.65).tolist() == [3, 1, 2]
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


def test_nms_3d_and_batched_by_class() -> None:
    boxes2d, scores = _nms_case()
    depth = torch.tensor([[0.0], [0.0], [0.0], [0.0]]), torch.tensor([[4.0], [4.0], [4.0], [4.0]])
    boxes = torch.cat([depth[0], boxes2d[:, :2], depth[1], boxes2d[:, 2:]], dim=1)
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    classes = torch.tensor([0, 1, 1, 0])
    # A is suppressed within class 0; B (class 1) is kept, as is C.
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == [3, 1, 2]


def _wbc_case() -> tuple[torch.Tensor, torch.Tensor]:
    # b0 and b1 overlap with IoU 80/120 = 2/3; b2 lies apart.
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 2.0, 10.0, 12.0], [50.0, 50.0, 54.0, 54.0]],
                         dtype=torch.float64)
    return boxes, torch.tensor([0.8, 0.4, 0.3], dtype=torch.float64)


def test_wbc_hand_computed() -> None:
    boxes, scores = _wbc_case()
    merged, merged_scores = weighted_box_clustering(boxes, scores, 0.5)
    # Weights: IoU with the top box x volume = 100 and 66.7; score = (80 + 26.7) / 166.7 = 0.64;
    # coordinates weighted by weight x score, 80 : 26.7 = 3 : 1, so x1 = 0.5 and x2 = 10.5.
    assert torch.allclose(merged_scores, torch.tensor([0.64, 0.3], dtype=torch.float64))
    assert torch.allclose(merged[0], torch.tensor([0.0, 0.5, 10.0, 10.5], dtype=torch.float64))
    assert torch.equal(merged[1], boxes[2])


def test_wbc_down_weights_missing_predictions() -> None:
    boxes, scores = _wbc_case()
    expected = torch.tensor([4, 4, 1])
    _, four = weighted_box_clustering(boxes, scores, 0.5, expected_predictions=expected)
    # Two of four expected predictions are missing: denominator 166.7 + 2 * 83.3 = 333.3.
    assert torch.allclose(four, torch.tensor([106.6667 / 333.3333, 0.3], dtype=torch.float64), atol=1e-5)
    # Both boxes from one source, two expected: the source votes once with its best box (weight 100,
    # score 0.8), the other expected prediction is missing: 80 / (100 + 100).
    same_box, same_source = weighted_box_clustering(boxes, scores, 0.5, sources=torch.tensor([0, 0, 1]),
                                                    expected_predictions=torch.tensor([2, 2, 1]))
    assert torch.allclose(same_source[0], torch.tensor(0.4, dtype=torch.float64))
    assert torch.equal(same_box[0], boxes[0])  # the absorbed box moves nothing
    # Box weights shift the coordinates towards the heavier box.
    merged, _ = weighted_box_clustering(boxes, scores, 0.5, box_weights=torch.tensor([1.0, 3.0, 1.0],
                                                                                     dtype=torch.float64))
    assert merged[0, 1].item() == pytest.approx(2 * 80 / 160)


def test_wbc_3d_and_batched() -> None:
    boxes = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0, 4.0], [0.0, 0.0, 0.0, 4.0, 4.0, 4.0],
                          [0.0, 0.0, 0.0, 4.0, 4.0, 4.0]])
    scores = torch.tensor([0.9, 0.5, 0.6])
    classes = torch.tensor([0, 0, 1])
    merged, merged_scores, merged_classes = batched_weighted_box_clustering(boxes, scores, classes, 0.5)
    assert merged_classes.tolist() == [0, 1]
    assert torch.allclose(merged_scores, torch.tensor([0.7, 0.6]))
    assert torch.allclose(merged, boxes[:2])
    empty = batched_weighted_box_clustering(boxes[:0], scores[:0], classes[:0], 0.5)
    assert [t.shape[0] for t in empty] == [0, 0, 0]
