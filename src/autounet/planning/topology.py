"""Network topology from spacing and patch size: where to downsample and which kernels to use.

Rule (the one nnU-Net v2 uses, restated): repeatedly halve every axis that is still at least twice the
minimum bottleneck edge length and whose current spacing is less than twice the finest current spacing
(so coarse axes wait until the fine ones catch up). A single remaining axis is only pooled if it is at
least three times the minimum edge. Kernels are 1 along an axis until its spacing is within a factor 2 of
the finest, then 3. The patch is padded up to a multiple of the total downsampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Topology", "plan_topology"]

MIN_BOTTLENECK_EDGE = 4


@dataclass(frozen=True)
class Topology:
    """Strides and kernels per stage, and the patch size made divisible by the total stride."""

    strides: tuple[tuple[int, ...], ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    patch_size: tuple[int, ...]
    divisor: tuple[int, ...]

    @property
    def num_stages(self) -> int:
        """Number of resolution stages."""
        return len(self.strides)


def plan_topology(spacing: Sequence[float], patch_size: Sequence[float],
                  min_edge: int = MIN_BOTTLENECK_EDGE) -> Topology:
    """Downsampling strides and kernel sizes for a patch at a spacing.

    Args:
        spacing: Voxel spacing per axis.
        patch_size: Desired patch size (may be fractional; it is padded to the total stride).
        min_edge: Minimum edge length of the bottleneck feature map.

    Returns:
        The topology; the first stage has stride 1 and the bottleneck a 3-kernel on every axis.
    """
    ndim = len(spacing)
    current_spacing = [float(s) for s in spacing]
    current_size = [float(p) for p in patch_size]
    pools = [0] * ndim
    kernel = [1] * ndim
    strides: list[tuple[int, ...]] = [(1,) * ndim]
    kernels: list[tuple[int, ...]] = []
    while True:
        candidates = [a for a in range(ndim) if current_size[a] >= 2 * min_edge]
        if not candidates:
            break
        finest = min(current_spacing[a] for a in candidates)
        candidates = [a for a in candidates if current_spacing[a] / finest < 2]
        if not candidates or (len(candidates) == 1 and current_size[candidates[0]] < 3 * min_edge):
            break
        finest_overall = min(current_spacing)
        kernel = [3 if k == 3 or current_spacing[a] / finest_overall < 2 else 1 for a, k in enumerate(kernel)]
        stride = tuple(2 if a in candidates else 1 for a in range(ndim))
        for a in candidates:
            pools[a] += 1
            current_spacing[a] *= 2
            current_size[a] = math.ceil(current_size[a] / 2)
        strides.append(stride)
        kernels.append(tuple(kernel))
    kernels.append((3,) * ndim)
    divisor = tuple(2**p for p in pools)
    return Topology(strides=tuple(strides), kernel_sizes=tuple(kernels),
                    patch_size=_pad_strictly(patch_size, divisor), divisor=divisor)


def _pad_strictly(shape: Sequence[float], divisor: Sequence[int]) -> tuple[int, ...]:
    # A fractional size rounds up to the next multiple; an integral multiple is kept as it is.
    out = []
    for size, d in zip(shape, divisor, strict=True):
        padded = (math.floor(size / d) + 1) * d if size % d else size
        out.append(int(padded))
    return tuple(out)
