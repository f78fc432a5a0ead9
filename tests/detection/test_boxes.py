from __future__ import annotations

import numpy as np
import pytest
import torch

from autounet.detection.boxes import (
    box_iou,
    box_volume,
    clip_boxes_to_image,
    flip_boxes,
    generalized_box_iou,
    generalized_box_iou_loss,
    instances_to_boxes,
    remove_small_boxes,
)


def _brute_force_boxes(instance_map: np.ndarray) -> dict[int, list[int]]:
    boxes = {}
    for instance in np.unique(instance_map):
        if instance == 0:
            continue
        where = np.nonzero(instance_map == instance)
        boxes[int(instance)] = [int(w.min()) for w in where] + [int(w.max()) + 1 for w in where]
    return boxes


def _random_instances(shape: tuple[int, ...], count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    instance_map = np.zeros(shape, dtype=np.int16)
    for instance in range(1, count + 1):
        low = [rng.integers(0, s - 3) for s in shape]
        high = [lo + rng.integers(1, 4) for lo in low]
        instance_map[tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))] = instance
        # A stray voxel makes the instance non-convex, so the box is not the drawn block.
        instance_map[tuple(int(rng.integers(0, s)) for s in shape)] = instance
    return instance_map


def test_iou_2d_hand_computed() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 4.0, 4.0], [0.0, 0.0, 2.0, 2.0]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 7, 0.0, 1.0]]))
    # Enclosing box of a and b[0] is 3x3 = 9, union 7: GIoU = 1/7 - 2/9.
    assert torch.allclose(generalized_box_iou(a, b)[0, 0], torch.tensor(1 / 7 - 2 / 9))
    assert torch.allclose(generalized_box_iou(a, b)[0, 1], torch.tensor(0 - (16 - 8) / 16))


def test_iou_3d_hand_computed_and_symmetric() -> None:
    a = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 1.0, 3.0, 3.0, 3.0], [0.0, 0.0, 0.0, 2.0, 2.0, 1.0]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 15, 0.5]]))
    assert torch.allclose(box_iou(b, a), box_iou(a, b).T)
    assert torch.allclose(generalized_box_iou(a, b)[0, 0], torch.tensor(1 / 15 - (27 - 15) / 27))
    assert box_volume(a).item() == 8.0


def test_giou_loss_matches_pairwise_diagonal() -> None:
    rng = torch.Generator().manual_seed(0)
    low = torch.rand(5, 3, generator=rng) * 10
    predicted = torch.cat([low, low + 1 + torch.rand(5, 3, generator=rng) * 5], dim=1)
    low = torch.rand(5, 3, generator=rng) * 10
    target = torch.cat([low, low + 1 + torch.rand(5, 3, generator=rng) * 5], dim=1)
    expected = 1 - torch.diagonal(generalized_box_iou(predicted, target))
    assert torch.allclose(generalized_box_iou_loss(predicted, target), expected, atol=1e-6)
    assert torch.allclose(generalized_box_iou_loss(target, target), torch.zeros(5), atol=1e-6)


def test_mixed_dimensions_are_rejected() -> None:
    with pytest.raises(ValueError, match="3D boxes with 2D"):
        box_iou(torch.zeros(1, 6), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="4 \\(2D\\) or 6 \\(3D\\)"):
        box_volume(torch.zeros(1, 5))


def test_clip_and_remove_small() -> None:
    boxes = torch.tensor([[-2.0, 1.0, 5.0, 12.0], [3.0, 3.0, 3.5, 9.0]])
    assert torch.equal(clip_boxes_to_image(boxes, (4, 10)), torch.tensor([[0.0, 1.0, 4.0, 10.0],
                                                                           [3.0, 3.0, 3.5, 9.0]]))
    assert remove_small_boxes(boxes, 1.0).tolist() == [0]


@pytest.mark.parametrize("shape", [(20, 17), (9, 12, 10)])
def test_instances_to_boxes_is_exact(shape: tuple[int, ...]) -> None:
    instance_map = _random_instances(shape, 5, seed=len(shape))
    boxes, ids = instances_to_boxes(instance_map)
    expected = _brute_force_boxes(instance_map)
    assert ids.tolist() == sorted(expected)
    assert {i: b for i, b in zip(ids.tolist(), boxes.int().tolist(), strict=True)} == expected


def test_instances_to_boxes_skips_missing_ids_and_takes_tensors() -> None:
    instance_map = torch.zeros(6, 6, dtype=torch.int64)
    instance_map[1:3, 2:5] = 3
    boxes, ids = instances_to_boxes(instance_map)
    assert ids.tolist() == [3] and boxes.tolist() == [[1.0, 2.0, 3.0, 5.0]]
    empty_boxes, empty_ids = instances_to_boxes(np.zeros((4, 4, 4), dtype=np.uint8))
    assert empty_boxes.shape == (0, 6) and empty_ids.shape == (0,)


@pytest.mark.parametrize("shape", [(16, 13), (8, 11, 9)])
def test_boxes_follow_flips(shape: tuple[int, ...]) -> None:
    instance_map = _random_instances(shape, 4, seed=7)
    boxes, ids = instances_to_boxes(instance_map)
    for axes in ([0], [len(shape) - 1], list(range(len(shape)))):
        flipped_boxes, flipped_ids = instances_to_boxes(np.flip(instance_map, axis=axes))
        assert torch.equal(flipped_ids, ids)
        assert torch.equal(flipped_boxes, flip_boxes(boxes, shape, axes))
        assert torch.equal(flip_boxes(flip_boxes(boxes, shape, axes), shape, axes), boxes)


def test_boxes_follow_crops() -> None:
    instance_map = _random_instances((10, 12, 14), 6, seed=3)
    start = np.array([2, 3, 1])
    cropped_boxes, cropped_ids = instances_to_boxes(instance_map[2:9, 3:10, 1:8])
    expected = _brute_force_boxes(instance_map[2:9, 3:10, 1:8])
    assert cropped_ids.tolist() == sorted(expected)
    assert {i: b for i, b in zip(cropped_ids.tolist(), cropped_boxes.int().tolist(), strict=True)} == expected
    # A block-shaped instance inside the crop keeps its box, shifted by the crop start.
    block = np.zeros((10, 12, 14), dtype=np.uint8)
    block[3:6, 4:8, 2:5] = 1
    shifted, _ = instances_to_boxes(block[2:9, 3:10, 1:8])
    offset = torch.tensor(np.concatenate([start, start]), dtype=torch.float32)
    assert torch.equal(shifted[0], instances_to_boxes(block)[0][0] - offset)


def test_boxes_follow_rotations_by_90_degrees() -> None:
    instance_map = _random_instances((7, 10, 13), 5, seed=11)
    boxes, ids = instances_to_boxes(instance_map)
    width = instance_map.shape[2]
    # np.rot90 over axes (1, 2) maps voxel (z, y, x) to (z, W - 1 - x, y).
    rotated_boxes, rotated_ids = instances_to_boxes(np.rot90(instance_map, k=1, axes=(1, 2)))
    z1, y1, x1, z2, y2, x2 = boxes.unbind(dim=1)
    expected = torch.stack([z1, width - x2, y1, z2, width - x1, y2], dim=1)
    assert torch.equal(rotated_ids, ids) and torch.equal(rotated_boxes, expected)
