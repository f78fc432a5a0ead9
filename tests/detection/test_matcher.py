from __future__ import annotations

import torch

from autounet.detection.anchors import AnchorGenerator
from autounet.detection.matcher import (
    BELOW_LOW_THRESHOLD,
    BETWEEN_THRESHOLDS,
    ATSSMatcher,
    HardNegativeSampler,
    Matcher,
)


def test_iou_matcher_thresholds_and_low_quality() -> None:
    quality = torch.tensor([[0.9, 0.45, 0.1, 0.0], [0.2, 0.3, 0.35, 0.0]])
    assert Matcher(0.5, 0.4)(quality).tolist() == [0, BETWEEN_THRESHOLDS, BELOW_LOW_THRESHOLD, BELOW_LOW_THRESHOLD]
    # Box 1 has no anchor above 0.5; its best anchor (2) is matched to it anyway.
    assert Matcher(0.5, 0.4, allow_low_quality_matches=True)(quality).tolist() == [0, -2, 1, -1]
    assert Matcher(0.5, 0.4)(torch.zeros(0, 3)).tolist() == [-1, -1, -1]


def _grid_anchors() -> tuple[torch.Tensor, list[int], list[int]]:
    # Level 0: stride 4, 8x8 anchors at centres 2, 6, 10, 14; level 1: stride 8, 16x16 anchors at 4, 12.
    generator = AnchorGenerator([[(8.0, 8.0)], [(16.0, 16.0)]], [(4, 4), (8, 8)])
    levels = generator([(4, 4), (2, 2)])
    return torch.cat(levels), [len(level) for level in levels], generator.num_anchors_per_location()


def test_atss_hand_made_case() -> None:
    anchors, per_level, per_location = _grid_anchors()
    box = torch.tensor([[3.0, 3.0, 11.0, 11.0]])  # centre (7, 7)
    matches = ATSSMatcher(num_candidates=2)(box, anchors, per_level, per_location)
    # Candidates on level 0 (2 closest centres): (6, 6) IoU 49/79 and one of (6, 10)/(10, 6) IoU 35/93;
    # on level 1: (4, 4) IoU 64/256 and one of (4, 12)/(12, 4) IoU 40/280. Threshold = mean + std.
    iou = torch.tensor([49 / 79, 35 / 93, 64 / 256, 40 / 280])
    threshold = iou.mean() + iou.std()
    assert 49 / 79 >= threshold > 35 / 93
    assert torch.nonzero(matches >= 0).flatten().tolist() == [5]  # level 0, row 1, column 1: centre (6, 6)
    assert anchors[5].tolist() == [2.0, 2.0, 10.0, 10.0]


def test_atss_centre_inside_and_conflicts() -> None:
    anchors, per_level, per_location = _grid_anchors()
    # A thin box whose best anchors have centres outside it: centre-in-box leaves it unmatched.
    # On level 0 its candidates (6, 6) and (6, 10) both have IoU 16/64, so both pass mean + std.
    thin = torch.tensor([[2.0, 7.0, 10.0, 9.0]])
    assert (ATSSMatcher(2)(thin, anchors[:16], [16], [1]) < 0).all()
    assert torch.nonzero(ATSSMatcher(2, center_in_box=False)(thin, anchors[:16], [16], [1]) >= 0).flatten().tolist() \
        == [5, 6]
    # Two boxes that both claim anchor (6, 6): it goes to the one of higher IoU (box 1, identical to it).
    boxes = torch.tensor([[3.0, 3.0, 11.0, 11.0], [2.0, 2.0, 10.0, 10.0]])
    matches = ATSSMatcher(2, center_in_box=False)(boxes, anchors, per_level, per_location)
    assert matches[5].item() == 1
    assert (ATSSMatcher(2)(torch.zeros(0, 4), anchors, per_level, per_location) == BELOW_LOW_THRESHOLD).all()


def test_atss_3d_matches_the_identical_anchor() -> None:
    generator = AnchorGenerator([[(4.0, 4.0, 4.0)]], [(2, 2, 2)])
    anchors = generator([(4, 4, 4)])[0]
    box = anchors[21:22].clone()
    matches = ATSSMatcher(num_candidates=4)(box, anchors, [len(anchors)], [1])
    assert matches[21].item() == 0 and (matches >= 0).sum().item() >= 1


def test_hard_negative_sampler_counts_and_hardness() -> None:
    matches = torch.tensor([0, 1, 2, -1, -1, -1, -1, -1, -1, -2])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.9, 0.1, 0.05, 0.02, 0.01, 0.99])
    sampler = HardNegativeSampler(batch_size_per_image=4, positive_fraction=0.5, min_negatives=1, pool_size=1)
    positive, negative = sampler([matches], [scores], torch.Generator().manual_seed(0))
    assert positive[0].sum().item() == 2 and negative[0].sum().item() == 2
    assert negative[0].tolist() == [False] * 3 + [True, True] + [False] * 5  # the two hardest negatives
    assert not (positive[0] & (matches < 0)).any()
    random_sampler = HardNegativeSampler(4, 0.5, min_negatives=3, pool_size=None)
    positive, negative = random_sampler([torch.tensor([-1, -1, -1, -1, -2])], None, torch.Generator())
    assert positive[0].sum().item() == 0 and negative[0].sum().item() == 3 and not negative[0][4]
