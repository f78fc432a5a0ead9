"""Merging window outputs into one result: the *merger* role of the sliding window.

:func:`~autounet.inference.sliding_window.merge_windows` places windows, runs the model on them (with
mirroring) and hands every batch of window outputs to a merger; the merger alone decides what the outputs
mean and how they combine. Today's merger is :class:`GaussianLogitMerger` (per-voxel logits, blended with
Gaussian weights); another output kind (boxes, several tasks) is another class with the same two methods.

Windows index the padded image ``(C, *spatial)`` without its channel axis: slices covering the patch, or,
for a 2D patch on a 3D image, an ``int`` selecting one axis-0 slice followed by the in-plane slices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import torch

from autounet.inference.gaussian import gaussian_importance_map

__all__ = ["GaussianLogitMerger", "Window", "WindowGrid", "WindowMerger"]

Window = tuple[int | slice, ...]
"""Index of one window into a ``(C, *spatial)`` array without the channel axis."""

T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True)
class WindowGrid:
    """What a merger is told before the first window: the image the windows tile.

    Attributes:
        shape: Spatial shape of the padded image that windows index.
        crop: One slice per axis of ``shape``: the region holding the image (the rest is padding).
        patch_size: Window size in voxels (the trailing ``len(patch_size)`` axes of ``shape``).
        passes_per_window: How many model outputs (mirrored passes) are summed in each window's output.
        device: Where the outputs given to :meth:`WindowMerger.add` live.
    """

    shape: tuple[int, ...]
    crop: tuple[slice, ...]
    patch_size: tuple[int, ...]
    passes_per_window: int
    device: torch.device


class WindowMerger(Protocol[T_co]):
    """Combines the outputs of windows into one result.

    :meth:`add` is called once per batch of windows, under ``torch.inference_mode()``; :meth:`finalize` once
    after the last batch, outside it, so that its result may be an ordinary tensor.
    """

    def add(self, windows: Sequence[Window], outputs: torch.Tensor) -> None:
        """Take the outputs ``(B, K, *patch)`` of ``B`` windows (summed over the grid's passes per window);
        ``outputs`` belongs to the merger and may be modified."""

    def finalize(self) -> T_co:
        """The merged result, for the unpadded image (``WindowGrid.crop``)."""


class GaussianLogitMerger:
    """Per-voxel logits blended over overlapping windows: ``sum_w g_w * mean_m(logits_wm) / sum_w g_w``.

    ``g`` is :func:`~autounet.inference.gaussian.gaussian_importance_map` (or 1 with ``use_gaussian=False``);
    the mean over mirrored passes is folded into the per-window weight (one multiply per batch). The weight
    sum is computed in :meth:`finalize` from the windows seen, one axis-0 slab at a time, rather than
    accumulated: a full-volume weight array would cost as much memory as one more logit channel.

    Args:
        grid: The padded image and its windows' size.
        num_outputs: Logit channels ``K``.
        use_gaussian: Gaussian weights (else a plain average).
    """

    def __init__(self, grid: WindowGrid, num_outputs: int, use_gaussian: bool = True) -> None:
        self.grid = grid
        # Allocated outside inference mode so the result is an ordinary tensor; in-place updates of it inside
        # inference mode are allowed.
        self.logits = torch.zeros((num_outputs, *grid.shape), dtype=torch.float32, device=grid.device)
        with torch.inference_mode():
            self.weights = gaussian_importance_map(grid.patch_size, device=grid.device) if use_gaussian else None
            passes = grid.passes_per_window
            self.scale = (self.weights / passes if self.weights is not None
                          else (1.0 / passes if passes > 1 else None))
        self.windows: list[Window] = []

    def add(self, windows: Sequence[Window], outputs: torch.Tensor) -> None:
        """Add ``scale * outputs`` of every window into the logit accumulator."""
        if self.scale is not None:
            outputs.mul_(self.scale)
        for index, window in enumerate(windows):
            # add_ on the view: `logits[w] += p` would also copy the view onto itself via __setitem__.
            self.logits[(slice(None), *window)].add_(outputs[index])
        self.windows.extend(windows)

    def finalize(self) -> torch.Tensor:
        """Logits ``(K, *image spatial)`` float32 on the CPU, normalised by the weight sum, padding removed;
        an ordinary (not inference-mode) tensor."""
        with torch.inference_mode():
            slice_wise = bool(self.windows) and isinstance(self.windows[0][0], int)
            if slice_wise:
                _normalise_slices(self.logits, self.windows, self.weights)
            else:
                _normalise_in_slabs(self.logits, self.windows, self.weights, self.grid.patch_size[0])
        return self.logits[(slice(None), *self.grid.crop)].to("cpu").contiguous()


def _normalise_slices(logits: torch.Tensor, windows: Sequence[Window], weights: torch.Tensor | None) -> None:
    """Divide slice-wise (2D windows on a 3D image) logits by each slice's in-plane weight sum.

    The sliding window tiles every slice alike, so the in-plane sum of a set of windows is computed once and
    serves every slice tiled by that set (division is per voxel, so slice by slice equals one broadcast)."""
    per_slice: dict[int, list[Window]] = {}
    for window in windows:
        first = window[0]
        assert isinstance(first, int)  # slice-wise windows start with the slice index
        per_slice.setdefault(first, []).append(window[1:])
    plane_shape = tuple(logits.shape[2:])
    sums: dict[tuple[tuple[int, int], ...], torch.Tensor] = {}
    keys: dict[int, tuple[tuple[int, int], ...]] = {}
    for depth, plane_windows in per_slice.items():
        # Slices are unhashable before Python 3.12: key by (start, stop) pairs.
        key = tuple((w.start, w.stop) for window in plane_windows for w in window if isinstance(w, slice))
        if key not in sums:
            sums[key] = _weight_sum(plane_shape, plane_windows, weights, logits.device)
        keys[depth] = key
    for depth, key in keys.items():
        logits[:, depth].div_(sums[key])


def _weight_sum(plane_shape: Sequence[int], plane_windows: Sequence[Window], weights: torch.Tensor | None,
                device: torch.device) -> torch.Tensor:
    """Sum of the window weights (Gaussian, or 1 each) per voxel of the tiled plane or volume, float32."""
    total = torch.zeros(tuple(plane_shape), dtype=torch.float32, device=device)
    for window in plane_windows:
        total[window].add_(weights if weights is not None else 1.0)
    return total


def _normalise_in_slabs(logits: torch.Tensor, windows: Sequence[Window], weights: torch.Tensor | None,
                        rows: int) -> None:
    """Divide logits ``(K, *spatial)`` by the per-voxel weight sum, computed for ``rows`` axis-0 slices at a
    time: a full-volume weight array would cost as much memory as one more logit channel. Each voxel's sum
    adds the same window weights in the same order as a whole-volume sum, so the result is identical."""
    depth = logits.shape[1]
    for start in range(0, depth, rows):
        stop = min(start + rows, depth)
        total = torch.zeros((stop - start, *logits.shape[2:]), dtype=torch.float32, device=logits.device)
        for window in windows:
            first = window[0]
            assert isinstance(first, slice)  # windows of a whole image hold slices only
            low, high = max(first.start, start), min(first.stop, stop)
            if low >= high:
                continue
            part = weights[low - first.start:high - first.start] if weights is not None else 1.0
            total[(slice(low - start, high - start), *window[1:])].add_(part)
        logits[:, start:stop].div_(total)
