"""The merger seam: a second merger runs through the unchanged sliding-window driver."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from autounet.inference import (
    SlidingWindowSettings,
    Window,
    WindowGrid,
    iter_window_batches,
    merge_windows,
    window_starts,
)


class CoverageMerger:
    """Toy merger: how many windows covered each voxel, and the per-voxel maximum of channel 0."""

    def __init__(self, grid: WindowGrid) -> None:
        self.grid = grid
        self.count = torch.zeros(grid.shape, dtype=torch.int64)
        self.maximum = torch.full(grid.shape, -torch.inf)

    def add(self, windows: Sequence[Window], outputs: torch.Tensor) -> None:
        for window, output in zip(windows, outputs, strict=True):
            self.count[window] += 1
            self.maximum[window] = torch.maximum(self.maximum[window], output[0] / self.grid.passes_per_window)

    def finalize(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.count[self.grid.crop].clone(), self.maximum[self.grid.crop].clone()


def _identity_channels(x: torch.Tensor) -> torch.Tensor:
    return x[:, :1] * 2.0


def test_a_second_merger_runs_through_the_unchanged_driver() -> None:
    image = torch.randn(1, 11, 17, generator=torch.Generator().manual_seed(0))
    settings = SlidingWindowSettings(patch_size=(6, 8), step_size=0.5, mirror_axes=(0, 1), batch_size=3)
    count, maximum = merge_windows(_identity_channels, image, 1, settings, CoverageMerger)
    starts = window_starts((11, 17), (6, 8), 0.5)
    expected = torch.zeros(11, 17, dtype=torch.int64)
    for y in starts[0]:
        for x in starts[1]:
            expected[y:y + 6, x:x + 8] += 1
    assert torch.equal(count, expected)
    # A pointwise model: every window sees the same value at a voxel, mirrored or not.
    torch.testing.assert_close(maximum, image[0] * 2.0)


def test_padding_is_invisible_to_the_merged_result() -> None:
    image = torch.ones(1, 3, 5)
    settings = SlidingWindowSettings(patch_size=(4, 8))
    count, _ = merge_windows(_identity_channels, image, 1, settings, CoverageMerger)
    assert torch.equal(count, torch.ones(3, 5, dtype=torch.int64))


def test_window_batches_cover_every_slice_for_a_2d_patch_on_a_3d_image() -> None:
    settings = SlidingWindowSettings(patch_size=(4, 4), step_size=1.0, batch_size=3)
    batches = list(iter_window_batches((2, 4, 8), settings))
    windows = [window for batch in batches for window in batch]
    assert [len(b) for b in batches] == [3, 1]
    assert windows == [(z, slice(0, 4), slice(x, x + 4)) for z in (0, 1) for x in (0, 4)]
