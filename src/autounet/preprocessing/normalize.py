"""Intensity normalisation schemes, registered by the names plans use.

A scheme is a function ``(image, mask, spec) -> image`` that works in place on one float32 channel.
``mask`` is the region to normalise inside when ``spec.use_nonzero_mask`` is set: the non-zero region of
the case plus any labelled voxel (nnU-Net's ``seg >= 0``); outside it the result is 0. New schemes register
with :func:`register_normalizer`, which rejects a second registration of a name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from autounet.errors import ConfigError
from autounet.planning.plans import ChannelNormalization
from autounet.registry import Registry

__all__ = [
    "Normalizer",
    "available_normalizers",
    "get_normalizer",
    "needs_mask",
    "normalize",
    "register_normalizer",
]

Normalizer = Callable[[np.ndarray, "np.ndarray | None", ChannelNormalization], np.ndarray]

_NORMALIZERS: Registry[Normalizer] = Registry("normalisation scheme")
# nnU-Net's guard against division by (near) zero spreads.
_EPS = 1e-8


def register_normalizer(name: str) -> Callable[[Normalizer], Normalizer]:
    """Decorator registering a normalisation scheme under ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """
    return _NORMALIZERS.register(name)


def available_normalizers() -> tuple[str, ...]:
    """Registered scheme names, sorted."""
    return _NORMALIZERS.names()


def get_normalizer(name: str) -> Normalizer:
    """The scheme registered as ``name``.

    Raises:
        ConfigError: Unknown name; the message suggests the closest registered one.
    """
    return _NORMALIZERS.get(name)


@register_normalizer("ct")
def _ct(image: np.ndarray, mask: np.ndarray | None, spec: ChannelNormalization) -> np.ndarray:
    """Clip to the dataset's foreground percentiles, then subtract its mean and divide by its std."""
    if None in (spec.clip_min, spec.clip_max, spec.mean, spec.std):
        raise ConfigError("'ct' normalisation needs clip_min, clip_max, mean and std in the plans")
    np.clip(image, spec.clip_min, spec.clip_max, out=image)
    image -= float(spec.mean)
    image /= max(float(spec.std), _EPS)
    return image


@register_normalizer("zscore")
def _zscore(image: np.ndarray, mask: np.ndarray | None, spec: ChannelNormalization) -> np.ndarray:
    """Per-case ``(x - mean) / std``, over the masked region only when ``use_nonzero_mask`` is set."""
    if not spec.use_nonzero_mask:
        mean, std = float(image.mean(dtype=np.float64)), float(image.std(dtype=np.float64))
        image -= mean
        image /= max(std, _EPS)
        return image
    if mask is None:
        raise ValueError("zscore with use_nonzero_mask needs the non-zero mask")
    count = int(np.count_nonzero(mask))
    if count == 0:
        image[...] = 0.0
        return image
    values = image[mask]
    mean, std = float(values.mean(dtype=np.float64)), float(values.std(dtype=np.float64))
    del values
    image -= mean
    image /= max(std, _EPS)
    image[~mask] = 0.0
    return image


@register_normalizer("rescale_0_1")
def _rescale_0_1(image: np.ndarray, mask: np.ndarray | None, spec: ChannelNormalization) -> np.ndarray:
    """Per-case min/max rescaling to [0, 1]."""
    image -= float(image.min())
    image /= max(float(image.max()), _EPS)
    return image


@register_normalizer("rgb_to_0_1")
def _rgb_to_0_1(image: np.ndarray, mask: np.ndarray | None, spec: ChannelNormalization) -> np.ndarray:
    """8-bit colour to [0, 1]: a fixed scale keeps colours comparable across images (unlike min/max)."""
    image /= 255.0
    return image


@register_normalizer("none")
def _none(image: np.ndarray, mask: np.ndarray | None, spec: ChannelNormalization) -> np.ndarray:
    """Leave intensities as they are."""
    return image


def needs_mask(normalization: Sequence[ChannelNormalization]) -> bool:
    """Whether any channel normalises inside the non-zero mask only."""
    return any(spec.use_nonzero_mask and spec.scheme == "zscore" for spec in normalization)


def normalize(data: np.ndarray, mask: np.ndarray | None,
              normalization: Sequence[ChannelNormalization]) -> np.ndarray:
    """Normalise every channel in place.

    Args:
        data: float32 ``(C, *spatial)``; modified in place.
        mask: Boolean ``(*spatial)`` region for ``use_nonzero_mask`` (``seg >= 0``), or ``None`` if no
            channel needs it.
        normalization: One entry per channel.

    Returns:
        ``data``.

    Raises:
        ConfigError: Channel count differs from the plans, or an unknown or incomplete scheme.
    """
    if len(normalization) != data.shape[0]:
        raise ConfigError(f"the plans normalise {len(normalization)} channel(s) but the case has "
                          f"{data.shape[0]}")
    for channel, spec in enumerate(normalization):
        view = data[channel]
        try:
            result = get_normalizer(spec.scheme)(view, mask, spec)
        except ConfigError as exc:
            raise ConfigError(f"channel {channel}: {exc.problem}", exc.path) from None
        if result is not view:  # a scheme may return a new array instead of working in place
            view[...] = result
    return data
