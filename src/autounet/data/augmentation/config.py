"""Augmentation settings: every probability and range of nnU-Net's training augmentation, as plain data.

:class:`AugmentationConfig` holds only tuples, floats, ints and bools so it can be written into a training
recipe as JSON (``autounet.io.serialization.to_dict`` / ``from_dict``). :func:`default_augmentation` derives
it from a configuration's patch size with nnU-Net v2's rules (rotation range, "dummy 2D" augmentation for
strongly anisotropic patches, mirror axes and the larger patch the loader has to sample).

Axis order is the array order of :mod:`autounet.typing` (``Z, Y, X`` for 3D, ``Y, X`` for 2D); axis ``k``
below always means spatial axis ``k`` of that order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["AugmentationConfig", "compute_sampling_patch_size", "default_augmentation"]

# nnU-Net calls a 3D patch "anisotropic" (and augments it in-plane only) above this ratio of its largest
# edge to its first (out-of-plane) edge; the same threshold as the planner's anisotropy rule.
_ANISOTROPY_THRESHOLD = 3.0
# nnU-Net sizes the sampled patch for a zoom of 1 / 0.85, a scale range kept from nnU-Net v1 even though
# training zooms within (0.7, 1.4); matching it keeps the patch the loader reads identical to nnU-Net's.
_SAMPLING_MIN_SCALE = 0.85
# A 2D patch more elongated than this is rotated by at most 15 degrees, a squarer one freely.
_ELONGATED_2D_RATIO = 1.5

Range = tuple[float, float]


@dataclass(frozen=True)
class AugmentationConfig:
    """Every setting of the training augmentation (nnU-Net v2 defaults where nnU-Net has one).

    Probabilities are per sample unless named ``..._per_channel`` / ``..._per_axis``. Ranges are closed
    intervals ``(low, high)`` sampled uniformly, except the ``BGContrast`` ranges (brightness, contrast,
    gamma): with probability 0.5, and only when ``low < 1``, the factor is drawn from ``U(low, 1)``,
    otherwise from ``U(max(low, 1), high)`` - so shrinking and enlarging are equally likely.

    Attributes:
        patch_size: Final patch size in voxels (what the network sees), one entry per spatial axis.
        sampling_patch_size: Size of the larger patch the loader must read, centred on the final patch, so
            that rotating and zooming out do not pull in padding (see :func:`compute_sampling_patch_size`).
        rotation_ranges: Rotation angle ranges in radians, one per rotation axis: one (in-plane) for 2D;
            three for 3D, about axes 0, 1 and 2. With ``dummy_2d`` only the rotation about axis 0 is used
            and the other two must be ``(0, 0)``.
        mirror_axes: Spatial axes that may be flipped.
        dummy_2d: Augment a 3D patch in-plane only (rotation about, scaling and elastic deformation
            perpendicular to, axis 0), as nnU-Net does for strongly anisotropic patches.
        p_rotation: Probability of rotating a sample (every axis then gets its own angle).
        p_scaling: Probability of zooming a sample; one isotropic factor for all (in-plane) axes.
        scaling_range: Zoom factor range; > 1 samples a larger region, so objects appear smaller.
        p_elastic: Probability of an elastic deformation (nnU-Net: off).
        elastic_alpha_range: Largest displacement of the deformation field, as a fraction of the patch
            edge along the displaced axis (our own parametrisation: nnU-Net never enables it).
        elastic_sigma_range: Smoothing sigma of the white-noise displacement field, as a fraction of the
            patch edge along the displaced axis.
        seg_padding_value: Label given to segmentation voxels sampled from outside the input patch (nnU-Net:
            -1, later removed or used to mask the image; see ``masked_channels`` and
            ``remove_padding_label``).
        p_noise: Probability of additive Gaussian noise.
        noise_std_range: Noise standard deviation range (one value per sample, shared by its channels).
        p_blur: Probability of Gaussian blurring a sample.
        p_blur_per_channel: Probability that each channel of a blurred sample is blurred.
        blur_sigma_range: Blur sigma range in voxels, drawn per channel and per axis.
        p_brightness: Probability of a multiplicative brightness change.
        brightness_range: BGContrast range of the brightness factor, one factor per channel.
        p_contrast: Probability of a contrast change ``(x - mean) * f + mean``.
        contrast_range: BGContrast range of the contrast factor, one factor per channel.
        contrast_preserve_range: Clamp the result to the channel's value range before the change.
        p_low_resolution: Probability of simulating a low resolution (downsample, upsample).
        p_low_resolution_per_channel: Probability for each channel of an affected sample.
        low_resolution_zoom_range: Downsampling factor range, one factor per channel for all axes.
        low_resolution_ignore_axes: Spatial axes kept at full resolution (axis 0 for dummy 2D).
        p_gamma_inverted: Probability of a gamma change applied to the inverted image.
        p_gamma: Probability of a gamma change applied to the image itself (after the inverted one).
        gamma_range: BGContrast range of gamma, one value per channel.
        gamma_retain_stats: Restore each channel's mean and standard deviation after the gamma change.
        p_mirror_per_axis: Probability of flipping each of ``mirror_axes``.
        masked_channels: Image channels set to 0 where the segmentation is negative (outside the image),
            for channels normalised inside a non-zero mask (nnU-Net's ``MaskImageTransform``).
        seg_linear_interpolation: Resample labels of rotated/scaled samples as nnU-Net v2 does: each label's
            indicator linearly, then the label with the largest value (``False``: nearest neighbour, one
            resampling whatever the number of labels, slightly more jagged boundaries).
        remove_padding_label: Replace ``seg_padding_value`` by 0 at the end, as nnU-Net's ``RemoveLabel``.
    """

    patch_size: tuple[int, ...]
    sampling_patch_size: tuple[int, ...]
    rotation_ranges: tuple[Range, ...]
    mirror_axes: tuple[int, ...]
    dummy_2d: bool = False
    p_rotation: float = 0.2
    p_scaling: float = 0.2
    scaling_range: Range = (0.7, 1.4)
    p_elastic: float = 0.0
    elastic_alpha_range: Range = (0.0, 0.05)
    elastic_sigma_range: Range = (0.05, 0.15)
    seg_padding_value: int = -1
    seg_linear_interpolation: bool = True
    p_noise: float = 0.1
    noise_std_range: Range = (0.0, 0.1)
    p_blur: float = 0.2
    p_blur_per_channel: float = 0.5
    blur_sigma_range: Range = (0.5, 1.0)
    p_brightness: float = 0.15
    brightness_range: Range = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast_range: Range = (0.75, 1.25)
    contrast_preserve_range: bool = True
    p_low_resolution: float = 0.25
    p_low_resolution_per_channel: float = 0.5
    low_resolution_zoom_range: Range = (0.5, 1.0)
    low_resolution_ignore_axes: tuple[int, ...] = ()
    p_gamma_inverted: float = 0.1
    p_gamma: float = 0.3
    gamma_range: Range = (0.7, 1.5)
    gamma_retain_stats: bool = True
    p_mirror_per_axis: float = 0.5
    masked_channels: tuple[int, ...] = ()
    remove_padding_label: bool = True

    def __post_init__(self) -> None:
        # ValueError, as in UNetSpec: from_dict turns it into a ConfigError naming the recipe file.
        ndim = len(self.patch_size)
        if ndim not in (2, 3):
            raise ValueError(f"patch_size must have 2 or 3 entries, got {self.patch_size}")
        if len(self.sampling_patch_size) != ndim:
            raise ValueError(f"sampling_patch_size {self.sampling_patch_size} does not match patch {self.patch_size}")
        if any(p < 1 for p in self.patch_size) or any(
                s < p for s, p in zip(self.sampling_patch_size, self.patch_size, strict=True)):
            raise ValueError(f"need 1 <= patch_size <= sampling_patch_size per axis, got patch {self.patch_size} "
                             f"and sampling patch {self.sampling_patch_size}")
        if len(self.rotation_ranges) != (1 if ndim == 2 else 3):
            raise ValueError(f"{ndim}D needs {1 if ndim == 2 else 3} rotation ranges, got {len(self.rotation_ranges)}")
        if self.dummy_2d:
            if ndim != 3:
                raise ValueError("dummy_2d applies to 3D patches only")
            if any(r != (0.0, 0.0) for r in self.rotation_ranges[1:]):
                raise ValueError("with dummy_2d only the rotation about axis 0 is used; set the other ranges to (0, 0)")
        for axes, what in ((self.mirror_axes, "mirror_axes"), (self.low_resolution_ignore_axes,
                                                               "low_resolution_ignore_axes")):
            if any(not 0 <= a < ndim for a in axes) or len(set(axes)) != len(axes):
                raise ValueError(f"{what} must be distinct spatial axes in [0, {ndim}), got {axes}")
        if any(c < 0 for c in self.masked_channels):
            raise ValueError(f"masked_channels must be channel indices, got {self.masked_channels}")
        for name, value in vars(self).items():
            if name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
            if name.endswith("_range") and isinstance(value, tuple) and not value[0] <= value[1]:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {value}")
        for low, high in self.rotation_ranges:
            if low > high:
                raise ValueError(f"rotation range must be (low, high) with low <= high, got {(low, high)}")
        if self.scaling_range[0] <= 0 or self.low_resolution_zoom_range[0] <= 0 or self.gamma_range[0] <= 0:
            raise ValueError("scaling, low-resolution zoom and gamma ranges must be positive")
        if self.elastic_sigma_range[0] < 0 or self.elastic_alpha_range[0] < 0 or self.noise_std_range[0] < 0:
            raise ValueError("elastic and noise ranges must be non-negative")
        if self.blur_sigma_range[0] <= 0 and self.p_blur > 0:
            raise ValueError("blur_sigma_range must be positive")

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions of the patches (2 or 3)."""
        return len(self.patch_size)


def compute_sampling_patch_size(patch_size: tuple[int, ...], rotation_ranges: tuple[Range, ...],
                                dummy_2d: bool = False, min_scale: float = _SAMPLING_MIN_SCALE) -> tuple[int, ...]:
    """Size of the patch to sample so that rotated and zoomed-out final patches stay inside it.

    nnU-Net's rule: take the largest rotation angle of each axis, capped at 90 degrees; rotate the vector of
    patch edge lengths by it about each axis separately (2D: once); keep per axis the largest absolute
    component seen (original included); divide by ``min_scale``; truncate to integers. With dummy 2D only
    the in-plane rotation counts and axis 0 keeps its final size. The rotated vector is an estimate, not a
    bounding box, and zooms beyond ``1 / min_scale`` still reach the padding; both as in nnU-Net.

    Args:
        patch_size: Final patch size in voxels, one entry per spatial axis (2 or 3).
        rotation_ranges: Rotation ranges in radians, as in :class:`AugmentationConfig`.
        dummy_2d: In-plane augmentation of a 3D patch.
        min_scale: Smallest zoom factor the sampled patch must accommodate.

    Returns:
        The sampling patch size, one entry per spatial axis, each >= the final size.

    Raises:
        ValueError: Patch and rotation ranges do not fit together.
    """
    ndim = len(patch_size)
    if ndim not in (2, 3) or len(rotation_ranges) != (1 if ndim == 2 else 3):
        raise ValueError(f"patch {patch_size} needs {1 if ndim == 2 else 3} rotation ranges, got {rotation_ranges}")
    angles = [min(max(abs(low), abs(high)), math.pi / 2) for low, high in rotation_ranges]
    # A rotation about axis k turns the edge vector in the plane of the other two axes. In nnU-Net's
    # convention the axis after k (cyclically) receives own*cos + other*sin and the axis two after k
    # receives |own*cos - other*sin|; a 2D patch behaves like a rotation about a virtual axis before axis 0.
    if ndim == 2:
        planes = [(0, 1, angles[0])]
    elif dummy_2d:
        planes = [(1, 2, angles[0])]
    else:
        planes = [((k + 1) % 3, (k + 2) % 3, angles[k]) for k in range(3)]
    extent = [float(p) for p in patch_size]
    for plus, minus, angle in planes:
        a, b = float(patch_size[plus]), float(patch_size[minus])
        extent[plus] = max(extent[plus], abs(a * math.cos(angle) + b * math.sin(angle)))
        extent[minus] = max(extent[minus], abs(b * math.cos(angle) - a * math.sin(angle)))
    result = [int(e / min_scale) for e in extent]
    if dummy_2d:
        result[0] = patch_size[0]
    return tuple(max(r, p) for r, p in zip(result, patch_size, strict=True))


def default_augmentation(configuration_patch_size: tuple[int, ...], ndim: int) -> AugmentationConfig:
    """nnU-Net v2's augmentation for a configuration with this patch size.

    Rules (nnU-Net's ``configure_rotation_dummyDA_mirroring_and_inital_patch_size``): 2D patches rotate by
    up to 15 degrees when ``max / min > 1.5``, else freely (180 degrees); 3D patches use dummy 2D when
    ``max(patch) / patch[0] > 3`` and then rotate in-plane by up to 180 degrees, otherwise by up to 30
    degrees about every axis; every spatial axis may be mirrored; low-resolution simulation leaves axis 0
    alone under dummy 2D; the sampling patch size follows :func:`compute_sampling_patch_size`.

    Args:
        configuration_patch_size: The configuration's patch size in voxels.
        ndim: Spatial dimensions of the configuration (2 or 3).

    Returns:
        The augmentation settings, all other values at nnU-Net's defaults.

    Raises:
        ValueError: ``ndim`` is not 2 or 3, or does not match the patch size.
    """
    patch = tuple(int(p) for p in configuration_patch_size)
    if ndim not in (2, 3) or len(patch) != ndim:
        raise ValueError(f"need a 2D or 3D patch matching ndim={ndim}, got {configuration_patch_size}")
    dummy_2d = False
    if ndim == 2:
        limit = math.radians(15.0) if max(patch) / min(patch) > _ELONGATED_2D_RATIO else math.pi
        rotation: tuple[Range, ...] = ((-limit, limit),)
    else:
        dummy_2d = max(patch) / patch[0] > _ANISOTROPY_THRESHOLD
        if dummy_2d:
            rotation = ((-math.pi, math.pi), (0.0, 0.0), (0.0, 0.0))
        else:
            limit = math.radians(30.0)
            rotation = ((-limit, limit),) * 3
    return AugmentationConfig(
        patch_size=patch,
        sampling_patch_size=compute_sampling_patch_size(patch, rotation, dummy_2d),
        rotation_ranges=rotation,
        mirror_axes=tuple(range(ndim)),
        dummy_2d=dummy_2d,
        low_resolution_ignore_axes=(0,) if dummy_2d else (),
    )
