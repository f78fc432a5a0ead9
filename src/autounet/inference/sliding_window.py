"""Sliding-window prediction of a whole image with any patch-wise model.

The model is any callable mapping a batch of patches ``(B, C, *patch)`` to logits ``(B, K, *patch)``: a torch
module, a compiled module, or a wrapper around ONNX Runtime or a quantised model. Windows are placed as in
nnU-Net, their logits weighted with a Gaussian, optionally averaged over mirrored inputs (test-time
augmentation), and blended into one float32 logit volume.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from autounet.inference.gaussian import gaussian_importance_map
from autounet.inference.tta import mirror_dim_combinations, predict_mirrored
from autounet.progress import progress

__all__ = ["PatchModel", "SlidingWindowSettings", "predict_sliding_window", "window_starts"]

logger = logging.getLogger(__name__)

# Windows (per batch) from which a progress bar over the windows is shown.
_PROGRESS_MIN_WINDOWS = 64

PatchModel = Callable[[torch.Tensor], torch.Tensor | Sequence[torch.Tensor]]
"""Maps patches ``(B, C, *patch)`` to logits ``(B, K, *patch)`` (or a deep-supervision list, first entry used)."""

# Index of one window into a (C, *spatial) array without the channel axis: an int selects one slice along
# axis 0 (2D model on a 3D image), slices cover the patch.
_Window = tuple[int | slice, ...]


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


def predict_sliding_window(model: PatchModel, image: torch.Tensor, num_outputs: int,
                           settings: SlidingWindowSettings, device: torch.device | None = None) -> torch.Tensor:
    """Predict logits for a whole image by blending overlapping window predictions.

    The image is zero-padded to at least the patch size (the difference split evenly, the extra voxel after
    the content, as nnU-Net) and the padding is removed from the result. Windows go to ``model`` in batches of
    ``settings.batch_size`` under ``torch.inference_mode()``; with mirroring, each batch is flipped, predicted
    and flipped back once per subset of ``settings.mirror_axes``, so memory stays bounded by one batch. The
    result is ``sum_w g_w * mean_m(logits_wm) / sum_w g_w`` per voxel (``g``: Gaussian weights or 1).

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
    slice_wise = _check_image(image, num_outputs, settings)
    device = image.device if device is None else torch.device(device)
    if isinstance(model, nn.Module) and model.training:
        logger.warning("the model is in training mode; call model.eval() before inference (dropout, norms)")
    patch = tuple(int(p) for p in settings.patch_size)
    with torch.inference_mode():
        padded, crop = _pad_to_patch(image.to(device), patch)
    plane_shape = padded.shape[-len(patch):]
    plane_windows = _windows(window_starts(plane_shape, patch, settings.step_size), patch)
    windows = [(z, *w) for z in range(padded.shape[1]) for w in plane_windows] if slice_wise else plane_windows
    # Allocated outside inference mode so the returned tensor is an ordinary one; in-place updates of it
    # inside inference mode are allowed.
    logits = torch.zeros((num_outputs, *padded.shape[1:]), dtype=torch.float32, device=device)
    with torch.inference_mode():
        weights = gaussian_importance_map(patch, device=device) if settings.use_gaussian else None
        num_passes = 2 ** len(settings.mirror_axes)
        # Averaging over mirrored passes is folded into the per-window weights: one multiply per batch.
        scale = weights / num_passes if weights is not None else (1.0 / num_passes if num_passes > 1 else None)
        logger.debug("sliding window: %d windows of %s, %d passes each", len(windows), patch, num_passes)
        _accumulate(model, padded, windows, logits, settings, scale)
        if slice_wise:
            # Windows tile every slice alike, so in 2D mode one in-plane weight sum serves all slices.
            logits.div_(_weight_sum(plane_shape, plane_windows, weights, device))
        else:
            _normalise_in_slabs(logits, plane_windows, weights, patch[0])
    return logits[(slice(None), *crop)].to("cpu").contiguous()


def _accumulate(model: PatchModel, padded: torch.Tensor, windows: list[_Window], logits: torch.Tensor,
                settings: SlidingWindowSettings, scale: torch.Tensor | float | None) -> None:
    """Add ``scale * sum over mirrored passes of the model's logits`` of every window into ``logits``.

    Args:
        model: The patch model (see :func:`predict_sliding_window`).
        padded: Padded image ``(C, *spatial)`` on the accumulation device.
        windows: Window indices into ``padded`` without the channel axis.
        logits: Float32 accumulator ``(K, *spatial)``, updated in place.
        settings: Patch size, mirroring, batch size and progress display.
        scale: Per-window weight ``(*patch)`` (or a scalar, or ``None`` for 1), already divided by the number
            of mirrored passes.
    """
    flip_dims = mirror_dim_combinations(settings.mirror_axes)
    expected = (logits.shape[0], *settings.patch_size)
    items: Iterable[_Window] = windows
    # Only cases that take a while get a (transient) bar; small ones would just flicker.
    if settings.show_progress and len(windows) >= _PROGRESS_MIN_WINDOWS * settings.batch_size:
        items = progress(windows, "Sliding window", total=len(windows), unit="window", leave=False)
    for batch in _chunks(items, settings.batch_size):
        patches = torch.stack([padded[(slice(None), *window)] for window in batch])
        predicted = predict_mirrored(model, patches, flip_dims, expected, logits.device)
        if scale is not None:
            predicted.mul_(scale)
        for index, window in enumerate(batch):
            # add_ on the view: `logits[w] += p` would also copy the view onto itself via __setitem__.
            logits[(slice(None), *window)].add_(predicted[index])


def _weight_sum(plane_shape: Sequence[int], plane_windows: list[_Window], weights: torch.Tensor | None,
                device: torch.device) -> torch.Tensor:
    """Sum of the window weights (Gaussian, or 1 each) per voxel of the tiled plane or volume, float32."""
    total = torch.zeros(tuple(plane_shape), dtype=torch.float32, device=device)
    for window in plane_windows:
        total[window].add_(weights if weights is not None else 1.0)
    return total


def _normalise_in_slabs(logits: torch.Tensor, windows: list[_Window], weights: torch.Tensor | None,
                        rows: int) -> None:
    """Divide 3D logits ``(K, *spatial)`` by the per-voxel weight sum, computed for ``rows`` axis-0 slices at a
    time: a full-volume weight array would cost as much memory as one more logit channel. Each voxel's sum
    adds the same window weights in the same order as a whole-volume sum, so the result is identical."""
    depth = logits.shape[1]
    for start in range(0, depth, rows):
        stop = min(start + rows, depth)
        total = torch.zeros((stop - start, *logits.shape[2:]), dtype=torch.float32, device=logits.device)
        for window in windows:
            first = window[0]
            assert isinstance(first, slice)  # 3D windows hold slices only
            low, high = max(first.start, start), min(first.stop, stop)
            if low >= high:
                continue
            part = weights[low - first.start:high - first.start] if weights is not None else 1.0
            total[(slice(low - start, high - start), *window[1:])].add_(part)
        logits[:, start:stop].div_(total)


def _check_image(image: torch.Tensor, num_outputs: int, settings: SlidingWindowSettings) -> bool:
    """Validate the inputs; return whether a 2D patch tiles a 3D image slice by slice."""
    ndim = len(settings.patch_size)
    if image.ndim - 1 == ndim:
        slice_wise = False
    elif ndim == 2 and image.ndim == 4:
        slice_wise = True
    else:
        raise ValueError(f"image of shape {tuple(image.shape)} (C, *spatial) does not fit the {ndim}D patch "
                         f"{settings.patch_size}; expected {ndim} spatial axes (or 3 for a 2D patch)")
    if not image.is_floating_point():
        raise ValueError(f"image must have a floating dtype, got {image.dtype}")
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
    return slice_wise


def _pad_to_patch(image: torch.Tensor, patch: tuple[int, ...]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad the trailing ``len(patch)`` axes to at least ``patch``; return the crop that undoes it.

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


def _windows(starts: list[list[int]], patch: tuple[int, ...]) -> list[_Window]:
    """All combinations of per-axis starts as slice tuples, last axis fastest (memory order)."""
    windows: list[_Window] = [()]
    for axis_starts, extent in zip(starts, patch, strict=True):
        windows = [(*w, slice(s, s + extent)) for w in windows for s in axis_starts]
    return windows


def _chunks(items: Iterable[_Window], size: int) -> Iterator[list[_Window]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    chunk: list[_Window] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
