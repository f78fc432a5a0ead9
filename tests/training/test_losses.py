from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional

from autounet.dataset.labels import LabelScheme
from autounet.networks import UNetSpec, build_network
from autounet.training import (
    DeepSupervisionLoss,
    DiceBCELoss,
    DiceCELoss,
    SoftDiceLoss,
    build_loss,
    deep_supervision_scales,
    deep_supervision_weights,
    downsample_targets,
)

SMOOTH = 1e-5


def probs_2class(foreground: list[list[float]]) -> Tensor:
    """(B, 2, X) probabilities from per-sample foreground probabilities."""
    fg = torch.tensor(foreground, dtype=torch.float64)
    return torch.stack([1 - fg, fg], dim=1)


def test_soft_dice_hand_computed() -> None:
    probs = probs_2class([[1.0, 0.5, 0.5, 0.0]])
    target = torch.tensor([[[1, 1, 0, 0]]])
    # Foreground: I = 1.5, P = 2, G = 2.
    expected = -(3 + SMOOTH) / (4 + SMOOTH)
    assert SoftDiceLoss(batch_dice=False)(probs, target).item() == pytest.approx(expected, abs=1e-12)
    # Background: I = 0.5 + 1 = 1.5, P = 2, G = 2: the same Dice, so the mean is unchanged.
    with_bg = SoftDiceLoss(batch_dice=False, include_background=True)(probs, target).item()
    assert with_bg == pytest.approx(expected, abs=1e-12)


def test_perfect_prediction_gives_minus_one() -> None:
    probs = probs_2class([[1.0, 1.0, 0.0, 0.0]])
    assert SoftDiceLoss(batch_dice=True)(probs, torch.tensor([[[1, 1, 0, 0]]])).item() == pytest.approx(-1.0)
    # A class absent from target and prediction scores 1 thanks to the smoothing term.
    empty = probs_2class([[0.0, 0.0, 0.0, 0.0]])
    assert SoftDiceLoss(batch_dice=False)(empty, torch.zeros(1, 1, 4)).item() == pytest.approx(-1.0)


def test_batch_dice_differs_from_per_sample_dice() -> None:
    probs = probs_2class([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    target = torch.tensor([[[1, 1, 0, 0]], [[1, 0, 0, 0]]])
    # Per sample: Dice 1 and smooth / (1 + smooth); batch: I = 2, P = 2, G = 3.
    per_sample = -(1 + SMOOTH / (1 + SMOOTH)) / 2
    batch = -(4 + SMOOTH) / (5 + SMOOTH)
    assert SoftDiceLoss(batch_dice=False)(probs, target).item() == pytest.approx(per_sample, abs=1e-12)
    assert SoftDiceLoss(batch_dice=True)(probs, target).item() == pytest.approx(batch, abs=1e-12)


def test_dice_accepts_one_hot_target() -> None:
    probs = probs_2class([[0.9, 0.2, 0.4, 0.1]])
    labels = torch.tensor([[[1, 0, 1, 0]]])
    onehot = functional.one_hot(labels[:, 0], 2).movedim(-1, 1)
    loss = SoftDiceLoss(batch_dice=False)
    assert loss(probs, onehot).item() == pytest.approx(loss(probs, labels).item())


def test_dice_ce_perfect_prediction_is_minus_one() -> None:
    labels = torch.tensor([[[[0, 1], [2, 1]]]])
    logits = 100.0 * functional.one_hot(labels[:, 0], 3).movedim(-1, 1).double()
    assert DiceCELoss(batch_dice=False)(logits, labels).item() == pytest.approx(-1.0, abs=1e-6)


def test_dice_ce_is_ce_plus_dice() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 1, 4, 4))
    expected = (functional.cross_entropy(logits, labels[:, 0])
                + SoftDiceLoss(batch_dice=True)(torch.softmax(logits, 1), labels))
    assert DiceCELoss(batch_dice=True)(logits, labels).item() == pytest.approx(expected.item(), abs=1e-12)


def test_ignore_label_is_excluded() -> None:
    torch.manual_seed(1)
    scheme = LabelScheme(labels=(0, 1, 2), ignore_label=3)
    loss = build_loss(scheme, batch_dice=False, deep_supervision_levels=None)
    seg = torch.randint(0, 4, (2, 1, 6, 6))
    logits = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    value = loss(logits, seg)
    value.backward()
    ignored = (seg == 3).expand_as(logits)
    assert ignored.any()
    assert torch.all(logits.grad[ignored] == 0)
    changed = logits.detach().clone()
    changed[ignored] = torch.randn(int(ignored.sum()), dtype=torch.float64) * 10
    assert loss(changed, seg).item() == pytest.approx(value.item(), abs=1e-12)
    # The CE term is the mean over annotated voxels, as CrossEntropyLoss(ignore_index=...) computes it.
    valid = (seg != 3).float()
    target = seg.masked_fill(seg == 3, 0)
    dice = SoftDiceLoss(batch_dice=False)(torch.softmax(logits.detach(), 1), target, valid)
    ce = functional.cross_entropy(logits.detach(), seg[:, 0], ignore_index=3)
    assert value.item() == pytest.approx((ce + dice).item(), abs=1e-12)


def test_everything_ignored_gives_finite_loss() -> None:
    scheme = LabelScheme(labels=(0, 1), ignore_label=2)
    loss = build_loss(scheme, batch_dice=True, deep_supervision_levels=None)
    value = loss(torch.randn(1, 2, 3, 3), torch.full((1, 1, 3, 3), 2))
    assert torch.isfinite(value)


def test_region_loss_is_bce_plus_dice_on_sigmoid() -> None:
    torch.manual_seed(2)
    scheme = LabelScheme(labels=(0, 1, 2), regions=((1, 2), (2,)), regions_class_order=(1, 2))
    seg = torch.randint(0, 3, (2, 1, 5, 5))
    logits = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    target = torch.stack([(seg[:, 0] >= 1), (seg[:, 0] == 2)], 1).double()
    expected = (functional.binary_cross_entropy_with_logits(logits, target)
                + SoftDiceLoss(batch_dice=True, include_background=True)(torch.sigmoid(logits), target))
    value = build_loss(scheme, batch_dice=True, deep_supervision_levels=None)(logits, seg)
    assert value.item() == pytest.approx(expected.item(), abs=1e-12)


def test_region_loss_masks_ignore_voxels() -> None:
    torch.manual_seed(3)
    scheme = LabelScheme(labels=(0, 1, 2), regions=((1, 2), (2,)), regions_class_order=(1, 2), ignore_label=3)
    loss = build_loss(scheme, batch_dice=False, deep_supervision_levels=None)
    seg = torch.randint(0, 4, (2, 1, 5, 5))
    logits = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    ignored = (seg == 3).expand_as(logits)
    changed = logits.clone()
    changed[ignored] += 7.0
    assert loss(changed, seg).item() == pytest.approx(loss(logits, seg).item(), abs=1e-12)
    # Without ignore voxels the masked BCE equals the plain mean.
    clean = seg.clamp_max(2)
    target, mask = scheme.targets_for_loss(clean)
    plain = DiceBCELoss(batch_dice=False)(logits, target)
    assert DiceBCELoss(batch_dice=False)(logits, target, mask).item() == pytest.approx(plain.item(), abs=1e-12)


def test_deep_supervision_weights_exact() -> None:
    assert deep_supervision_weights(3) == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert deep_supervision_weights(5) == pytest.approx([8 / 15, 4 / 15, 2 / 15, 1 / 15, 0.0])
    assert deep_supervision_weights(5)[-1] == 0.0
    assert deep_supervision_weights(1) == [1.0]
    with pytest.raises(ValueError):
        deep_supervision_weights(0)


def spec_3d() -> UNetSpec:
    return UNetSpec(ndim=3, encoder="plain", features_per_stage=(2, 4, 4, 4), kernel_sizes=((3, 3, 3),) * 4,
                    strides=((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2)), blocks_per_stage=(1, 1, 1, 1),
                    convs_per_decoder_stage=(1, 1, 1))


def test_deep_supervision_scales_from_strides() -> None:
    assert deep_supervision_scales(spec_3d()) == [(1.0, 1.0, 1.0), (1.0, 0.5, 0.5), (0.5, 0.25, 0.25)]


def test_downsample_targets_shapes_and_values() -> None:
    seg = torch.randint(0, 3, (2, 1, 8, 16, 12), dtype=torch.int16)
    out = downsample_targets(seg, deep_supervision_scales(spec_3d()))
    assert [tuple(t.shape) for t in out] == [(2, 1, 8, 16, 12), (2, 1, 8, 8, 6), (2, 1, 4, 4, 3)]
    assert out[0] is seg
    assert all(t.dtype == torch.int16 for t in out)
    # nearest-exact picks the centre-most voxel of each 2-block: indices 1 and 3 of 0..3.
    ramp = torch.arange(4).reshape(1, 4)
    assert downsample_targets(ramp, [(0.5,)])[0].tolist() == [[1, 3]]
    # Per-sample (1, *spatial) layout works as well; sizes are rounded.
    assert tuple(downsample_targets(torch.zeros(1, 5, 7), [(0.5, 0.5)])[0].shape) == (1, 2, 4)


class CountingLoss(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        self.calls += 1
        return (output - target.float()).abs().mean()


def test_deep_supervision_skips_zero_weight_levels() -> None:
    inner = CountingLoss()
    loss = DeepSupervisionLoss(inner, deep_supervision_weights(3))
    outputs = [torch.ones(1, 1, 4, 4), torch.ones(1, 1, 2, 2), torch.full((1, 1, 1, 1), float("nan"))]
    targets = [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1)]
    assert loss(outputs, targets).item() == pytest.approx(1.0)
    assert inner.calls == 2
    with pytest.raises(ValueError, match="3 outputs"):
        loss(outputs[:2], targets)
    with pytest.raises(ValueError):
        DeepSupervisionLoss(inner, [0.0, 0.0])


def test_deep_supervision_downsamples_a_single_target() -> None:
    torch.manual_seed(4)
    scheme = LabelScheme(labels=(0, 1, 2))
    loss = build_loss(scheme, batch_dice=True, deep_supervision_levels=3)
    outputs = [torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2)]
    seg = torch.randint(0, 3, (2, 1, 8, 8))
    targets = downsample_targets(seg, [(1.0, 1.0), (0.5, 0.5), (0.25, 0.25)])
    single = build_loss(scheme, batch_dice=True, deep_supervision_levels=None)
    expected = 2 / 3 * single(outputs[0], targets[0]) + 1 / 3 * single(outputs[1], targets[1])
    assert loss(outputs, seg).item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss(outputs, targets).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("region_based", [False, True])
def test_gradient_flows_through_network(region_based: bool) -> None:
    torch.manual_seed(5)
    if region_based:
        scheme = LabelScheme(labels=(0, 1, 2), regions=((1, 2), (2,)), regions_class_order=(1, 2), ignore_label=3)
    else:
        scheme = LabelScheme(labels=(0, 1, 2), ignore_label=3)
    spec = UNetSpec(ndim=2, encoder="plain", features_per_stage=(2, 4, 4), kernel_sizes=((3, 3),) * 3,
                    strides=((1, 1), (2, 2), (2, 2)), blocks_per_stage=(1, 1, 1), convs_per_decoder_stage=(1, 1))
    network = build_network(spec, 1, scheme.num_outputs, deep_supervision=True)
    loss = build_loss(scheme, batch_dice=False, deep_supervision_levels=len(deep_supervision_scales(spec)))
    seg = torch.randint(0, 4, (2, 1, 16, 16))
    value = loss(network(torch.randn(2, 1, 16, 16)), seg)
    value.backward()
    assert torch.isfinite(value)
    full_resolution_head = [p.grad for p in network.heads.levels[-1].parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in full_resolution_head)
    # The lowest-resolution output has weight 0 and is skipped, so its head gets no gradient at all.
    assert all(p.grad is None for p in network.heads.levels[0].parameters())
