from __future__ import annotations

import math

import pytest
import torch

from autounet.detection.coder import BoxCoder


def _random_boxes(count: int, ndim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand(count, ndim, generator=generator, dtype=torch.float64) * 50
    return torch.cat([low, low + 1 + torch.rand(count, ndim, generator=generator, dtype=torch.float64) * 20], 1)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_round_trip(ndim: int, weighted: bool) -> None:
    coder = BoxCoder((10.0,) * ndim + (5.0,) * ndim if weighted else None)
    boxes, anchors = _random_boxes(20, ndim, 1), _random_boxes(20, ndim, 2)
    deltas = coder.encode(boxes, anchors)
    assert deltas.shape == boxes.shape
    assert torch.allclose(coder.decode(deltas, anchors), boxes, atol=1e-9)


def test_encode_hand_computed_2d() -> None:
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    anchor = torch.tensor([[0.0, 0.0, 4.0, 8.0]])  # centre (2, 4), extent (4, 8)
    box = torch.tensor([[1.0, 0.0, 9.0, 8.0]])  # centre (5, 4), extent (8, 8)
    expected = torch.tensor([[10 * 3 / 4, 0.0, 5 * torch.log(torch.tensor(2.0)).item(), 0.0]])
    assert torch.allclose(coder.encode(box, anchor), expected)


def test_decode_clips_huge_extents_and_checks_dimensions() -> None:
    coder = BoxCoder()
    anchors = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0, 2.0]])
    decoded = coder.decode(torch.tensor([[0.0, 0.0, 0.0, 100.0, 0.0, 0.0]]), anchors)
    assert torch.isfinite(decoded).all()
    with pytest.raises(ValueError, match="4 weights but the boxes are 3D"):
        BoxCoder((1.0, 1.0, 1.0, 1.0)).encode(anchors, anchors)


def test_the_detector_coder_weights_centres_by_10_and_extents_by_5_in_2d_and_3d() -> None:
    from autounet.detection.coder import detector_coder

    coder = detector_coder()
    for anchors in (torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0, 4.0]])):
        ndim = anchors.shape[1] // 2
        shifted = anchors.clone()
        shifted[0, [0, ndim]] += 2.0  # half an anchor along the first axis
        deltas = coder.encode(shifted, anchors)
        assert deltas[0, 0].item() == pytest.approx(10 * 0.5)
        torch.testing.assert_close(coder.decode(deltas, anchors), shifted)
        # an untrained head's unit output moves the box a tenth of an anchor, not a whole one
        assert coder.decode(torch.ones_like(anchors), anchors)[0, 0].item() == pytest.approx(0.4 - 4 * (
            math.exp(0.2) - 1) / 2, rel=1e-5)
