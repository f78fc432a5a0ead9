"""The random draws of one augmented batch, recorded so the batch can be replayed exactly.

All values are drawn on the CPU from the caller's ``torch.Generator`` in a fixed order (every value is drawn
for every sample whether or not its transform is switched on), so the same seed gives the same parameters on
any device and the number of draws per batch never depends on earlier outcomes. Image-sized random fields
(noise, elastic displacement) are drawn while applying, on the image's device, from generators seeded with
the recorded ``noise_seed`` / ``elastic_seed``: reproducible per device type, not across CPU and GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from autounet.data.augmentation.config import AugmentationConfig, Range

__all__ = ["AugmentationParameters", "sample_parameters", "spatial_transform_axes"]

_SEED_LIMIT = 2**62


@dataclass
class AugmentationParameters:
    """Per-sample parameters of one batch; CPU tensors, first dimension ``B`` (batch size).

    A value is meaningful only where its mask (the ``do_...`` / ``..._channels`` tensor) is true. ``R`` is
    the number of rotation axes (1 in 2D, 3 in 3D), ``S`` the number of axes spatial transforms act on (2 in
    2D and dummy 2D, 3 in 3D), ``C`` the number of image channels, ``D`` the number of spatial axes.

    Attributes:
        do_rotation: ``(B,)`` bool.
        rotation_angles: ``(B, R)`` float64, radians, about axes 0, 1, 2 (3D) or in-plane.
        do_scaling: ``(B,)`` bool.
        scaling_factor: ``(B,)`` float64, isotropic zoom (> 1: larger region, smaller objects).
        do_elastic: ``(B,)`` bool.
        elastic_alpha: ``(B, S)`` float64, largest displacement per displaced axis, voxels.
        elastic_sigma: ``(B, S)`` float64, smoothing sigma of each displacement component, voxels.
        elastic_seed: Seed of the displacement noise fields.
        do_noise: ``(B,)`` bool.
        noise_std: ``(B,)`` float64.
        noise_seed: Seed of the additive noise.
        blur_channels: ``(B, C)`` bool, channels blurred.
        blur_sigma: ``(B, C, D)`` float64, voxels.
        do_brightness: ``(B,)`` bool.
        brightness_factor: ``(B, C)`` float64.
        do_contrast: ``(B,)`` bool.
        contrast_factor: ``(B, C)`` float64.
        low_resolution_channels: ``(B, C)`` bool, channels resampled.
        low_resolution_zoom: ``(B, C)`` float64, downsampling factor (all non-ignored axes).
        do_gamma_inverted: ``(B,)`` bool.
        gamma_inverted_value: ``(B, C)`` float64.
        do_gamma: ``(B,)`` bool.
        gamma_value: ``(B, C)`` float64.
        mirror: ``(B, D)`` bool, axes flipped.
    """

    do_rotation: torch.Tensor
    rotation_angles: torch.Tensor
    do_scaling: torch.Tensor
    scaling_factor: torch.Tensor
    do_elastic: torch.Tensor
    elastic_alpha: torch.Tensor
    elastic_sigma: torch.Tensor
    elastic_seed: int
    do_noise: torch.Tensor
    noise_std: torch.Tensor
    noise_seed: int
    blur_channels: torch.Tensor
    blur_sigma: torch.Tensor
    do_brightness: torch.Tensor
    brightness_factor: torch.Tensor
    do_contrast: torch.Tensor
    contrast_factor: torch.Tensor
    low_resolution_channels: torch.Tensor
    low_resolution_zoom: torch.Tensor
    do_gamma_inverted: torch.Tensor
    gamma_inverted_value: torch.Tensor
    do_gamma: torch.Tensor
    gamma_value: torch.Tensor
    mirror: torch.Tensor

    @property
    def batch_size(self) -> int:
        """Number of samples ``B``."""
        return int(self.do_rotation.shape[0])

    @property
    def num_channels(self) -> int:
        """Number of image channels ``C``."""
        return int(self.blur_channels.shape[1])

    @property
    def do_spatial(self) -> torch.Tensor:
        """``(B,)`` bool: samples that are resampled through a grid rather than centre-cropped."""
        return self.do_rotation | self.do_scaling | self.do_elastic


class _Draw:
    """Uniform draws in float64 from one CPU generator, in call order."""

    def __init__(self, generator: torch.Generator) -> None:
        if generator.device.type != "cpu":
            raise ValueError("augmentation parameters are drawn from a CPU torch.Generator, so that a seed means "
                             f"the same batch on every device; got a generator on {generator.device}")
        self.generator = generator

    def uniform(self, shape: tuple[int, ...], value_range: Range) -> torch.Tensor:
        low, high = value_range
        return low + (high - low) * torch.rand(shape, generator=self.generator, dtype=torch.float64)

    def coin(self, shape: tuple[int, ...], probability: float) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, dtype=torch.float64) < probability

    def bg_contrast(self, shape: tuple[int, ...], value_range: Range) -> torch.Tensor:
        # batchgenerators' BGContrast: shrink or enlarge with equal odds, whatever the range's asymmetry.
        low, high = value_range
        pick_low = self.coin(shape, 0.5) & (low < 1.0)
        below = self.uniform(shape, (low, min(1.0, high)))
        above = self.uniform(shape, (max(low, 1.0), high))
        return torch.where(pick_low, below, above)

    def seed(self) -> int:
        return int(torch.randint(0, _SEED_LIMIT, (1,), generator=self.generator).item())


def sample_parameters(config: AugmentationConfig, batch_size: int, num_channels: int,
                      generator: torch.Generator) -> AugmentationParameters:
    """Draw the parameters of one batch.

    Args:
        config: Augmentation settings.
        batch_size: Samples in the batch (>= 1).
        num_channels: Image channels (>= 1).
        generator: CPU generator; advanced by a fixed number of draws per call.

    Returns:
        The parameters, CPU tensors.

    Raises:
        ValueError: Non-positive sizes, or a generator that is not on the CPU.
    """
    if batch_size < 1 or num_channels < 1:
        raise ValueError(f"need batch_size >= 1 and num_channels >= 1, got {batch_size}, {num_channels}")
    draw = _Draw(generator)
    # spatial draws first, then the intensity ones, each in pipeline order
    spatial = _draw_spatial(draw, config, batch_size)
    return AugmentationParameters(**spatial, **_draw_intensity(draw, config, batch_size, num_channels))


def _draw_spatial(draw: _Draw, config: AugmentationConfig, b: int) -> dict[str, torch.Tensor | int]:
    spatial_axes = spatial_transform_axes(config)
    edges = torch.tensor([float(config.patch_size[a]) for a in spatial_axes], dtype=torch.float64)
    return {
        "rotation_angles": torch.stack([draw.uniform((b,), r) for r in config.rotation_ranges], dim=1),
        "do_rotation": draw.coin((b,), config.p_rotation),
        "do_scaling": draw.coin((b,), config.p_scaling),
        "scaling_factor": draw.uniform((b,), config.scaling_range),
        "do_elastic": draw.coin((b,), config.p_elastic),
        "elastic_alpha": draw.uniform((b, len(spatial_axes)), config.elastic_alpha_range) * edges,
        "elastic_sigma": draw.uniform((b, len(spatial_axes)), config.elastic_sigma_range) * edges,
        "elastic_seed": draw.seed(),
    }


def _draw_intensity(draw: _Draw, config: AugmentationConfig, b: int, c: int) -> dict[str, torch.Tensor | int]:
    ndim = config.ndim
    values: dict[str, torch.Tensor | int] = {
        "do_noise": draw.coin((b,), config.p_noise),
        "noise_std": draw.uniform((b,), config.noise_std_range),
        "noise_seed": draw.seed(),
        "blur_channels": draw.coin((b, 1), config.p_blur) & draw.coin((b, c), config.p_blur_per_channel),
        "blur_sigma": draw.uniform((b, c, ndim), config.blur_sigma_range),
        "do_brightness": draw.coin((b,), config.p_brightness),
        "brightness_factor": draw.bg_contrast((b, c), config.brightness_range),
        "do_contrast": draw.coin((b,), config.p_contrast),
        "contrast_factor": draw.bg_contrast((b, c), config.contrast_range),
        "low_resolution_channels": (draw.coin((b, 1), config.p_low_resolution)
                                    & draw.coin((b, c), config.p_low_resolution_per_channel)),
        "low_resolution_zoom": draw.uniform((b, c), config.low_resolution_zoom_range),
        "do_gamma_inverted": draw.coin((b,), config.p_gamma_inverted),
        "gamma_inverted_value": draw.bg_contrast((b, c), config.gamma_range),
        "do_gamma": draw.coin((b,), config.p_gamma),
        "gamma_value": draw.bg_contrast((b, c), config.gamma_range),
    }
    allowed = torch.tensor([axis in config.mirror_axes for axis in range(ndim)])
    values["mirror"] = draw.coin((b, ndim), config.p_mirror_per_axis) & allowed
    return values


def spatial_transform_axes(config: AugmentationConfig) -> tuple[int, ...]:
    """Spatial axes the rotation, scaling and elastic deformation act on (in-plane axes under dummy 2D)."""
    return (1, 2) if config.dummy_2d else tuple(range(config.ndim))
