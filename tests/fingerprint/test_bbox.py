"""Non-zero mask and bounding box."""

from __future__ import annotations

import numpy as np
import pytest

from autounet.fingerprint import bbox_slices, mask_bbox, nonzero_mask


@pytest.mark.parametrize("shape", [(9, 10), (5, 8, 7), (1, 6, 6)])
def test_mask_bbox_matches_argwhere(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(shape))
    for _ in range(20):
        mask = np.zeros(shape, dtype=bool)
        corner = [int(rng.integers(0, s)) for s in shape]
        stop = [int(rng.integers(c + 1, s + 1)) for c, s in zip(corner, shape, strict=True)]
        region = tuple(slice(c, e) for c, e in zip(corner, stop, strict=True))
        mask[region] = rng.random(mask[region].shape) > 0.5
        if not mask.any():
            continue
        where = np.argwhere(mask)
        expected = tuple((int(lo), int(hi) + 1) for lo, hi in zip(where.min(0), where.max(0), strict=True))
        assert mask_bbox(mask) == expected
        assert mask[bbox_slices(expected)].sum() == mask.sum()


def test_empty_mask_keeps_everything() -> None:
    assert mask_bbox(np.zeros((3, 4, 5), dtype=bool)) == ((0, 3), (0, 4), (0, 5))


def test_nonzero_mask_is_any_channel() -> None:
    image = np.zeros((2, 3, 3))
    image[0, 0, 0] = 1.0
    image[1, 2, 2] = -3.0
    assert nonzero_mask(image).sum() == 2
    assert nonzero_mask(image)[2, 2]
