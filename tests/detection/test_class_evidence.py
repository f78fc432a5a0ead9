"""Class evidence from a class segmentation: means inside boxes, class shares, and box classes scored by them."""

from __future__ import annotations

import pytest
import torch

from autounet.detection.class_evidence import box_mean_probabilities, class_shares
from autounet.detection.coder import BoxCoder
from autounet.detection.retina_unet import (
    PostprocessSettings,
    RetinaUNetOutput,
    build_retina_unet,
    postprocess_detections,
)
from autounet.networks.spec import UNetSpec


def _brute_force_means(values: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    ndim = values.ndim - 1
    rows = []
    for box in boxes:
        lower = [min(max(round(float(v)), 0), n - 1) for v, n in zip(box[:ndim], values.shape[1:], strict=True)]
        upper = [max(min(round(float(v)), n), lo + 1)
                 for v, n, lo in zip(box[ndim:], values.shape[1:], lower, strict=True)]
        region = values[(slice(None), *(slice(lo, hi) for lo, hi in zip(lower, upper, strict=True)))]
        rows.append(region.reshape(values.shape[0], -1).mean(dim=1))
    return torch.stack(rows)


@pytest.mark.parametrize("ndim", [2, 3])
def test_box_means_equal_the_brute_force_means(ndim: int) -> None:
    generator = torch.Generator().manual_seed(ndim)
    values = torch.rand(3, *(9,) * ndim, generator=generator)
    lower = torch.rand(20, ndim, generator=generator) * 8
    boxes = torch.cat([lower, lower + 0.2 + torch.rand(20, ndim, generator=generator) * 6], dim=1)
    boxes[0] = torch.tensor([-3.0] * ndim + [40.0] * ndim)  # reaching past the image: the whole image
    boxes[1] = torch.tensor([8.6] * ndim + [8.8] * ndim)  # thinner than a voxel at the far border: the last voxel
    torch.testing.assert_close(box_mean_probabilities(values, boxes), _brute_force_means(values, boxes))
    torch.testing.assert_close(box_mean_probabilities(values, boxes)[0], values.reshape(3, -1).mean(dim=1))
    assert box_mean_probabilities(values, torch.zeros(0, 2 * ndim)).shape == (0, 3)
    with pytest.raises(ValueError, match="boxes"):
        box_mean_probabilities(values, torch.zeros(1, 2 * ndim + 2))


def test_class_shares_are_the_foreground_classes_shares_inside_each_box() -> None:
    probabilities = torch.zeros(3, 10, 10)
    probabilities[0] = 1.0
    probabilities[:, 0:4, 0:4] = torch.tensor([0.2, 0.6, 0.2])[:, None, None]  # class 0 three times class 1
    probabilities[:, 6:10, 6:10] = torch.tensor([0.0, 0.0, 1.0])[:, None, None]
    shares = class_shares(probabilities, torch.tensor([[0.0, 0, 4, 4], [6, 6, 10, 10], [0, 6, 4, 10]]))
    torch.testing.assert_close(shares, torch.tensor([[0.75, 0.25], [0.0, 1.0], [0.5, 0.5]]))  # last: background


def test_the_segmentation_decides_the_class_and_objectness_the_score() -> None:
    # One confident anchor whose classification head says class 0; the segmentation says class 1 inside it.
    anchors = torch.tensor([[0.0, 0, 8, 8], [20, 20, 28, 28]])
    logits = torch.tensor([[[4.0, -4.0], [-6.0, -6.0]]])
    seg_logits = torch.full((1, 3, 32, 32), -5.0)
    seg_logits[0, 0] = 5.0
    seg_logits[0, 0, 0:8, 0:8], seg_logits[0, 2, 0:8, 0:8] = -5.0, 5.0
    output = RetinaUNetOutput(logits, torch.zeros(1, 2, 4), anchors, (2,), (1,), seg_logits, (32, 32))
    settings = PostprocessSettings(score_threshold=0.05, class_evidence=True)
    found = postprocess_detections(output, BoxCoder(), settings)[0]
    assert found.classes.tolist() == [1]
    assert found.scores.item() == pytest.approx(torch.sigmoid(torch.tensor(4.0)).item(), abs=1e-3)
    plain = postprocess_detections(output, BoxCoder(), PostprocessSettings(score_threshold=0.05))[0]
    assert plain.classes.tolist() == [0]  # without evidence the classification head decides
    foreground = RetinaUNetOutput(logits, torch.zeros(1, 2, 4), anchors, (2,), (1,), seg_logits[:, :2], (32, 32))
    assert postprocess_detections(foreground, BoxCoder(), settings)[0].classes.tolist() == [0]  # no class head


def test_a_class_segmentation_head_has_a_channel_per_class() -> None:
    spec = UNetSpec(ndim=2, encoder="plain", features_per_stage=(4, 8, 8), kernel_sizes=((3, 3),) * 3,
                    strides=((1, 1), (2, 2), (2, 2)), blocks_per_stage=(1, 1, 1), convs_per_decoder_stage=(1, 1))
    image = torch.randn(1, 1, 16, 16)
    assert build_retina_unet(spec, 1, 3, class_segmentation=True)(image).seg_logits.shape[1] == 4
    assert build_retina_unet(spec, 1, 3)(image).seg_logits.shape[1] == 2
