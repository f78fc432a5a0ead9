"""Patch sampling from preprocessed cases, with foreground oversampling.

In every batch the last third of the samples (nnU-Net: sample ``j`` is forced iff
``j >= round(batch_size * (1 - oversample))``) is centred on a voxel of a foreground class picked at random
among the classes present in the case, using the voxel locations stored at preprocessing; the others
are placed uniformly. Cases smaller than the patch are padded: image with 0, labels with -1 (outside the
image; the trainer treats -1 as background).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autounet.errors import DatasetError
from autounet.preprocessing.properties import CaseProperties
from autounet.preprocessing.storage import load_case

__all__ = ["PAD_LABEL", "PatchSampler", "SamplerSettings"]

PAD_LABEL = -1


@dataclass(frozen=True)
class SamplerSettings:
    """What to sample.

    Attributes:
        patch_size: Spatial size of the sampled patch (the augmentation's larger sampling patch).
        batch_size: Patches per batch.
        oversample_foreground: Fraction of each batch forced to contain foreground.
    """

    patch_size: tuple[int, ...]
    batch_size: int
    oversample_foreground: float = 0.33


class PatchSampler:
    """Draws batches of patches from the preprocessed cases of one data folder.

    A 2D patch from 3D data is taken from one axis-0 slice (slice-wise training of the ``2d``
    configuration). Arrays are memory-mapped, so a batch reads only its patches from disk.
    """

    def __init__(self, folder: Path, case_ids: Sequence[str], settings: SamplerSettings) -> None:
        if not case_ids:
            raise DatasetError("no cases to sample from", folder)
        self.folder = Path(folder)
        self.case_ids = tuple(case_ids)
        self.settings = settings
        self._cases: dict[str, tuple[np.ndarray, np.ndarray, CaseProperties]] = {}

    def _case(self, case_id: str) -> tuple[np.ndarray, np.ndarray, CaseProperties]:
        if case_id not in self._cases:
            data, seg, properties = load_case(self.folder, case_id, mmap=True)
            if seg is None:
                raise DatasetError(f"case '{case_id}' was preprocessed without labels", self.folder)
            self._cases[case_id] = (data, seg, properties)
        return self._cases[case_id]

    @property
    def num_channels(self) -> int:
        """Input channels of the stored data."""
        return int(self._case(self.case_ids[0])[0].shape[0])

    def sample_batch(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One batch.

        Returns:
            ``image`` float32 ``(B, C, *patch)`` and ``seg`` int16 ``(B, 1, *patch)``.
        """
        settings = self.settings
        first_forced = round(settings.batch_size * (1 - settings.oversample_foreground))
        images, segs = [], []
        for index in range(settings.batch_size):
            case_id = self.case_ids[int(rng.integers(len(self.case_ids)))]
            image, seg = self.sample_patch(case_id, force_foreground=index >= first_forced, rng=rng)
            images.append(image)
            segs.append(seg)
        return np.stack(images), np.stack(segs)[:, None]

    def sample_patch(self, case_id: str, force_foreground: bool,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One patch ``(C, *patch)`` float32 and its labels ``(*patch)`` int16 from a case."""
        data, seg, properties = self._case(case_id)
        patch = self.settings.patch_size
        centre = self._foreground_voxel(properties, rng) if force_foreground else None
        slice_index: int | None = None
        spatial = data.shape[1:]
        if len(patch) < len(spatial):  # 2D patches from 3D data: pick a slice first
            slice_index = int(centre[0]) if centre is not None else int(rng.integers(spatial[0]))
            spatial = spatial[1:]
            centre = centre[1:] if centre is not None else None
        starts = _patch_start(spatial, patch, centre, rng)
        boxes = tuple(slice(max(s, 0), min(s + p, n)) for s, p, n in zip(starts, patch, spatial, strict=True))
        prefix = (slice_index,) if slice_index is not None else ()
        image_crop = np.asarray(data[(slice(None), *prefix, *boxes)], dtype=np.float32)
        seg_crop = np.asarray(seg[(*prefix, *boxes)], dtype=np.int16)
        pads = [(b.start - s, s + p - b.stop) for b, s, p in zip(boxes, starts, patch, strict=True)]
        if any(before or after for before, after in pads):
            image_crop = np.pad(image_crop, [(0, 0), *pads], constant_values=0)
            seg_crop = np.pad(seg_crop, pads, constant_values=PAD_LABEL)
        return image_crop, seg_crop

    @staticmethod
    def _foreground_voxel(properties: CaseProperties, rng: np.random.Generator) -> np.ndarray | None:
        present = sorted(label for label, coords in properties.class_locations.items() if coords)
        if not present:
            return None  # a case without foreground: fall back to a random patch
        label = present[int(rng.integers(len(present)))]
        locations = properties.locations(label)
        return locations[int(rng.integers(len(locations)))]


def _patch_start(shape: Sequence[int], patch: Sequence[int], centre: np.ndarray | None,
                 rng: np.random.Generator) -> list[int]:
    """Lower corner of the patch; may be negative (padding) when the image is smaller than the patch."""
    starts = []
    for axis, (size, length) in enumerate(zip(shape, patch, strict=True)):
        need = max(0, length - size)
        low = -(need // 2)
        high = size + need // 2 + need % 2 - length
        if centre is None:
            starts.append(int(rng.integers(low, high + 1)))
        else:
            starts.append(int(min(max(int(centre[axis]) - length // 2, low), high)))
    return starts
