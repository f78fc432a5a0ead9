"""The detection parts composed as a Retina U-Net will compose them, on the toy problem."""

from __future__ import annotations

import numpy as np
import torch

from autounet.dataset._synthetic_detection import DetectionToyOptions, toy_case
from autounet.detection import (
    AnchorGenerator,
    ATSSMatcher,
    BoxCoder,
    HardNegativeSampler,
    box_iou,
    box_sizes,
    fit_anchor_sizes,
    instances_to_boxes,
)

OPTIONS = DetectionToyOptions(shape=(32, 32, 32), edge=(6, 14), wall=2, max_objects=2)
STRIDES = [(2, 2, 2), (4, 4, 4), (8, 8, 8)]


def _toy_boxes(count: int) -> list[torch.Tensor]:
    boxes = []
    for index in range(count):
        _, instance_map, _ = toy_case(np.random.default_rng([5, index]), OPTIONS)
        boxes.append(instances_to_boxes(instance_map)[0])
    return boxes


def test_fitted_anchors_match_every_toy_box_and_decode_back() -> None:
    boxes = _toy_boxes(20)
    sizes = box_sizes(torch.cat(boxes)).numpy()
    base = fit_anchor_sizes(sizes, num_shapes=2, level_scales=(1, 2, 4))
    generator = AnchorGenerator.from_base_shapes(base, STRIDES)
    levels = generator([[32 // s for s in stride] for stride in STRIDES])
    anchors = torch.cat(levels)
    matcher, coder = ATSSMatcher(num_candidates=4), BoxCoder((1.0, 1.0, 1.0, 1.0, 1.0, 1.0))
    for image_boxes in boxes:
        matches = matcher(image_boxes, anchors, [len(level) for level in levels],
                          generator.num_anchors_per_location())
        assert set(matches[matches >= 0].tolist()) == set(range(len(image_boxes)))  # no box left unmatched
        positive = torch.nonzero(matches >= 0).flatten()
        targets = image_boxes[matches[positive]]
        # Matched anchors overlap their box well, and the coder recovers the box from them exactly.
        assert box_iou(anchors[positive], targets).diagonal().min() > 0.2
        decoded = coder.decode(coder.encode(targets, anchors[positive]), anchors[positive])
        assert torch.allclose(decoded, targets, atol=1e-4)


def test_sampler_on_toy_matches_is_reproducible() -> None:
    boxes = _toy_boxes(3)
    generator = AnchorGenerator([[(8.0, 8.0, 8.0), (12.0, 12.0, 12.0)]], [(4, 4, 4)])
    anchors = generator([(8, 8, 8)])[0]
    matches = [ATSSMatcher()(b, anchors, [len(anchors)], [2]) for b in boxes]
    scores = [torch.rand(len(anchors), generator=torch.Generator().manual_seed(i)) for i in range(3)]
    sampler = HardNegativeSampler(64, 0.25, min_negatives=4, pool_size=10)
    first = sampler(matches, scores, torch.Generator().manual_seed(1))
    second = sampler(matches, scores, torch.Generator().manual_seed(1))
    for a, b in zip(first[0] + first[1], second[0] + second[1], strict=True):
        assert torch.equal(a, b)
    for positive, negative, image_matches in zip(*first, matches, strict=True):
        assert not (positive & negative).any() and (image_matches[positive] >= 0).all()
        assert negative.sum() == max(4, 3 * int(positive.sum()))
