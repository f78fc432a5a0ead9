"""The U-Net built from a :class:`UNetSpec`: encoder, decoder and heads as separate, injectable parts.

``build_network`` (re-exported from :mod:`autounet.networks.registry`) builds whatever network a plan names;
this module registers ``unet``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from autounet.errors import CheckpointError
from autounet.networks.blocks import ConvNormAct, ResidualBlock, transposed_conv_class
from autounet.networks.heads import SegmentationHeads
from autounet.networks.registry import build_network, register_network
from autounet.networks.spec import UNetSpec

__all__ = ["Decoder", "Encoder", "UNet", "build_network", "build_unet", "full_resolution_head_key",
           "inference_state_dict", "init_weights"]


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
    """Transposed-conv upsampling, concatenation with the skip, conv stack, per decoder level; returns the
    feature maps of its levels (heads turn them into outputs)."""

    def __init__(self, spec: UNetSpec) -> None:
        super().__init__()
        upsamplers, stages = [], []
        for level in range(spec.num_stages - 1, 0, -1):  # from the bottleneck up
            below, above = spec.features_per_stage[level], spec.features_per_stage[level - 1]
            stride = spec.strides[level]
            upsamplers.append(transposed_conv_class(spec.ndim)(below, above, tuple(stride), tuple(stride), bias=True))
            n_convs = spec.convs_per_decoder_stage[spec.num_stages - 1 - level]
            convs = [ConvNormAct(spec.ndim, 2 * above if i == 0 else above, above, spec.kernel_sizes[level - 1],
                                 [1] * spec.ndim) for i in range(n_convs)]
            stages.append(nn.Sequential(*convs))
        self.upsamplers = nn.ModuleList(upsamplers)
        self.stages = nn.ModuleList(stages)

    def forward(self, skips: list[torch.Tensor], num_levels: int | None = None) -> list[torch.Tensor]:
        """Feature maps of the decoder levels, full resolution first.

        Args:
            skips: The encoder's outputs, highest resolution first.
            num_levels: Keep only this many levels from full resolution down (``None``: all); lower levels are
                then freed as soon as the next one is computed.
        """
        keep = len(self.stages) if num_levels is None else num_levels
        x = skips[-1]
        features = []
        for index, (upsample, stage) in enumerate(zip(self.upsamplers, self.stages, strict=True)):
            x = stage(torch.cat((upsample(x), skips[-(index + 2)]), dim=1))
            if index >= len(self.stages) - keep:
                features.append(x)
        return features[::-1]


class UNet(nn.Module):
    """Encoder + decoder + heads, each injected or built from the spec (``None``), torchvision-style.

    ``forward`` returns logits ``(B, num_outputs, *spatial)`` or, with deep supervision, a list of such tensors
    at decreasing resolution (full resolution first).

    Args:
        spec: Topology from the plan.
        in_channels: Input channels.
        num_outputs: Output channels of the default heads.
        deep_supervision: Whether the default heads give one output per decoder level.
        encoder: Maps the input to its stage outputs (skips), highest resolution first.
        decoder: Maps the skips to decoder feature maps, full resolution first.
        heads: Maps decoder features to outputs; must say how many feature maps it needs (``num_inputs``).
    """

    def __init__(self, spec: UNetSpec, in_channels: int, num_outputs: int, deep_supervision: bool = True,
                 encoder: nn.Module | None = None, decoder: Decoder | None = None,
                 heads: SegmentationHeads | None = None) -> None:
        super().__init__()
        self.spec = spec
        # Registration order (encoder, decoder, heads) is initialisation order: it matches the layout where
        # the decoder owned the heads, so a seed gives the same weights as before.
        self.encoder = encoder if encoder is not None else Encoder(spec, in_channels)
        self.decoder = decoder if decoder is not None else Decoder(spec)
        self.heads = heads if heads is not None else SegmentationHeads(spec, num_outputs, deep_supervision)
        self.apply(init_weights)
        self._register_load_state_dict_pre_hook(_migrate_head_keys)

    @property
    def deep_supervision(self) -> bool:
        """Whether forward returns one output per decoder level."""
        return bool(getattr(self.heads, "deep_supervision", False))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Segment ``x`` of shape ``(B, C, *spatial)``; spatial size divisible by the total stride."""
        return self.heads(self.decoder(self.encoder(x), self.heads.num_inputs))

    def parameter_count(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


# Checkpoints written before the heads left the decoder name them ``decoder.heads.N``; N has kept its meaning.
_OLD_HEAD_PREFIX = "decoder.heads."
_HEAD_PREFIX = "heads.levels."


def _migrate_head_keys(state: dict[str, torch.Tensor], prefix: str, *_: object) -> None:
    """``load_state_dict`` pre-hook: rename old head keys in place, so checkpoints of any age load."""
    old = prefix + _OLD_HEAD_PREFIX
    for key in [k for k in state if k.startswith(old)]:
        state[prefix + _HEAD_PREFIX + key[len(old):]] = state.pop(key)


# A head key, optionally inside a task branch of a multi-task network (``branches.T.heads.levels.N``).
_HEAD_KEY = re.compile(r"^((?:branches\.\d+\.)?)(?:decoder\.heads|heads\.levels)\.(\d+)\.(.+)$")


def inference_state_dict(state: dict[str, torch.Tensor], source: Path | None = None) -> dict[str, torch.Tensor]:
    """Map a U-Net state dict (deep supervision or not, old or new key names) to the layout of the network
    built with ``deep_supervision=False``: only the full-resolution head, as ``heads.levels.0`` (in every task
    branch of an early-branching network).

    Args:
        state: ``network`` entry of a checkpoint.
        source: The checkpoint file, for error messages.

    Raises:
        CheckpointError: The state dict holds no segmentation head.
    """
    last: dict[str, int] = {}  # branch prefix -> index of its full-resolution head
    for key in state:
        if (match := _HEAD_KEY.match(key)) is not None:
            last[match.group(1)] = max(last.get(match.group(1), -1), int(match.group(2)))
    if not last:
        raise CheckpointError("the network weights hold no segmentation head (heads.levels.* or decoder.heads.*)",
                              source)
    mapped = {}
    for key, value in state.items():
        match = _HEAD_KEY.match(key)
        if match is None:
            mapped[key] = value
        elif int(match.group(2)) == last[match.group(1)]:
            mapped[f"{match.group(1)}{_HEAD_PREFIX}0.{match.group(3)}"] = value
    return mapped


def full_resolution_head_key(num_heads: int) -> str:
    """The state-dict prefix of the full-resolution head of a U-Net with ``num_heads`` heads (its last)."""
    return f"{_HEAD_PREFIX}{num_heads - 1}"


def init_weights(module: nn.Module) -> None:
    """He-initialise a module's convolutions (``network.apply(init_weights)``); biases start at zero."""
    # He initialisation with the leaky-ReLU slope, as the nonlinearity after every conv is leaky ReLU.
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@register_network("unet")
def build_unet(spec: UNetSpec, in_channels: int, num_outputs: int, deep_supervision: bool = True) -> UNet:
    """The U-Net a plan describes (plain or residual encoder, per ``spec.encoder``).

    Args:
        spec: Topology from the plan.
        in_channels: Input channels (image channels, plus one-hot previous-stage channels for a cascade).
        num_outputs: Output channels (classes incl. background, or regions).
        deep_supervision: Return outputs of every decoder level for the deep-supervision loss.
    """
    return UNet(spec, in_channels, num_outputs, deep_supervision)
