"""The augmentation pipeline: nnU-Net v2's transforms in nnU-Net's order, run batched: on the GPU in the trainer,
on the CPU in the loader's worker threads (``BatchLoader(augment=...)``).

Order (nnU-Net v2 with batchgeneratorsv2): spatial (rotation, scaling, elastic; centre crop to the final
patch), Gaussian noise, Gaussian blur, brightness, contrast, low-resolution simulation, gamma of the
inverted image, gamma, mirroring, then masking of ``masked_channels`` and removal of the padding label.

``BatchAugmenter.sample`` draws every random number of a batch from the caller's CPU generator into an
:class:`AugmentationParameters`; ``apply`` is a deterministic function of those parameters, so a batch can be
replayed exactly (``apply(params, image, seg)`` twice gives identical tensors on the same device).

Deviations from nnU-Net, all deliberate: parameters come from one seeded generator per batch rather than the
global NumPy state of each worker (same distributions, not the same numbers); a resampled sample is centred
on the same voxel as the plain centre crop (nnU-Net's differ by up to half a voxel when the sampled and final
sizes differ by an odd number); and elastic deformation (off in nnU-Net) uses our own parametrisation. Images
are resampled linearly and labels per label linearly then argmax, both as batchgeneratorsv2 does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from autounet.data.augmentation import intensity
from autounet.data.augmentation.config import AugmentationConfig
from autounet.data.augmentation.params import AugmentationParameters, sample_parameters
from autounet.data.augmentation.spatial import centre_crop_slices, spatial_transform

__all__ = ["AUGMENTATION_STEPS", "AugmentationStep", "BatchAugmenter", "StepFunction"]


class StepFunction(Protocol):
    """One pipeline step: returns the transformed ``(image, seg)``; may modify its inputs in place."""

    def __call__(self, image: torch.Tensor, seg: torch.Tensor, params: AugmentationParameters,
                 config: AugmentationConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the step to a batch."""
        ...


class _ImageFunction(Protocol):
    def __call__(self, image: torch.Tensor, params: AugmentationParameters,
                 config: AugmentationConfig) -> torch.Tensor: ...


@dataclass(frozen=True)
class AugmentationStep:
    """A named step of the pipeline.

    Attributes:
        name: Identifier (used in logs and tests).
        switches: Probability fields of :class:`AugmentationConfig` that turn the step on; empty for steps
            that always run.
        function: The step itself.
    """

    name: str
    switches: tuple[str, ...]
    function: StepFunction


def _image_only(function: _ImageFunction) -> StepFunction:
    def step(image: torch.Tensor, seg: torch.Tensor, params: AugmentationParameters,
             config: AugmentationConfig) -> tuple[torch.Tensor, torch.Tensor]:
        return function(image, params, config), seg

    return step


def mirror(image: torch.Tensor, seg: torch.Tensor, params: AugmentationParameters,
           config: AugmentationConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip image and segmentation of each sample along its drawn axes, in place.

    Samples are grouped by their combination of flipped axes (at most 8), so each one is copied once.
    """
    combinations, group = torch.unique(params.mirror.to(torch.uint8), dim=0, return_inverse=True)
    for number, combination in enumerate(combinations.tolist()):
        dims = [2 + axis for axis, flipped in enumerate(combination) if flipped]
        if not dims:
            continue
        members = (group == number).nonzero().flatten()
        first, last = int(members[0]), int(members[-1])
        if last - first + 1 == members.numel():
            for tensor in (image, seg):
                rows = tensor[first:last + 1]
                rows.copy_(rows.flip(dims))
            continue
        index = members.to(image.device)
        image.index_copy_(0, index, image.index_select(0, index).flip(dims))
        seg.index_copy_(0, index, seg.index_select(0, index).flip(dims))
    return image, seg


def finalize_labels(image: torch.Tensor, seg: torch.Tensor, params: AugmentationParameters,
                    config: AugmentationConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero ``masked_channels`` outside the image (first label channel < 0), then replace the padding label by 0."""
    if config.masked_channels:
        if max(config.masked_channels) >= image.shape[1]:
            raise ValueError(f"masked_channels {config.masked_channels} exceed the {image.shape[1]} image channels")
        outside = seg[:, :1] < 0
        for channel in config.masked_channels:  # in place, channel by channel: no gathered copy
            image[:, channel:channel + 1].masked_fill_(outside, 0)
    if config.remove_padding_label:
        seg.masked_fill_(seg == config.seg_padding_value, 0)
    return image, seg


AUGMENTATION_STEPS: tuple[AugmentationStep, ...] = (
    AugmentationStep("spatial", ("p_rotation", "p_scaling", "p_elastic"), spatial_transform),
    AugmentationStep("noise", ("p_noise",), _image_only(intensity.gaussian_noise)),
    AugmentationStep("blur", ("p_blur",), _image_only(intensity.blur)),
    AugmentationStep("brightness", ("p_brightness",), _image_only(intensity.brightness)),
    AugmentationStep("contrast", ("p_contrast",), _image_only(intensity.contrast)),
    AugmentationStep("low_resolution", ("p_low_resolution",), _image_only(intensity.low_resolution)),
    AugmentationStep("gamma_inverted", ("p_gamma_inverted",), _image_only(intensity.gamma_inverted)),
    AugmentationStep("gamma", ("p_gamma",), _image_only(intensity.gamma)),
    AugmentationStep("mirror", ("p_mirror_per_axis",), mirror),
    AugmentationStep("finalize_labels", (), finalize_labels),
)
"""The pipeline in nnU-Net's order. ``spatial`` must stay first: it produces fresh tensors of the final
patch size, which the later steps modify in place."""


class BatchAugmenter:
    """nnU-Net v2's training augmentation for whole batches on one device.

    Args:
        config: Augmentation settings (see :func:`default_augmentation`).
        device: Device the batches are augmented on; inputs are moved there first.

    Example:
        >>> augmenter = BatchAugmenter(default_augmentation((64, 64, 64), 3), torch.device("cpu"))
        >>> generator = torch.Generator().manual_seed(0)
        >>> image, seg = augmenter(image, seg, generator)  # doctest: +SKIP
    """

    def __init__(self, config: AugmentationConfig, device: torch.device) -> None:
        self.config = config
        self.device = torch.device(device)
        self.steps = AUGMENTATION_STEPS

    def sample(self, batch_size: int, num_channels: int, generator: torch.Generator) -> AugmentationParameters:
        """Draw all random parameters of one batch from a CPU generator.

        Args:
            batch_size: Samples in the batch.
            num_channels: Image channels.
            generator: CPU ``torch.Generator``; advanced by a fixed number of draws.

        Returns:
            The parameters (CPU tensors), to pass to :meth:`apply`.
        """
        return sample_parameters(self.config, batch_size, num_channels, generator)

    def input_windows(self, params: AugmentationParameters) -> list[tuple[slice, ...] | None]:
        """Per sample, the part of the sampled patch that :meth:`apply` reads: the centre crop for samples that
        are not resampled, ``None`` (all of it) for the others.

        Args:
            params: From :meth:`sample`.

        Returns:
            One entry per sample: slices of the spatial axes, or ``None``.
        """
        crop = centre_crop_slices(tuple(self.config.sampling_patch_size), tuple(self.config.patch_size))
        return [None if resampled else crop for resampled in params.do_spatial.tolist()]

    def apply(self, params: AugmentationParameters, image: torch.Tensor,
              seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch with given parameters; deterministic, the inputs are left unchanged.

        Args:
            params: From :meth:`sample` with this batch's size and channel count.
            image: ``(B, C, *sampling_patch_size)`` floating point, axes ``(Z, Y, X)`` / ``(Y, X)``.
            seg: ``(B, S, *sampling_patch_size)`` signed integer labels (S >= 1 label channels); out-of-image
                voxels may hold ``seg_padding_value`` (the loader's padding).

        Returns:
            ``image`` ``(B, C, *patch_size)`` and ``seg`` ``(B, S, *patch_size)`` on :attr:`device`, with the
            input dtypes.

        Raises:
            ValueError: Shapes, dtypes or parameter sizes do not fit the configuration.
        """
        image = image.to(self.device, non_blocking=True)
        seg = seg.to(self.device, non_blocking=True)
        self._check(params, image, seg)
        for step in self.steps:
            image, seg = step.function(image, seg, params, self.config)
        return image, seg

    def __call__(self, image: torch.Tensor, seg: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample parameters for this batch and apply them (see :meth:`sample` and :meth:`apply`)."""
        params = self.sample(image.shape[0], image.shape[1], generator)
        return self.apply(params, image, seg)

    def _check(self, params: AugmentationParameters, image: torch.Tensor, seg: torch.Tensor) -> None:
        expected = tuple(self.config.sampling_patch_size)
        batch = image.shape[0]
        if image.ndim != 2 + len(expected) or tuple(image.shape[2:]) != expected:
            raise ValueError(f"image must be (B, C, *sampling_patch_size) with sampling_patch_size {expected}, "
                             f"got {tuple(image.shape)}")
        if seg.ndim != image.ndim or seg.shape[0] != batch or seg.shape[1] < 1 or tuple(seg.shape[2:]) != expected:
            raise ValueError(f"seg must be (B, S, *sampling_patch_size) = {(batch, 'S', *expected)}, "
                             f"got {tuple(seg.shape)}")
        if not image.dtype.is_floating_point:
            raise ValueError(f"image must be floating point, got {image.dtype}")
        if seg.dtype.is_floating_point or seg.dtype.is_complex or seg.dtype == torch.bool:
            raise ValueError(f"seg must hold integer labels, got {seg.dtype}")
        if self.config.seg_padding_value < 0 and not seg.dtype.is_signed:
            raise ValueError(f"seg dtype {seg.dtype} cannot hold the padding label {self.config.seg_padding_value}")
        if params.batch_size != batch or params.num_channels != image.shape[1]:
            raise ValueError(f"parameters drawn for {params.batch_size} samples x {params.num_channels} channels, "
                             f"batch has {batch} x {image.shape[1]}")
