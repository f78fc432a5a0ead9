"""Sliding-window prediction of a whole image with any patch-wise model.

The model is any callable mapping a batch of patches ``(B, C, *patch)`` to logits ``(B, K, *patch)``: a torch
module, a compiled module, or a wrapper around ONNX Runtime or a quantised model. Two roles split the work:
placement (:func:`iter_window_batches`, windows as in nnU-Net) and merging (a
:class:`~autounet.inference.merger.WindowMerger`). :func:`merge_windows` drives both, with mirroring
(test-time augmentation) between them; :func:`predict_sliding_window` is that driver with today's merger,
which weights logits with a Gaussian and blends them into one float32 logit volume.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn
from torch.nn import functional

from autounet.inference.merger import GaussianLogitMerger, Window, WindowGrid, WindowMerger
from autounet.inference.tta import mirror_dim_combinations, predict_mirrored
from autounet.progress import progress

__all__ = [
    "PatchModel",
    "SlidingWindowSettings",
    "iter_window_batches",
    "merge_windows",
    "pad_to_patch",
    "predict_sliding_window",
    "window_starts",
]

logger = logging.getLogger(__name__)

# Windows (per batch) from which a progress bar over the windows is shown.
_PROGRESS_MIN_WINDOWS = 64

PatchModel = Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]]
"""Maps patches ``(B, C, *patch)`` to logits ``(B, K, *patch)`` (or a deep-supervision list, first entry used)."""

T = TypeVar("T")


@dataclass(frozen=True)
class SlidingWindowSettings:
    """How windows are placed, weighted and augmented.

    Attributes:
        patch_size: Window size in voxels, in array axis order (``(Z, Y, X)`` or ``(Y, X)``); the model's
            training patch size. A 2D patch on a 3D image predicts every axis-0 slice separately.
        step_size: Distance between window starts as a fraction of the patch size, in ``(0, 1]`` (0.5: each
            voxel is seen by about 2 windows per axis).
        use_gaussian: Weight logits with :func:`gaussian_importance_map` (else a plain average).
        mirror_axes: Spatial axes of the patch (0-based, ``patch_size`` order) to mirror for test-time
            augmentation; every subset is predicted (``2 ** len(mirror_axes)`` model calls per batch) and
            the logits are averaged.
        batch_size: Windows per model call.
        show_progress: Show a transient progress bar over the windows of large images (at least 64
            batches).
    """

    patch_size: tuple[int, ...]
    step_size: float = 0.5
    use_gaussian: bool = True
    mirror_axes: tuple[int, ...] = ()
    batch_size: int = 1
    show_progress: bool = False

    def __post_init__(self) -> None:
        if not self.patch_size or any(int(p) < 1 for p in self.patch_size):
            raise ValueError(f"patch_size must hold positive extents, got {self.patch_size}")
        if not 0 < self.step_size <= 1:
            raise ValueError(f"step_size must lie in (0, 1], got {self.step_size}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        ndim = len(self.patch_size)
        if len(set(self.mirror_axes)) != len(self.mirror_axes) or any(not 0 <= a < ndim for a in self.mirror_axes):
            raise ValueError(f"mirror_axes must be distinct axes of the {ndim}D patch, got {self.mirror_axes}")


def window_starts(image_size: Sequence[int], patch_size: Sequence[int], step_size: float = 0.5) -> list[list[int]]:
    """Start voxel of every window along each axis, by nnU-Net's placement rule.

    Per axis: ``n = ceil((image - patch) / (patch * step_size)) + 1`` windows, spread evenly from 0 to
    ``image - patch`` (positions rounded half to even), so the actual step never exceeds the target step.
    Example: image 100, patch 40, step 0.5 -> ``[0, 20, 40, 60]``.

    Args:
        image_size: Spatial image size in voxels, axis order as ``patch_size``.
        patch_size: Window size in voxels; must not exceed ``image_size`` on any axis (pad first).
        step_size: Target step as a fraction of the patch size, in ``(0, 1]``.

    Returns:
        One ascending list of start indices per axis.

    Raises:
        ValueError: Mismatched lengths, an image axis smaller than the patch, or ``step_size`` outside ``(0, 1]``.
    """
    if len(image_size) != len(patch_size):
        raise ValueError(f"image_size {tuple(image_size)} and patch_size {tuple(patch_size)} differ in length")
    if any(i < p for i, p in zip(image_size, patch_size, strict=True)):
        raise ValueError(f"image_size {tuple(image_size)} is smaller than patch_size {tuple(patch_size)}; pad it")
    if not 0 < step_size <= 1:
        raise ValueError(f"step_size must lie in (0, 1], got {step_size}")
    starts = []
    for image, patch in zip(image_size, patch_size, strict=True):
        num_steps = math.ceil((image - patch) / (patch * step_size)) + 1
        if num_steps == 1:
            starts.append([0])
            continue
        actual_step = (image - patch) / (num_steps - 1)
        # Python's round() rounds half to even, like nnU-Net's np.round.
        starts.append([round(actual_step * i) for i in range(num_steps)])
    return starts


def iter_window_batches(spatial_shape: Sequence[int], settings: SlidingWindowSettings) -> Iterator[list[Window]]:
    """Every window of an image by nnU-Net's placement (:func:`window_starts`), in batches for the model.

    With a patch of as many axes as the image, windows are tuples of slices covering the patch. With a 2D
    patch on a 3D image every axis-0 slice is tiled in 2D: a window is ``(z, slice_y, slice_x)``, the ``int``
    selecting the slice, and windows of several slices may share one batch. Windows come slice by slice,
    each slice's (or the volume's) windows in C order of their starts.

    Args:
        spatial_shape: Spatial shape of the (padded) image; at least the patch size on the patch's axes.
        settings: Patch size, step size, batch size and progress display (a transient bar over the windows
            when there are at least 64 batches).

    Yields:
        Lists of at most ``settings.batch_size`` windows, indices into ``(C, *spatial)`` without the
        channel axis.

    Raises:
        ValueError: The shape has fewer axes than the patch, more than one extra axis, or is smaller than it.
    """
    patch = tuple(int(p) for p in settings.patch_size)
    leading = len(spatial_shape) - len(patch)
    if leading not in (0, 1) or (leading == 1 and len(patch) != 2):
        raise ValueError(f"spatial shape {tuple(spatial_shape)} does not fit the {len(patch)}D patch {patch}")
    plane_windows = _windows(window_starts(tuple(spatial_shape)[leading:], patch, settings.step_size), patch)
    windows: list[Window] = ([(z, *w) for z in range(spatial_shape[0]) for w in plane_windows] if leading
                             else plane_windows)
    num_passes = 2 ** len(settings.mirror_axes)
    logger.debug("sliding window: %d windows of %s, %d passes each", len(windows), patch, num_passes)
    items: Iterable[Window] = windows
    # Only cases that take a while get a (transient) bar; small ones would just flicker.
    if settings.show_progress and len(windows) >= _PROGRESS_MIN_WINDOWS * settings.batch_size:
        items = progress(windows, "Sliding window", total=len(windows), unit="window", leave=False)
    yield from _chunks(items, settings.batch_size)


def merge_windows(model: PatchModel, image: torch.Tensor, num_outputs: int, settings: SlidingWindowSettings,
                  merger: Callable[[WindowGrid], WindowMerger[T]], device: torch.device | None = None) -> T:
    """Run ``model`` on every window of an image and combine the outputs with a merger.

    The image is zero-padded to at least the patch size (the difference split evenly, the extra voxel after
    the content, as nnU-Net); windows (:func:`iter_window_batches`) go to ``model`` in batches under
    ``torch.inference_mode()``; with mirroring, each batch is flipped, predicted and flipped back once per
    subset of ``settings.mirror_axes`` and the passes are summed (:func:`predict_mirrored`), so memory stays
    bounded by one batch. Each batch's summed outputs go to the merger, which also removes the padding.

    Args:
        model: See :func:`predict_sliding_window`.
        image: Preprocessed image ``(C, *spatial)``, floating dtype, on any device.
        num_outputs: Output channels the model returns per window (checked on every call).
        settings: Window placement, mirroring and batching (``use_gaussian`` is the merger's business).
        merger: Builds the merger for the padded image (called once, outside inference mode).
        device: Where the model runs and outputs are merged; default ``image.device``.

    Returns:
        Whatever the merger's ``finalize`` returns.

    Raises:
        ValueError: The image's dimensionality does not fit the patch, the image is not floating point,
            ``num_outputs < 1``, or the model returns outputs of the wrong shape.
    """
    _check_image(image, num_outputs, settings)
    device = image.device if device is None else torch.device(device)
    if isinstance(model, nn.Module) and model.training:
        logger.warning("the model is in training mode; call model.eval() before inference (dropout, norms)")
    patch = tuple(int(p) for p in settings.patch_size)
    with torch.inference_mode():
        padded, crop = pad_to_patch(image.to(device), patch)
    grid = WindowGrid(shape=tuple(padded.shape[1:]), crop=crop, patch_size=patch,
                      passes_per_window=2 ** len(settings.mirror_axes), device=device)
    sink = merger(grid)
    flip_dims = mirror_dim_combinations(settings.mirror_axes)
    expected = (num_outputs, *patch)
    with torch.inference_mode():
        for batch in iter_window_batches(grid.shape, settings):
            patches = torch.stack([padded[(slice(None), *window)] for window in batch])
            sink.add(batch, predict_mirrored(model, patches, flip_dims, expected, device))
    return sink.finalize()


def predict_sliding_window(model: PatchModel, image: torch.Tensor, num_outputs: int,
                           settings: SlidingWindowSettings, device: torch.device | None = None) -> torch.Tensor:
    """Predict logits for a whole image by blending overlapping window predictions.

    :func:`merge_windows` with a :class:`~autounet.inference.merger.GaussianLogitMerger`: the result is
    ``sum_w g_w * mean_m(logits_wm) / sum_w g_w`` per voxel (``g``: Gaussian weights or 1, ``m``: mirrored
    passes), the padding removed.

    With a 2D patch on a 3D image (``len(patch_size) == image.ndim - 2``) every axis-0 slice is tiled in 2D;
    windows of several slices share one model call.

    Args:
        model: Callable mapping ``(B, C, *patch)`` float patches on ``device`` to logits ``(B, num_outputs,
            *patch)``. If it returns a list or tuple (a deep-supervision network), element 0, the
            full-resolution output, is used. Put a torch module in eval mode and on ``device`` beforehand.
        image: Preprocessed image ``(C, *spatial)``, axis order ``(C, Z, Y, X)`` or ``(C, Y, X)``, floating
            dtype (passed to the model as is), on any device.
        num_outputs: Output channels of the model (classes incl. background, or regions).
        settings: Window placement, weighting, mirroring and batching.
        device: Where the model runs and logits accumulate (float32); default ``image.device``.

    Returns:
        Logits ``(num_outputs, *spatial)``, float32, on the CPU, same spatial shape as ``image``; an ordinary
        (not inference-mode) tensor, so callers may modify it in place.

    Raises:
        ValueError: The image's dimensionality does not fit the patch, the image is not floating point,
            ``num_outputs < 1``, or the model returns logits of the wrong shape.
    """
    return merge_windows(model, image, num_outputs, settings,
                         lambda grid: GaussianLogitMerger(grid, num_outputs, settings.use_gaussian), device)


def _check_image(image: torch.Tensor, num_outputs: int, settings: SlidingWindowSettings) -> None:
    """Validate the inputs: the image has the patch's spatial axes (or 3 for a 2D patch), floating dtype."""
    ndim = len(settings.patch_size)
    if image.ndim - 1 != ndim and not (ndim == 2 and image.ndim == 4):
        raise ValueError(f"image of shape {tuple(image.shape)} (C, *spatial) does not fit the {ndim}D patch "
                         f"{settings.patch_size}; expected {ndim} spatial axes (or 3 for a 2D patch)")
    if not image.is_floating_point():
        raise ValueError(f"image must have a floating dtype, got {image.dtype}")
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")


def pad_to_patch(image: torch.Tensor, patch: tuple[int, ...]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad the trailing ``len(patch)`` axes to at least ``patch`` (the difference split evenly, the
    extra voxel after the content, as nnU-Net); return the crop that undoes it.

    The crop holds one slice per spatial axis of ``image`` (not the channel axis). No copy without padding.
    """
    spatial = image.shape[1:]
    leading = len(spatial) - len(patch)
    below = [0] * leading + [max(p - s, 0) // 2 for s, p in zip(spatial[leading:], patch, strict=True)]
    above = [0] * leading + [max(p - s, 0) - max(p - s, 0) // 2 for s, p in zip(spatial[leading:], patch,
                                                                                 strict=True)]
    crop = tuple(slice(b, b + s) for b, s in zip(below, spatial, strict=True))
    if not any(below) and not any(above):
        return image, crop
    # functional.pad takes (before, after) pairs starting from the last axis.
    pad = [amount for axis in reversed(range(len(spatial))) for amount in (below[axis], above[axis])]
    return functional.pad(image, pad, mode="constant", value=0.0), crop


def _windows(starts: list[list[int]], patch: tuple[int, ...]) -> list[Window]:
    """All combinations of per-axis starts as slice tuples, last axis fastest (memory order)."""
    windows: list[Window] = [()]
    for axis_starts, extent in zip(starts, patch, strict=True):
        windows = [(*w, slice(s, s + extent)) for w in windows for s in axis_starts]
    return windows


def _chunks(items: Iterable[Window], size: int) -> Iterator[list[Window]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    chunk: list[Window] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
