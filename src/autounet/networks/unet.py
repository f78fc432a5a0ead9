"""The U-Net built from a :class:`UNetSpec`: encoder, decoder and segmentation heads as separate parts."""

from __future__ import annotations

import torch
from torch import nn

from autounet.networks.blocks import ConvNormAct, ResidualBlock, conv_class, transposed_conv_class
from autounet.networks.spec import UNetSpec

__all__ = ["Decoder", "Encoder", "UNet", "build_network"]


class Encoder(nn.Module):
    """Stages of plain conv stacks or residual blocks; returns the output of every stage (skips)."""

    def __init__(self, spec: UNetSpec, in_channels: int) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        channels = in_channels
        if spec.encoder == "residual":
            # A stem lifts the input to the first stage's width so every residual block is uniform.
            self.stem: nn.Module = ConvNormAct(spec.ndim, in_channels, spec.features_per_stage[0],
                                               spec.kernel_sizes[0], [1] * spec.ndim)
            channels = spec.features_per_stage[0]
        else:
            self.stem = nn.Identity()
        for stage in range(spec.num_stages):
            features, kernel, stride = spec.features_per_stage[stage], spec.kernel_sizes[stage], spec.strides[stage]
            blocks: list[nn.Module] = []
            for index in range(spec.blocks_per_stage[stage]):
                block_stride = stride if index == 0 else [1] * spec.ndim
                if spec.encoder == "residual":
                    blocks.append(ResidualBlock(spec.ndim, channels, features, kernel, block_stride))
                else:
                    blocks.append(ConvNormAct(spec.ndim, channels, features, kernel, block_stride))
                channels = features
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of every stage, highest resolution first."""
        x = self.stem(x)
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


class Decoder(nn.Module):
    """Transposed-conv upsampling, concatenation with the skip, conv stack; a 1x1 head per stage."""

    def __init__(self, spec: UNetSpec, num_outputs: int, deep_supervision: bool) -> None:
        super().__init__()
        self.deep_supervision = deep_supervision
        upsamplers, stages, heads = [], [], []
        for level in range(spec.num_stages - 1, 0, -1):  # from the bottleneck up
            below, above = spec.features_per_stage[level], spec.features_per_stage[level - 1]
            stride = spec.strides[level]
            upsamplers.append(transposed_conv_class(spec.ndim)(below, above, tuple(stride), tuple(stride), bias=True))
            n_convs = spec.convs_per_decoder_stage[spec.num_stages - 1 - level]
            convs = [ConvNormAct(spec.ndim, 2 * above if i == 0 else above, above, spec.kernel_sizes[level - 1],
                                 [1] * spec.ndim) for i in range(n_convs)]
            stages.append(nn.Sequential(*convs))
            heads.append(conv_class(spec.ndim)(above, num_outputs, 1, 1, 0, bias=True))
        self.upsamplers = nn.ModuleList(upsamplers)
        self.stages = nn.ModuleList(stages)
        # Without deep supervision only the last head exists, so the network holds no unused weights.
        self.heads = nn.ModuleList(heads if deep_supervision else heads[-1:])

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """Logits at full resolution, or (deep supervision) a list from full resolution downwards."""
        x = skips[-1]
        outputs = []
        for index, (upsample, stage) in enumerate(zip(self.upsamplers, self.stages, strict=True)):
            x = stage(torch.cat((upsample(x), skips[-(index + 2)]), dim=1))
            if self.deep_supervision:
                outputs.append(self.heads[index](x))
        if not self.deep_supervision:
            return self.heads[-1](x)
        return outputs[::-1]


class UNet(nn.Module):
    """Encoder + decoder. ``forward`` returns logits ``(B, num_outputs, *spatial)`` or, with deep
    supervision, a list of such tensors at decreasing resolution (full resolution first)."""

    def __init__(self, spec: UNetSpec, in_channels: int, num_outputs: int, deep_supervision: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = Encoder(spec, in_channels)
        self.decoder = Decoder(spec, num_outputs, deep_supervision)
        self.apply(_init_weights)

    @property
    def deep_supervision(self) -> bool:
        """Whether forward returns one output per decoder level."""
        return self.decoder.deep_supervision

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Segment ``x`` of shape ``(B, C, *spatial)``; spatial size divisible by the total stride."""
        return self.decoder(self.encoder(x))

    def parameter_count(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _init_weights(module: nn.Module) -> None:
    # He initialisation with the leaky-ReLU slope, as the nonlinearity after every conv is leaky ReLU.
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_network(spec: UNetSpec, in_channels: int, num_outputs: int, deep_supervision: bool = True) -> UNet:
    """Build the U-Net a plan describes.

    Args:
        spec: Topology from the plan.
        in_channels: Input channels (image channels, plus one-hot previous-stage channels for a cascade).
        num_outputs: Output channels (classes incl. background, or regions).
        deep_supervision: Return outputs of every decoder level for the deep-supervision loss.
    """
    return UNet(spec, in_channels, num_outputs, deep_supervision)
