"""Boxes and classes of a batch from its semantic and instance maps (the detector's training targets)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from autounet.data import AugmentationConfig, BatchAugmenter
from autounet.detection.boxes import flip_boxes, instances_to_boxes
from autounet.detection.targets import boxes_from_maps, instance_classes


def _maps_3d() -> tuple[np.ndarray, np.ndarray]:
    semantic = np.zeros((2, 8, 10, 12), dtype=np.int16)
    instances = np.zeros_like(semantic)
    instances[0, 1:4, 2:5, 3:9] = 1  # class 0 (semantic 1)
    semantic[0, 1:4, 2:5, 3:9] = 1
    instances[0, 5:8, 0:2, 0:1] = 2  # class 1 (semantic 2)
    semantic[0, 5:8, 0:2, 0:1] = 2
    semantic[1] = -1  # second sample: all outside the image (padding)
    return semantic, instances


def test_boxes_and_classes_3d() -> None:
    semantic, instances = _maps_3d()
    targets = boxes_from_maps(torch.from_numpy(semantic), torch.from_numpy(instances))
    (boxes, classes), (empty_boxes, empty_classes) = targets
    assert boxes.tolist() == [[1, 2, 3, 4, 5, 9], [5, 0, 0, 8, 2, 1]]
    assert classes.tolist() == [0, 1] and classes.dtype == torch.int64 and boxes.dtype == torch.float32
    assert empty_boxes.shape == (0, 6) and empty_classes.shape == (0,)


def test_boxes_and_classes_2d_with_padding() -> None:
    semantic = np.full((1, 6, 7), -1, dtype=np.int16)
    instances = np.full((1, 6, 7), -1, dtype=np.int16)
    semantic[0, 1:] = 0
    instances[0, 1:] = 0
    instances[0, 2:4, 1:6] = 3  # ids need not start at 1 after a crop
    semantic[0, 2:4, 1:6] = 2
    [(boxes, classes)] = boxes_from_maps(semantic, instances)
    assert boxes.tolist() == [[2, 1, 4, 6]] and classes.tolist() == [1]


def test_class_is_the_majority_of_positive_semantic_voxels() -> None:
    instances = np.zeros((4, 4), dtype=np.int16)
    semantic = np.zeros((4, 4), dtype=np.int16)
    instances[:2] = 1
    semantic[0, :] = 3
    semantic[1, :3] = 2  # three voxels of 2, four of 3, one background
    instances[3, 0] = 2  # an instance without semantic label
    instances[3, 2:] = 4
    semantic[3, 2:] = (1, 2)  # a tie: the smaller class wins
    assert instance_classes(semantic, instances, np.array([1, 2, 4])).tolist() == [2, -1, 0]
    [(boxes, classes)] = boxes_from_maps(semantic[None], instances[None])
    assert classes.tolist() == [2, 0] and boxes.tolist() == [[0, 0, 2, 4], [3, 2, 4, 4]]


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="one shape"):
        boxes_from_maps(np.zeros((1, 4, 4)), np.zeros((1, 4, 5)))
    with pytest.raises(ValueError, match="one shape"):
        boxes_from_maps(np.zeros((4, 4)), np.zeros((4, 4)))


def _augmenter(ndim: int, **changes: object) -> AugmentationConfig:
    patch = (12, 12, 12) if ndim == 3 else (16, 16)
    config = AugmentationConfig(patch_size=patch, sampling_patch_size=patch, rotation_ranges=((-math.pi, math.pi),)
                                * (3 if ndim == 3 else 1), mirror_axes=tuple(range(ndim)),
                                seg_linear_interpolation=False)
    zero = {f.name: 0.0 for f in dataclasses.fields(config) if f.name.startswith("p_")}
    return dataclasses.replace(config, **{**zero, **changes})


def _stacked_batch(ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (12, 12, 12) if ndim == 3 else (16, 16)
    semantic = np.zeros((2, *shape), dtype=np.int16)
    instances = np.zeros_like(semantic)
    for sample in range(2):
        for instance, (start, edge, class_id) in enumerate([(1, 4, 0), (6, 5, 1)], start=1):
            block = (sample, *[slice(start + sample, start + sample + edge)] * ndim)
            instances[block], semantic[block] = instance, class_id + 1
    seg = torch.from_numpy(np.stack([semantic, instances], axis=1))
    image = torch.from_numpy(seg[:, :1].numpy().astype(np.float32))
    return image, seg


@pytest.mark.parametrize("ndim", [2, 3])
def test_boxes_follow_mirroring_exactly(ndim: int) -> None:
    image, seg = _stacked_batch(ndim)
    before = boxes_from_maps(seg[:, 0], seg[:, 1])
    config = _augmenter(ndim, p_mirror_per_axis=1.0)
    _, out = BatchAugmenter(config, torch.device("cpu"))(image.clone(), seg.clone(), torch.Generator().manual_seed(0))
    assert out.shape == seg.shape and out.dtype == torch.int16
    after = boxes_from_maps(out[:, 0], out[:, 1])
    for (boxes, classes), (flipped, flipped_classes) in zip(before, after, strict=True):
        assert torch.equal(flip_boxes(boxes, seg.shape[2:], tuple(range(ndim))), flipped)
        assert torch.equal(classes, flipped_classes)


@pytest.mark.parametrize("ndim", [2, 3])
def test_both_label_channels_move_together_under_rotation(ndim: int) -> None:
    image, seg = _stacked_batch(ndim)
    config = _augmenter(ndim, p_rotation=1.0, p_scaling=1.0)
    _, out = BatchAugmenter(config, torch.device("cpu"))(image.clone(), seg.clone(), torch.Generator().manual_seed(3))
    semantic, instances = out[:, 0], out[:, 1]
    assert torch.equal(semantic > 0, instances > 0)  # nearest resampling of both maps: one warp
    for (boxes, classes), sample_semantic, sample_instances in zip(boxes_from_maps(semantic, instances), semantic,
                                                                   instances, strict=True):
        expected_boxes, ids = instances_to_boxes(sample_instances.clamp(min=0))
        assert len(ids) >= 1 and torch.equal(boxes, expected_boxes)
        assert torch.equal(classes, ids - 1)  # instance k was built with class k - 1 (semantic k)
        for instance in ids.tolist():
            assert set(sample_semantic[sample_instances == instance].tolist()) == {instance}
