"""Intensity augmentations of nnU-Net v2, vectorised over the batch.

Each function takes the image batch ``(B, C, *P)`` (floating point, any device), modifies the selected
samples or channels in place and returns it; unselected ones keep their values bit for bit. Selections come
from CPU masks in :class:`AugmentationParameters`, so choosing the subset never waits for the device: the
chosen samples (or sample-channel pairs) are gathered, transformed in one go and scattered back.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812  # the conventional alias

from autounet.data.augmentation.config import AugmentationConfig
from autounet.data.augmentation.params import AugmentationParameters

__all__ = ["blur", "brightness", "contrast", "gamma", "gamma_inverted", "gaussian_noise", "low_resolution"]

# Guards divisions by a flat channel's range or standard deviation, as batchgeneratorsv2's gamma.
_EPS = 1e-7
# batchgeneratorsv2 cuts the blur kernel at 6 sigma (the kernel size is that, rounded to an odd number).
_BLUR_TRUNCATE = 6.0


def _update(image: torch.Tensor, mask: torch.Tensor,
            fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Replace ``image[i]`` by ``fn(image[chosen], chosen)`` for the rows ``i`` where the CPU ``mask`` is set.

    Consecutive rows (the usual case for small batches) are passed as a view, which ``fn`` may modify in
    place; scattered rows are gathered and scattered back.
    """
    chosen = mask.nonzero().flatten()
    if chosen.numel() == 0:
        return image
    first, last = int(chosen[0]), int(chosen[-1])
    if last - first + 1 == chosen.numel():
        rows = image[first:last + 1]
        out = fn(rows, chosen)
        if out.data_ptr() != rows.data_ptr():
            rows.copy_(out)
        return image
    index = chosen.to(image.device)
    image.index_copy_(0, index, fn(image.index_select(0, index), chosen))
    return image


def _range(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row minimum and maximum over the last axis (keepdim).

    Two reductions rather than ``torch.aminmax``, whose reduction over a long last axis takes a slow path on
    the CPU (about 20x slower than ``amin`` plus ``amax`` in torch 2.x).
    """
    return flat.amin(dim=-1, keepdim=True), flat.amax(dim=-1, keepdim=True)


def _std_mean(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row unbiased standard deviation and mean over the last axis (keepdim), two-pass.

    Same values as ``torch.std_mean`` up to rounding; its Welford reduction over a long last axis is several
    times slower on the CPU than a mean followed by the norm of the deviations.
    """
    mean = flat.mean(dim=-1, keepdim=True)
    norm = torch.linalg.vector_norm(flat - mean, dim=-1, keepdim=True)
    return norm / math.sqrt(max(flat.shape[-1] - 1, 1)), mean


def _per_channel(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(n, C)`` CPU values as a tensor broadcasting over ``like``'s spatial axes, on its device and dtype."""
    return values.to(device=like.device, dtype=like.dtype).reshape(*values.shape, *([1] * (like.ndim - 2)))


def gaussian_noise(image: torch.Tensor, params: AugmentationParameters, config: AugmentationConfig) -> torch.Tensor:
    """Add zero-mean Gaussian noise; one standard deviation per sample, independent noise per channel."""

    def apply(x: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(params.noise_seed)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        std = params.noise_std[chosen].to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return x.addcmul_(noise, std)

    return _update(image, params.do_noise, apply)


def _odd_kernel_sizes(sigma: torch.Tensor) -> torch.Tensor:
    # batchgeneratorsv2 rounds sigma * truncate + 0.5 to the nearest odd integer, ties to the side of the value.
    value = sigma * _BLUR_TRUNCATE + 0.5
    rounded = torch.round(value)
    odd = torch.remainder(rounded, 2) == 1
    return torch.where(odd, rounded, torch.where(value - rounded >= 0, rounded + 1, rounded - 1)).long()


def _gaussian_kernels(sigma: torch.Tensor) -> torch.Tensor:
    """``(m, K)`` normalised kernels for ``(m,)`` sigmas, zero-padded to the largest size ``K``."""
    sizes = _odd_kernel_sizes(sigma)
    width = int(sizes.max())
    taps = torch.arange(width, dtype=torch.float64) - width // 2
    kernels = torch.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
    kernels = kernels * (taps.abs()[None, :] <= (sizes // 2)[:, None])
    return kernels / kernels.sum(dim=1, keepdim=True)


def _blur_axis(x: torch.Tensor, kernels: torch.Tensor, axis: int) -> torch.Tensor:
    """Correlate each row of ``x`` (``(m, *P)``) with its own 1D kernel along spatial ``axis``, reflect padding."""
    ndim = x.ndim - 1
    radius = kernels.shape[1] // 2
    length = x.shape[1 + axis]
    pad = [0] * (2 * ndim)
    pad[2 * (ndim - 1 - axis)] = pad[2 * (ndim - 1 - axis) + 1] = radius
    # reflect needs the padding to be shorter than the axis; only tiny patches fall back to replicate
    padded = F.pad(x[None], pad, mode="reflect" if radius < length else "replicate")[0]
    weights = kernels.to(device=x.device, dtype=x.dtype).reshape(*kernels.shape, *([1] * ndim))
    out = padded.narrow(1 + axis, 0, length) * weights[:, 0]
    for tap in range(1, kernels.shape[1]):
        out.addcmul_(padded.narrow(1 + axis, tap, length), weights[:, tap])
    return out


def blur(image: torch.Tensor, params: AugmentationParameters, config: AugmentationConfig) -> torch.Tensor:
    """Separable Gaussian blur of the selected channels, each with its own sigma per axis."""
    flat = image.view(-1, *image.shape[2:])

    def apply(x: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        sigma = params.blur_sigma.reshape(-1, params.blur_sigma.shape[-1])[chosen]
        for axis in range(x.ndim - 1):
            x = _blur_axis(x, _gaussian_kernels(sigma[:, axis]), axis)
        return x

    _update(flat, params.blur_channels.reshape(-1), apply)
    return image


def brightness(image: torch.Tensor, params: AugmentationParameters, config: AugmentationConfig) -> torch.Tensor:
    """Multiply each channel of the selected samples by its factor."""
    return _update(image, params.do_brightness,
                   lambda x, chosen: x.mul_(_per_channel(params.brightness_factor[chosen], x)))


def contrast(image: torch.Tensor, params: AugmentationParameters, config: AugmentationConfig) -> torch.Tensor:
    """Scale each channel about its mean, ``(x - mean) * f + mean``, optionally clamped to its old range."""

    def apply(x: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        mean = flat.mean(dim=2, keepdim=True)
        factor = params.contrast_factor[chosen].to(device=x.device, dtype=x.dtype)[..., None]
        out = torch.addcmul(mean * (1 - factor), flat, factor)
        if config.contrast_preserve_range:
            low, high = _range(flat)
            out = torch.clamp(out, low, high)
        return out.view_as(x)

    return _update(image, params.do_contrast, apply)


def _resampling_indices(length: int, zoom: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices and weights of nearest-exact downsampling to ``round(length * zoom)`` then linear upsampling.

    Both steps act along one axis, so their composition reads two full-resolution voxels per output voxel:
    ``out[j] = (1 - w[j]) * x[first[j]] + w[j] * x[second[j]]``. Follows ``F.interpolate``'s
    ``nearest-exact`` and ``linear`` (``align_corners=False``) index rules; returns ``(m, length)`` tensors.
    """
    low = torch.round(length * zoom).clamp(min=1).to(torch.float64)[:, None]
    dst = torch.arange(length, dtype=torch.float64)[None, :]
    source = ((dst + 0.5) * (low / length) - 0.5).clamp(min=0.0)
    left = torch.minimum(torch.floor(source), low - 1)
    weight = source - left
    right = torch.where(left < low - 1, left + 1, left)
    # interpolate's nearest-exact: a float32 scale, the product rounded to float32 before the floor; matching
    # that rounding matters where (index + 0.5) * scale lands on an integer
    scale_down = (length / low).to(torch.float32).to(torch.float64)

    def full_resolution(index: torch.Tensor) -> torch.Tensor:
        source = ((index + 0.5) * scale_down).to(torch.float32)
        return torch.clamp(torch.floor(source), max=length - 1).long()

    return full_resolution(left), full_resolution(right), weight


def low_resolution(image: torch.Tensor, params: AugmentationParameters, config: AugmentationConfig) -> torch.Tensor:
    """Simulate a coarser acquisition: downsample (nearest-exact) and upsample (linear) selected channels."""
    flat = image.view(-1, *image.shape[2:])

    def apply(x: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        zoom = params.low_resolution_zoom.reshape(-1)[chosen]
        for axis in range(x.ndim - 1):
            if axis in config.low_resolution_ignore_axes:
                continue
            first, second, weight = _resampling_indices(x.shape[1 + axis], zoom)
            view = [len(chosen)] + [1] * (x.ndim - 1)
            view[1 + axis] = x.shape[1 + axis]
            first = first.to(x.device).reshape(view).expand(x.shape)
            second = second.to(x.device).reshape(view).expand(x.shape)
            weight = weight.to(device=x.device, dtype=x.dtype).reshape(view)
            x = torch.lerp(x.gather(1 + axis, first), x.gather(1 + axis, second), weight)
        return x

    _update(flat, params.low_resolution_channels.reshape(-1), apply)
    return image


def _gamma(x: torch.Tensor, gamma_value: torch.Tensor, invert: bool, retain_stats: bool) -> torch.Tensor:
    """``((x - min) / range) ** gamma * range + min`` per channel of ``x`` (``(n, C, *P)``).

    With ``retain_stats`` the result is standardised back to the channel's mean and standard deviation;
    the ``* range + min`` then cancels out and is folded into that one affine step.
    """
    flat = x.flatten(2).neg() if invert else x.flatten(2)
    low, high = _range(flat)
    spread = high - low
    inverse = 1 / spread.clamp_min(_EPS)
    # rounding can leave the minimum a hair below zero, and a fractional power of a negative number is NaN
    unit = torch.addcmul(-low * inverse, flat, inverse).clamp_min_(0)
    unit.pow_(gamma_value.to(device=x.device, dtype=x.dtype)[..., None])
    if retain_stats:
        std, mean = _std_mean(flat)
        unit_std, unit_mean = _std_mean(unit)
        # batchgeneratorsv2 guards the std of the rescaled result (spread * unit_std) against zero
        factor = std * spread / (spread * unit_std).clamp_min(_EPS)
        out = torch.addcmul(mean - unit_mean * factor, unit, factor)
    else:
        out = torch.addcmul(low, unit, spread)
    return (out.neg_() if invert else out).view_as(x)


def gamma_inverted(image: torch.Tensor, params: AugmentationParameters, config: AugmentationConfig) -> torch.Tensor:
    """Gamma change of the inverted image (``-x``), inverted back: brightens dark rather than bright values."""
    return _update(image, params.do_gamma_inverted, lambda x, chosen: _gamma(
        x, params.gamma_inverted_value[chosen], invert=True, retain_stats=config.gamma_retain_stats))


def gamma(image: torch.Tensor, params: AugmentationParameters, config: AugmentationConfig) -> torch.Tensor:
    """Gamma change of each channel, keeping its value range (and, by default, its mean and std)."""
    return _update(image, params.do_gamma, lambda x, chosen: _gamma(
        x, params.gamma_value[chosen], invert=False, retain_stats=config.gamma_retain_stats))
