"""Networks for datasets with several label maps (tasks).

*Late branching* needs no network of its own: the plain ``unet`` with one output channel per class of every
task is a shared decoder with one 1x1 head per task (a 1x1 convolution with the tasks' channels stacked is
exactly the tasks' separate 1x1 convolutions side by side). The objective splits its channels by task.

*Early branching* (``unet_early_branching``) shares only the encoder: every task gets a decoder and heads of
its own, so the tasks compete for nothing above the bottleneck. Its outputs are the branches' outputs stacked
along the channel axis in task order, so sliding-window inference, mirroring, fold averaging and ONNX export
treat it like any U-Net.
"""

from __future__ import annotations

import torch
from torch import nn

from autounet.networks.heads import SegmentationHeads
from autounet.networks.registry import register_network
from autounet.networks.spec import UNetSpec
from autounet.networks.unet import Decoder, Encoder, init_weights

__all__ = ["DecoderBranch", "EarlyBranchingUNet", "build_early_branching_unet"]


class DecoderBranch(nn.Module):
    """One task's decoder and heads."""

    def __init__(self, spec: UNetSpec, num_outputs: int, deep_supervision: bool) -> None:
        super().__init__()
        self.decoder = Decoder(spec)
        self.heads = SegmentationHeads(spec, num_outputs, deep_supervision)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """The task's logits from the shared encoder's skips."""
        return self.heads(self.decoder(skips, self.heads.num_inputs))


class EarlyBranchingUNet(nn.Module):
    """A shared encoder and one decoder with heads per task; outputs stacked along channels in task order.

    Args:
        spec: Topology from the plan; ``spec.task_outputs`` gives each branch's output channels.
        in_channels: Input channels.
        num_outputs: All output channels; must equal ``sum(spec.task_outputs)``.
        deep_supervision: Every branch returns one output per decoder level (stacked level by level).

    Raises:
        ValueError: The spec names fewer than two tasks, or their channels do not add up to ``num_outputs``.
    """

    def __init__(self, spec: UNetSpec, in_channels: int, num_outputs: int, deep_supervision: bool = True) -> None:
        super().__init__()
        if len(spec.task_outputs) < 2:
            raise ValueError("early branching needs a dataset with at least two label maps (spec.task_outputs)")
        if sum(spec.task_outputs) != num_outputs:
            raise ValueError(f"the tasks' output channels {spec.task_outputs} do not add up to {num_outputs}")
        self.spec = spec
        self.encoder = Encoder(spec, in_channels)
        self.branches = nn.ModuleList(DecoderBranch(spec, outputs, deep_supervision)
                                      for outputs in spec.task_outputs)
        self.apply(init_weights)

    @property
    def deep_supervision(self) -> bool:
        """Whether forward returns one output per decoder level."""
        return bool(self.branches[0].heads.deep_supervision)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits of every task stacked along channels (a list of such tensors with deep supervision)."""
        skips = self.encoder(x)
        outputs = [branch(skips) for branch in self.branches]
        if isinstance(outputs[0], torch.Tensor):
            return torch.cat(outputs, dim=1)  # type: ignore[arg-type]
        return [torch.cat(level, dim=1) for level in zip(*outputs, strict=True)]

    def parameter_count(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


@register_network("unet_early_branching")
def build_early_branching_unet(spec: UNetSpec, in_channels: int, num_outputs: int,
                               deep_supervision: bool = True) -> EarlyBranchingUNet:
    """The early-branching multi-task U-Net a plan describes (see :class:`EarlyBranchingUNet`)."""
    return EarlyBranchingUNet(spec, in_channels, num_outputs, deep_supervision)
