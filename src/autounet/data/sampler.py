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
        final_patch_size: The patch the network sees (centre of the sampled patch after augmentation); ``None``
            when it is ``patch_size``. The sampled patch may then reach past the image by half the difference, so
            that the final patch still covers the image borders (nnU-Net's ``need_to_pad``).
    """

    patch_size: tuple[int, ...]
    batch_size: int
    oversample_foreground: float = 0.33
    final_patch_size: tuple[int, ...] | None = None


class PatchSampler:
    """Draws batches of patches from the preprocessed cases of one data folder.

    A 2D patch from 3D data is taken from one axis-0 slice (slice-wise training of the ``2d``
    configuration). Arrays are memory-mapped, so a batch reads only its patches from disk.

    For a cascade stage, ``previous_stage_folder`` holds the lower stage's label map of each case
    (``<case>.npy``, same grid as the case's data); it is cut at the same place as a second label channel, so
    augmentation moves it exactly like the labels.
    """

    def __init__(self, folder: Path, case_ids: Sequence[str], settings: SamplerSettings,
                 previous_stage_folder: Path | None = None) -> None:
        if not case_ids:
            raise DatasetError("no cases to sample from", folder)
        self.folder = Path(folder)
        self.case_ids = tuple(case_ids)
        self.settings = settings
        self.previous_stage_folder = Path(previous_stage_folder) if previous_stage_folder is not None else None
        self._cases: dict[str, tuple[np.ndarray, tuple[np.ndarray, ...], CaseProperties]] = {}
        self._locations: dict[tuple[str, int, int], np.ndarray] = {}

    def _case(self, case_id: str) -> tuple[np.ndarray, tuple[np.ndarray, ...], CaseProperties]:
        if case_id not in self._cases:
            data, seg, properties = load_case(self.folder, case_id, mmap=True)
            if seg is None:
                raise DatasetError(f"case '{case_id}' was preprocessed without labels", self.folder)
            # Stacked label maps (a detection configuration's semantic and instance maps) are cut alike.
            segs: tuple[np.ndarray, ...] = tuple(seg) if seg.ndim == data.ndim else (seg,)
            if self.previous_stage_folder is not None:
                path = self.previous_stage_folder / f"{case_id}.npy"
                try:
                    previous = np.load(path, mmap_mode="r")
                except (OSError, ValueError) as error:
                    raise DatasetError(f"cannot read the previous stage's prediction: {error}", path) from None
                if previous.shape != seg.shape[-previous.ndim:]:
                    raise DatasetError(f"previous-stage prediction has shape {previous.shape}, the case "
                                       f"{seg.shape}; retrain the previous stage with these plans", path)
                segs = (*segs, previous)
            self._cases[case_id] = (data, segs, properties)
        return self._cases[case_id]

    @property
    def num_label_channels(self) -> int:
        """Label channels of a batch: the label map(s) of the cases (one per task for several label maps, two
        for detection data: semantic, instances), plus the previous stage's labels for a cascade."""
        return len(self._case(self.case_ids[0])[1])

    @property
    def num_channels(self) -> int:
        """Input channels of the stored data."""
        return int(self._case(self.case_ids[0])[0].shape[0])

    def sample_batch(self, rng: np.random.Generator,
                     windows: Sequence[tuple[slice, ...] | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One batch.

        Args:
            rng: The batch's generator; the patches drawn depend on it alone.
            windows: Optionally, per sample, the part of the patch (slices of its spatial axes) that will be
                read, e.g. the centre crop of a sample that augmentation will not resample; only that part is
                written, the rest of that sample's arrays is left undefined. ``None`` entries mean the whole
                patch. The patches drawn are the same with or without windows.

        Returns:
            ``image`` float32 ``(B, C, *patch)`` and ``seg`` int16 ``(B, S, *patch)``: ``S`` is 1, or 2 with the
            previous stage's labels as the second channel.
        """
        settings = self.settings
        first_forced = round(settings.batch_size * (1 - settings.oversample_foreground))
        # Patches are written straight into the batch: no per-patch padding copy and no np.stack, which
        # together cost as much as reading the patches for 3D batches.
        images = np.empty((settings.batch_size, self.num_channels, *settings.patch_size), dtype=np.float32)
        segs = np.empty((settings.batch_size, self.num_label_channels, *settings.patch_size), dtype=np.int16)
        if windows is not None and len(windows) != settings.batch_size:
            raise ValueError(f"need one window per sample ({settings.batch_size}), got {len(windows)}")
        for index in range(settings.batch_size):
            case_id = self.case_ids[int(rng.integers(len(self.case_ids)))]
            window = windows[index] if windows is not None else None
            self._fill_patch(case_id, index >= first_forced, rng, images[index], segs[index], window)
        return images, segs

    def sample_patch(self, case_id: str, force_foreground: bool,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One patch ``(C, *patch)`` float32 and its labels ``(*patch)`` int16 (``(2, *patch)`` with the previous
        stage's labels second, for a cascade) from a case."""
        image = np.empty((self.num_channels, *self.settings.patch_size), dtype=np.float32)
        seg = np.empty((self.num_label_channels, *self.settings.patch_size), dtype=np.int16)
        self._fill_patch(case_id, force_foreground, rng, image, seg)
        return image, (seg[0] if len(seg) == 1 else seg)

    def _fill_patch(self, case_id: str, force_foreground: bool, rng: np.random.Generator, image_out: np.ndarray,
                    seg_out: np.ndarray, window: tuple[slice, ...] | None = None) -> None:
        """Write one patch into ``image_out`` ``(C, *patch)`` and ``seg_out`` ``(S, *patch)``, padding included;
        with a ``window`` (slices of the patch's spatial axes) only that part of it."""
        data, segs, properties = self._case(case_id)
        patch = self.settings.patch_size
        centre = self._foreground_voxel(case_id, properties, rng) if force_foreground else None
        slice_index: int | None = None
        spatial = data.shape[1:]
        if len(patch) < len(spatial):  # 2D patches from 3D data: pick a slice first
            slice_index = int(centre[0]) if centre is not None else int(rng.integers(spatial[0]))
            spatial = spatial[1:]
            centre = centre[1:] if centre is not None else None
        starts = _patch_start(spatial, patch, centre, rng, self.settings.final_patch_size)
        window = window or tuple(slice(0, p) for p in patch)
        # Padding first, then the part inside the image over it: the image part is small next to the patch
        # when augmentation samples a larger patch, so writing it twice costs little.
        image_out[(slice(None), *window)] = 0
        seg_out[(slice(None), *window)] = PAD_LABEL
        # the window in image coordinates, clipped to the image
        boxes = tuple(slice(max(s + w.start, 0), min(s + w.stop, n))
                      for s, w, n in zip(starts, window, spatial, strict=True))
        if any(b.stop <= b.start for b in boxes):
            return  # the window lies outside the image: all padding
        inside = tuple(slice(b.start - s, b.stop - s) for b, s in zip(boxes, starts, strict=True))
        prefix = (slice_index,) if slice_index is not None else ()
        # assigning from the memory-mapped slice reads just that part and converts it in the same pass
        image_out[(slice(None), *inside)] = data[(slice(None), *prefix, *boxes)]
        for channel, seg in enumerate(segs):
            seg_out[(channel, *inside)] = seg[(*prefix, *boxes)]

    def _foreground_voxel(self, case_id: str, properties: CaseProperties,
                          rng: np.random.Generator) -> np.ndarray | None:
        # Every class of every label map is a candidate, so a task's rare class (a one-pixel front line) is
        # drawn as often as any other; with one label map this is nnU-Net's choice among the case's classes.
        maps = (properties.class_locations, *properties.further_map_class_locations)
        present = [(index, label) for index, locations in enumerate(maps)
                   for label in sorted(label for label, coords in locations.items() if coords)]
        if not present:
            return None  # a case without foreground: fall back to a random patch
        map_index, label = present[int(rng.integers(len(present)))]
        key = (case_id, map_index, label)
        locations = self._locations.get(key)
        if locations is None:
            # converting the stored tuples to an array costs ~1 ms per call; do it once per case and class
            locations = self._locations[key] = properties.locations(label, map_index)
        return locations[int(rng.integers(len(locations)))]


def _patch_start(shape: Sequence[int], patch: Sequence[int], centre: np.ndarray | None,
                 rng: np.random.Generator, final_patch: Sequence[int] | None = None) -> list[int]:
    """Lower corner of the patch; may be negative (padding) when the image is smaller than the patch, or by up
    to half of ``patch - final_patch`` so that the final (centre) patch can reach every image border."""
    starts = []
    final = final_patch if final_patch is not None else patch
    for axis, (size, length, final_length) in enumerate(zip(shape, patch, final, strict=True)):
        need = max(0, length - size, length - final_length)
        low = -(need // 2)
        high = size + need // 2 + need % 2 - length
        if centre is None:
            starts.append(int(rng.integers(low, high + 1)))
        else:
            starts.append(int(min(max(int(centre[axis]) - length // 2, low), high)))
    return starts
