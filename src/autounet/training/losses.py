"""Segmentation losses: soft Dice + cross-entropy (softmax labels), soft Dice + BCE (regions), deep supervision.

Sign convention (as nnU-Net v2): the Dice term is the **negative** soft Dice, so a perfect prediction gives
a Dice term of -1 and a Dice+CE loss that approaches -1 (CE -> 0). Training logs therefore show negative
losses, directly comparable with nnU-Net's.

Soft Dice per channel is ``(2 * I + smooth) / (P + G + smooth)`` with ``I = sum(p * g)``, ``P = sum(p)``,
``G = sum(g)`` over the spatial axes (and the batch axis with ``batch_dice``), averaged over channels (and
samples without ``batch_dice``). ``smooth = 1e-5`` keeps an absent class whose prediction is empty at Dice 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from autounet.dataset.labels import LabelScheme
from autounet.errors import ConfigError
from autounet.networks.spec import UNetSpec

__all__ = [
    "LOSS_TERMS",
    "DeepSupervisionLoss",
    "DiceBCELoss",
    "DiceCELoss",
    "SegmentationLoss",
    "SoftDiceLoss",
    "build_loss",
    "deep_supervision_scales",
    "deep_supervision_weights",
    "downsample_targets",
]

# Names of the segmentation loss terms a recipe may weigh (TrainingRecipe.loss_weights).
LOSS_TERMS = ("ce", "dice")


class SoftDiceLoss(nn.Module):
    """Negative soft Dice of probabilities against a label map or per-channel binary target.

    Args:
        batch_dice: Sum intersection and volumes over the whole batch before dividing (one Dice per
            channel), instead of one Dice per sample and channel.
        include_background: Keep channel 0 (the softmax background); ``False`` for softmax labels,
            ``True`` for region outputs, where every channel is a foreground region.
        smooth: Added to numerator and denominator.
    """

    def __init__(self, batch_dice: bool, include_background: bool = False, smooth: float = 1e-5) -> None:
        super().__init__()
        self.batch_dice = batch_dice
        self.include_background = include_background
        self.smooth = smooth

    def forward(self, probabilities: Tensor, target: Tensor, loss_mask: Tensor | None = None) -> Tensor:
        """Compute the loss.

        Args:
            probabilities: ``(B, C, *spatial)`` softmax or sigmoid outputs.
            target: Integer label map ``(B, 1, *spatial)`` (one-hot encoded here) or a binary target of the
                same shape as ``probabilities``.
            loss_mask: Optional ``(B, 1, *spatial)`` mask, 0 where voxels must not count.

        Returns:
            Scalar ``-mean(dice)``, in ``[-1, 0]``.
        """
        axes = tuple(range(2, probabilities.ndim))
        # Sums over many voxels lose precision in half precision (AMP): accumulate in at least float32.
        dtype = torch.promote_types(probabilities.dtype, torch.float32)
        with torch.no_grad():
            # The target carries no gradient; building it outside autograd saves memory.
            if target.shape == probabilities.shape:
                onehot = target.to(dtype)
            else:
                onehot = torch.zeros(probabilities.shape, device=probabilities.device, dtype=dtype)
                onehot.scatter_(1, target.long(), 1)
            if not self.include_background:
                onehot = onehot[:, 1:]
            if loss_mask is not None:
                onehot = onehot * loss_mask
            sum_gt = onehot.sum(axes, dtype=dtype)
        if not self.include_background:
            probabilities = probabilities[:, 1:]
        if loss_mask is not None:
            probabilities = probabilities * loss_mask
        intersection = (probabilities * onehot).sum(axes, dtype=dtype)
        sum_pred = probabilities.sum(axes, dtype=dtype)
        if self.batch_dice:
            intersection, sum_pred, sum_gt = intersection.sum(0), sum_pred.sum(0), sum_gt.sum(0)
        dice = (2 * intersection + self.smooth) / (sum_gt + sum_pred + self.smooth).clamp_min(1e-8)
        return -dice.mean()


class DiceCELoss(nn.Module):
    """Cross-entropy on logits plus negative soft Dice on the softmax (softmax labels).

    Args:
        batch_dice: See :class:`SoftDiceLoss`.
        weight_ce: Weight of the cross-entropy term.
        weight_dice: Weight of the Dice term.
        smooth: Dice smoothing.
    """

    def __init__(self, batch_dice: bool, weight_ce: float = 1.0, weight_dice: float = 1.0,
                 smooth: float = 1e-5) -> None:
        super().__init__()
        self.weight_ce = weight_ce
        self.weight_dice = weight_dice
        self.dice = SoftDiceLoss(batch_dice=batch_dice, include_background=False, smooth=smooth)

    def forward(self, logits: Tensor, target: Tensor, loss_mask: Tensor | None = None) -> Tensor:
        """Compute the loss.

        Args:
            logits: ``(B, C, *spatial)`` raw network outputs.
            target: ``int64`` label map ``(B, 1, *spatial)`` with values in ``[0, C)``.
            loss_mask: Optional ``(B, 1, *spatial)`` float mask; masked voxels count in neither term. The
                cross-entropy is the mean over unmasked voxels (0 when every voxel is masked).
        """
        ce = functional.cross_entropy(logits, target[:, 0].long(), reduction="none")
        if loss_mask is None:
            ce_loss = ce.mean()
        else:
            mask = loss_mask[:, 0].to(ce.dtype)
            ce_loss = (ce * mask).sum() / mask.sum().clamp_min(1)
        dice_loss = self.dice(torch.softmax(logits, 1), target, loss_mask)
        return self.weight_ce * ce_loss + self.weight_dice * dice_loss


class DiceBCELoss(nn.Module):
    """Binary cross-entropy on logits plus negative soft Dice on the sigmoid (region-based training).

    Args:
        batch_dice: See :class:`SoftDiceLoss`.
        weight_bce: Weight of the BCE term.
        weight_dice: Weight of the Dice term.
        smooth: Dice smoothing.
    """

    def __init__(self, batch_dice: bool, weight_bce: float = 1.0, weight_dice: float = 1.0,
                 smooth: float = 1e-5) -> None:
        super().__init__()
        self.weight_bce = weight_bce
        self.weight_dice = weight_dice
        self.dice = SoftDiceLoss(batch_dice=batch_dice, include_background=True, smooth=smooth)

    def forward(self, logits: Tensor, target: Tensor, loss_mask: Tensor | None = None) -> Tensor:
        """Compute the loss.

        Args:
            logits: ``(B, R, *spatial)`` raw network outputs, one per region.
            target: Float region masks ``(B, R, *spatial)``.
            loss_mask: Optional ``(B, 1, *spatial)`` float mask. The BCE is the mean over unmasked
                (voxel, region) elements, so it has the same scale with and without an ignore label.
        """
        target = target.to(logits.dtype)
        if loss_mask is None:
            bce_loss = functional.binary_cross_entropy_with_logits(logits, target)
        else:
            bce = functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
            mask = loss_mask.to(bce.dtype)
            bce_loss = (bce * mask).sum() / (mask.sum() * logits.shape[1]).clamp_min(1)
        dice_loss = self.dice(torch.sigmoid(logits), target, loss_mask)
        return self.weight_bce * bce_loss + self.weight_dice * dice_loss


class SegmentationLoss(nn.Module):
    """A Dice+CE or Dice+BCE loss that takes the raw segmentation and builds targets with a :class:`LabelScheme`.

    Args:
        scheme: Label handling of the dataset.
        loss: :class:`DiceCELoss` or :class:`DiceBCELoss` taking ``(logits, target, loss_mask)``.
    """

    def __init__(self, scheme: LabelScheme, loss: nn.Module) -> None:
        super().__init__()
        self.scheme = scheme
        self.loss = loss

    def forward(self, logits: Tensor, seg: Tensor) -> Tensor:
        """Loss of ``logits`` ``(B, C, *spatial)`` against the integer label map ``seg`` ``(B, 1, *spatial)``."""
        target, mask = self.scheme.targets_for_loss(seg)
        return self.loss(logits, target, mask)


def deep_supervision_weights(num_outputs: int) -> list[float]:
    """Loss weights of the deep-supervision outputs, full resolution first.

    ``1 / 2**i``, with the lowest-resolution output set to 0, normalised to sum 1 (nnU-Net v2). With a single
    output the weight is ``[1.0]`` (nnU-Net would divide by zero there).

    Raises:
        ValueError: ``num_outputs < 1``.
    """
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be at least 1, got {num_outputs}")
    if num_outputs == 1:
        return [1.0]
    weights = [1.0 / 2**i for i in range(num_outputs)]
    weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


def deep_supervision_scales(spec: UNetSpec) -> list[tuple[float, ...]]:
    """Per-axis scale of each decoder output relative to the input, full resolution first.

    ``1 / cumprod(strides)`` without the bottleneck: one entry per decoder output (``num_stages - 1``).
    """
    cumulative = np.cumprod(np.asarray(spec.strides, dtype=np.float64), axis=0)[:-1]
    return [tuple(float(1.0 / s) for s in row) for row in cumulative]


def downsample_targets(seg: Tensor, scales: Sequence[Sequence[float]]) -> list[Tensor]:
    """Nearest-exact downsampled copies of a segmentation, one per deep-supervision scale.

    Args:
        seg: Label map or masks; the last ``len(scales[0])`` axes are spatial, leading axes are kept
            (``(B, 1, *spatial)`` or ``(1, *spatial)``).
        scales: Per-axis scale factors per output, e.g. from :func:`deep_supervision_scales`.

    Returns:
        One tensor per scale, same dtype as ``seg``; spatial size ``round(size * scale)``. A scale of all
        ones returns ``seg`` itself.
    """
    results = []
    for scale in scales:
        spatial = seg.shape[seg.ndim - len(scale):]
        if all(s == 1 for s in scale):
            results.append(seg)
            continue
        results.append(_resize_nearest(seg, tuple(round(n * s) for n, s in zip(spatial, scale, strict=True))))
    return results


def _resize_nearest(seg: Tensor, size: tuple[int, ...]) -> Tensor:
    lead = seg.shape[: seg.ndim - len(size)]
    flat = seg.reshape(1, -1, *seg.shape[seg.ndim - len(size):])
    # interpolate has no integer kernels; float32 holds label values exactly up to 2**24.
    resized = functional.interpolate(flat.float(), size=size, mode="nearest-exact")
    return resized.reshape(*lead, *size).to(seg.dtype)


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of a loss over the outputs of every decoder level.

    Levels with weight 0 are skipped entirely (no loss, no target downsampling).

    Args:
        loss: Loss taking ``(output, target)``.
        weights: One weight per output, full resolution first.
    """

    def __init__(self, loss: nn.Module, weights: Sequence[float]) -> None:
        super().__init__()
        if not weights or not any(w != 0 for w in weights):
            raise ValueError("deep supervision needs at least one non-zero weight")
        self.loss = loss
        self.weights = tuple(float(w) for w in weights)

    def forward(self, outputs: Sequence[Tensor], targets: Tensor | Sequence[Tensor]) -> Tensor:
        """Compute the weighted loss.

        Args:
            outputs: One tensor ``(B, C, *spatial)`` per level, full resolution first.
            targets: One target per level, or a single full-resolution label map ``(B, 1, *spatial)`` that
                is downsampled (nearest-exact) to each level's output size.

        Raises:
            ValueError: The number of outputs or targets differs from the number of weights.
        """
        if isinstance(outputs, Tensor) or len(outputs) != len(self.weights):
            got = "a single tensor" if isinstance(outputs, Tensor) else f"{len(outputs)} outputs"
            raise ValueError(f"deep supervision expects a list of {len(self.weights)} outputs, got {got}")
        if not isinstance(targets, Tensor) and len(targets) != len(self.weights):
            raise ValueError(f"deep supervision expects {len(self.weights)} targets, got {len(targets)}")
        total: Tensor | None = None
        for level, (weight, output) in enumerate(zip(self.weights, outputs, strict=True)):
            if weight == 0:
                continue
            if isinstance(targets, Tensor):
                size = tuple(output.shape[2:])
                target = targets if tuple(targets.shape[2:]) == size else _resize_nearest(targets, size)
            else:
                target = targets[level]
            term = weight * self.loss(output, target)
            total = term if total is None else total + term
        assert total is not None  # guaranteed by the non-zero weight check in __init__
        return total


def build_loss(scheme: LabelScheme, batch_dice: bool, deep_supervision_levels: int | None,
               weights: Mapping[str, float] | None = None) -> nn.Module:
    """The training loss of a configuration, as nnU-Net v2 builds it.

    Softmax labels: ``1 * CE + 1 * (-soft Dice)`` without background; region-based: ``1 * BCE + 1 *
    (-soft Dice)`` over all regions; ignore-label voxels masked in both terms.

    Args:
        scheme: Label handling of the dataset.
        batch_dice: The configuration's ``batch_dice`` (from the plan).
        deep_supervision_levels: Number of network outputs with deep supervision, ``None`` without.
        weights: Term weights by name, ``dice`` and ``ce`` (the BCE for regions); missing terms weigh 1.

    Returns:
        A module called as ``loss(outputs, seg)``: ``outputs`` the network's logits (a tensor, or the list
        of deep-supervision outputs), ``seg`` the integer label map ``(B, 1, *spatial)`` at full resolution
        or, with deep supervision, a list of label maps matching the outputs.

    Raises:
        ConfigError: A weight names an unknown term.
    """
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(LOSS_TERMS))
    if unknown:
        raise ConfigError(f"unknown loss term '{unknown[0]}' in the recipe's loss_weights; segmentation has "
                          f"{', '.join(LOSS_TERMS)}")
    ce, dice = weights.get("ce", 1.0), weights.get("dice", 1.0)
    base: nn.Module = DiceBCELoss(batch_dice, ce, dice) if scheme.region_based else DiceCELoss(batch_dice, ce, dice)
    loss: nn.Module = SegmentationLoss(scheme, base)
    if deep_supervision_levels is not None:
        loss = DeepSupervisionLoss(loss, deep_supervision_weights(deep_supervision_levels))
    return loss
