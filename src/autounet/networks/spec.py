"""The network specification a plan carries: everything needed to build the U-Net, nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["EncoderKind", "UNetSpec"]

EncoderKind = Literal["plain", "residual"]


@dataclass(frozen=True)
class UNetSpec:
    """Topology of a U-Net, as planned from the data.

    Attributes:
        ndim: 2 or 3 spatial dimensions.
        encoder: ``"plain"`` (stacked conv-norm-nonlinearity) or ``"residual"`` (ResEnc: residual blocks).
        features_per_stage: Feature maps per resolution stage, highest resolution first.
        kernel_sizes: Convolution kernel per stage (per spatial axis).
        strides: Downsampling stride of each stage's first convolution (the first stage has 1s).
        blocks_per_stage: Encoder convolutions (plain) or residual blocks (residual) per stage.
        convs_per_decoder_stage: Convolutions per decoder stage, from the bottom up (one fewer stage).
        kind: Registry key of the network built from this spec (:func:`autounet.networks.build_network`);
            plans written before it existed mean ``"unet"``.
        task_outputs: Output channels of each task of a dataset with several label maps, in the order of its
            :class:`~autounet.dataset.labels.OutputLayout` (they sum to the network's outputs); empty for one
            label map. Networks that branch per task (``unet_early_branching``) build one branch per entry.
    """

    ndim: int
    encoder: EncoderKind
    features_per_stage: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    blocks_per_stage: tuple[int, ...]
    convs_per_decoder_stage: tuple[int, ...]
    kind: str = "unet"
    # Left out of plans files while empty: single-map plans stay as they were (networks cannot import io).
    task_outputs: tuple[int, ...] = field(default=(), metadata={"omit_when_default": True})

    def __post_init__(self) -> None:
        n = len(self.features_per_stage)
        if self.ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {self.ndim}")
        if not (len(self.kernel_sizes) == len(self.strides) == len(self.blocks_per_stage) == n):
            raise ValueError("features_per_stage, kernel_sizes, strides and blocks_per_stage need one entry per stage")
        if len(self.convs_per_decoder_stage) != n - 1:
            raise ValueError(f"convs_per_decoder_stage needs {n - 1} entries, got {len(self.convs_per_decoder_stage)}")
        if any(len(k) != self.ndim for k in self.kernel_sizes) or any(len(s) != self.ndim for s in self.strides):
            raise ValueError(f"kernel sizes and strides must have {self.ndim} values each")
        if any(outputs < 1 for outputs in self.task_outputs):
            raise ValueError(f"every task needs at least one output channel, got {self.task_outputs}")

    @property
    def num_stages(self) -> int:
        """Number of resolution stages (encoder depth)."""
        return len(self.features_per_stage)

    def total_downsampling(self) -> tuple[int, ...]:
        """Product of all strides per axis: patch sizes must be divisible by it."""
        totals = [1] * self.ndim
        for stride in self.strides:
            totals = [t * s for t, s in zip(totals, stride, strict=True)]
        return tuple(totals)
