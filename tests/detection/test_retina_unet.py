"""Retina U-Net parts: head shapes, anchors in step with head outputs, losses, box decoding, the registry."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from autounet.detection.anchors import AnchorGenerator
from autounet.detection.coder import BoxCoder
from autounet.detection.heads import ClassificationHead, RegressionHead
from autounet.detection.losses import BoxTargets, ClassificationLoss, DetectionLoss, RegressionLoss
from autounet.detection.retina_unet import (
    PostprocessSettings,
    RetinaUNet,
    RetinaUNetOutput,
    build_retina_unet,
    default_levels,
    level_strides,
    postprocess_detections,
)
from autounet.networks.registry import build_network, network_builder
from autounet.networks.spec import UNetSpec
from autounet.networks.unet import UNet

SPEC_2D = UNetSpec(ndim=2, encoder="plain", features_per_stage=(8, 16, 32), kernel_sizes=((3, 3),) * 3,
                   strides=((1, 1), (2, 2), (2, 2)), blocks_per_stage=(1, 1, 1), convs_per_decoder_stage=(1, 1))
SPEC_3D = UNetSpec(ndim=3, encoder="residual", features_per_stage=(4, 8, 16, 16), kernel_sizes=((3, 3, 3),) * 4,
                   strides=((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2)), blocks_per_stage=(1, 1, 1, 1),
                   convs_per_decoder_stage=(1, 1, 1))


@pytest.mark.parametrize("ndim", [2, 3])
def test_heads_give_one_row_per_anchor_of_every_level(ndim: int) -> None:
    shapes = [(8,) * ndim, (4,) * ndim]
    features = [torch.randn(2, 6, *shape) for shape in shapes]
    classification = ClassificationHead(ndim, 6, num_anchors=3, num_classes=2)
    regression = RegressionHead(ndim, 6, num_anchors=3, num_convs=1, channels=5)
    positions = sum(torch.Size(shape).numel() for shape in shapes)
    assert classification(features).shape == (2, positions * 3, 2)
    assert regression(features).shape == (2, positions * 3, 2 * ndim)
    # The prior bias makes every anchor start at about 1 % foreground probability.
    assert torch.sigmoid(classification(features)).mean().item() == pytest.approx(0.01, abs=0.005)


def test_head_rows_are_ordered_like_the_anchors() -> None:
    """Row i of a head's output belongs to anchor i: position-major, shape-minor."""
    head = RegressionHead(2, 1, num_anchors=2, num_convs=0)
    with torch.no_grad():
        head.output.weight.zero_()
        head.output.bias.copy_(torch.arange(8, dtype=torch.float32))  # anchor a, value k -> 4 a + k
    feature = torch.zeros(1, 1, 2, 3)
    rows = head([feature])[0]
    anchors = AnchorGenerator([[(2.0, 2.0), (4.0, 4.0)]], [(1, 1)]).level_anchors(0, (2, 3))
    assert rows.shape == (12, 4) and anchors.shape == (12, 4)
    assert torch.equal(rows[0], torch.tensor([0.0, 1, 2, 3])) and torch.equal(rows[1], torch.tensor([4.0, 5, 6, 7]))
    assert torch.equal(rows[2], rows[0])  # next position, first shape again
    assert torch.equal(anchors[0], torch.tensor([-0.5, -0.5, 1.5, 1.5]))
    assert torch.equal(anchors[1], torch.tensor([-1.5, -1.5, 2.5, 2.5]))


@pytest.mark.parametrize(("spec", "shape"), [(SPEC_2D, (32, 32)), (SPEC_3D, (8, 16, 16))])
def test_forward_gives_as_many_anchors_as_head_rows(spec: UNetSpec, shape: tuple[int, ...]) -> None:
    network = build_retina_unet(spec, 1, num_classes=2)
    output = network(torch.randn(2, 1, *shape))
    count = len(output.anchors)
    assert output.class_logits.shape == (2, count, 2)
    assert output.box_deltas.shape == (2, count, 2 * spec.ndim)
    assert sum(output.num_anchors_per_level) == count
    strides = [level_strides(spec)[level] for level in default_levels(spec)]
    expected = sum(3 * torch.Size(p // s for p, s in zip(shape, stride, strict=True)).numel() for stride in strides)
    assert count == expected
    assert output.seg_logits.shape == (2, 2, *shape)
    assert output.image_shape == shape


def test_levels_and_fitted_anchor_shapes_come_from_the_plan() -> None:
    network = build_retina_unet(SPEC_3D, 1, 1, levels=(1, 2), anchor_shapes=[[(2, 4, 4), (3, 6, 6)], [(4, 8, 8),
                                                                                                    (6, 12, 12)]])
    assert network.levels == (1, 2)
    assert network.anchor_generator.strides == [(1, 2, 2), (2, 4, 4)]
    output = network(torch.zeros(1, 1, 8, 16, 16))
    assert output.num_anchors_per_level == (8 * 8 * 8 * 2, 4 * 4 * 4 * 2)
    # Level 3 is the bottleneck (stride 4, 8, 8): nnDetection's deepest head; there is no level 4.
    deepest = build_retina_unet(SPEC_3D, 1, 1, levels=(2, 3), anchor_shapes=[[(4, 8, 8)], [(8, 16, 16)]])
    assert deepest(torch.zeros(1, 1, 8, 16, 16)).num_anchors_per_level == (4 * 4 * 4, 2 * 2 * 2)
    with pytest.raises(ValueError, match="are not levels 0..3"):
        build_retina_unet(SPEC_3D, 1, 1, levels=(4,))
    with pytest.raises(ValueError, match="anchor strides"):
        RetinaUNet(UNet(SPEC_3D, 1, 2, deep_supervision=False), 1, levels=(1,),
                   anchor_generator=AnchorGenerator([[(2, 2, 2)]], [(1, 1, 1)]))


def test_default_levels_leave_out_the_finest_ones() -> None:
    def spec(stages: int) -> UNetSpec:
        return UNetSpec(ndim=2, encoder="plain", features_per_stage=(4,) * stages, kernel_sizes=((3, 3),) * stages,
                        strides=((1, 1),) + ((2, 2),) * (stages - 1), blocks_per_stage=(1,) * stages,
                        convs_per_decoder_stage=(1,) * (stages - 1))

    assert [default_levels(spec(n)) for n in (2, 3, 4, 6)] == [(0,), (1,), (1, 2), (2, 3, 4)]
    assert level_strides(spec(4)) == [(1, 1), (2, 2), (4, 4), (8, 8)]  # the last: the bottleneck


def test_registry_builds_the_detector_by_name() -> None:
    assert network_builder("retina_unet") is build_retina_unet
    network = build_network(replace(SPEC_2D, kind="retina_unet"), 1, 3)
    assert isinstance(network, RetinaUNet) and network.num_classes == 3


def _two_box_batch(ndim: int) -> tuple[torch.Tensor, BoxTargets]:
    shape = (32,) * ndim
    boxes = [torch.tensor([[4.0] * ndim + [14.0] * ndim, [16.0] * ndim + [26.0] * ndim]), torch.zeros(0, 2 * ndim)]
    classes = [torch.tensor([0, 1]), torch.zeros(0, dtype=torch.long)]
    return torch.randn(2, 1, *shape), BoxTargets(boxes, classes)


@pytest.mark.parametrize(("spec", "classification", "regression"), [
    (SPEC_2D, "bce", "giou"), (SPEC_2D, "focal", "smooth_l1"), (SPEC_3D, "bce", "giou")])
def test_losses_are_finite_and_reach_every_head(spec: UNetSpec, classification: str, regression: str) -> None:
    torch.manual_seed(0)
    network = build_retina_unet(spec, 1, num_classes=2)
    image, targets = _two_box_batch(spec.ndim)
    loss = DetectionLoss(classification_loss=ClassificationLoss(classification),  # type: ignore[arg-type]
                         regression_loss=RegressionLoss(regression))  # type: ignore[arg-type]
    terms = loss(network(image), targets, torch.Generator().manual_seed(0))
    assert terms.num_positives > 0
    total = terms.classification + terms.regression
    assert torch.isfinite(total) and total > 0
    total.backward()
    for head in (network.classification_head, network.regression_head):
        gradient = head.output.weight.grad
        assert gradient is not None and torch.isfinite(gradient).all() and gradient.abs().sum() > 0


def test_batch_without_boxes_has_no_regression_loss_but_a_classification_loss() -> None:
    network = build_retina_unet(SPEC_2D, 1, num_classes=1)
    output = network(torch.randn(1, 1, 32, 32))
    terms = DetectionLoss()(output, BoxTargets([torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.long)]))
    assert terms.num_positives == 0 and float(terms.regression.detach()) == 0.0
    assert float(terms.classification.detach()) > 0  # the hardest negatives are still pushed down


def test_focal_loss_matches_its_definition() -> None:
    logits, targets = torch.tensor([[2.0], [-1.0]]), torch.tensor([[1.0], [0.0]])
    p = torch.sigmoid(logits)
    expected = (0.25 * (1 - p[0]) ** 2 * -torch.log(p[0]) + 0.75 * p[1] ** 2 * -torch.log(1 - p[1])).sum()
    assert float(ClassificationLoss("focal")(logits, targets, num_positives=1)) == pytest.approx(float(expected))
    with pytest.raises(ValueError, match="'bce' or 'focal'"):
        ClassificationLoss("hinge")  # type: ignore[arg-type]


def test_postprocessing_keeps_confident_boxes_and_suppresses_duplicates() -> None:
    anchors = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 4, 4]])
    logits = torch.tensor([[[5.0, -9], [4.0, -9], [-9, 3.0], [-9, -9]]])  # (1, 4 anchors, 2 classes)
    output = RetinaUNetOutput(logits, torch.zeros(1, 4, 4), anchors, (2, 2), (1, 1), torch.zeros(1, 2, 32, 32),
                              (32, 32))
    found = postprocess_detections(output, BoxCoder(), PostprocessSettings(score_threshold=0.5, nms_iou=0.5))[0]
    assert found.classes.tolist() == [0, 1]  # the second class-0 box overlaps the first by IoU 0.68
    assert torch.equal(found.boxes, anchors[[0, 2]])
    assert found.scores.tolist() == pytest.approx(torch.sigmoid(torch.tensor([5.0, 3.0])).tolist())
    limited = postprocess_detections(output, BoxCoder(), PostprocessSettings(score_threshold=0.5, nms_iou=0.9,
                                                                             detections_per_image=2))[0]
    assert len(limited.boxes) == 2 and limited.scores[0] > limited.scores[1]
