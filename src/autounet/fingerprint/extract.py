"""Fingerprint extraction, storage and reuse.

Per case (one case in memory per worker): spacing, shape, shape after cropping to the non-zero region, and a
fixed number of foreground intensities per channel; for a dataset with instance labels also the box extent
(mm) of every instance, which detection planning fits anchors to (foreground: instance id > 0). The samples
are drawn with replacement, as nnU-Net v2 does, so every case contributes equally however small its
foreground; unlike nnU-Net (which samples ``1e8 / num_cases`` per case and also computes unused per-case
percentiles) the number per case is fixed, which bounds memory and time. Each case's generator is seeded from
the global seed and the case id, so the result does not depend on the number of processes or the order of the
cases.
"""

from __future__ import annotations

import functools
import logging
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from autounet.dataset.raw import RawCase, RawDataset
from autounet.errors import ConfigError, DatasetError
from autounet.fingerprint._nnunet import fingerprint_from_nnunet, is_nnunet_fingerprint
from autounet.fingerprint.bbox import bbox_slices, mask_bbox, nonzero_mask
from autounet.fingerprint.model import ChannelIntensityStats, Fingerprint
from autounet.io.geometry import describe_dimensionality
from autounet.io.images import read_image, read_segmentation
from autounet.io.jsonio import read_json
from autounet.io.serialization import from_dict, save_dataclass
from autounet.progress import parallel_map

__all__ = [
    "FINGERPRINT_FILENAME",
    "case_seed",
    "ensure_fingerprint",
    "extract_fingerprint",
    "instance_box_sizes_mm",
    "intensity_stats",
    "load_fingerprint",
    "locate_ranks",
    "sample_foreground",
    "save_fingerprint",
]

logger = logging.getLogger(__name__)

FINGERPRINT_FILENAME = "fingerprint.json"
_PERCENTILES = (0.5, 50.0, 99.5)
# Largest image edge a fingerprint may record, in voxels: far beyond any scanner, small enough for int32 sizes.
_MAX_EDGE = 2**20


@dataclass(frozen=True)
class _CaseSummary:
    """What one worker sends back: a few numbers and ``(C, samples)`` float32 intensities."""

    ndim: int
    spacing: tuple[float, ...]
    shape_before_crop: tuple[int, ...]
    shape_after_crop: tuple[int, ...]
    samples: np.ndarray
    box_sizes_mm: tuple[tuple[float, ...], ...] | None = None


def case_seed(seed: int, case_id: str) -> np.random.Generator:
    """A generator that depends only on the global seed and the case id (not on process or order)."""
    return np.random.default_rng([seed, zlib.crc32(case_id.encode("utf-8"))])


def sample_foreground(mask: np.ndarray, num_samples: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Draw voxel positions uniformly, with replacement, from the ``True`` voxels of a mask.

    Args:
        mask: Boolean array ``(*spatial)``.
        num_samples: How many positions to draw.
        rng: Source of randomness.

    Returns:
        One index array per axis (usable as ``array[indices]``), in increasing flat order; empty arrays
        when the mask is empty.
    """
    total = int(np.count_nonzero(mask))
    if total == 0 or num_samples <= 0:
        return tuple(np.zeros(0, dtype=np.intp) for _ in range(mask.ndim))
    ranks = np.sort(rng.integers(0, total, size=num_samples))
    return np.unravel_index(locate_ranks(mask, ranks), mask.shape)


def locate_ranks(mask: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Flat indices of the ``ranks``-th ``True`` voxels of a mask (in C order).

    Works slab by slab along the first axis, so memory stays at one slab plus the result, never one index
    per ``True`` voxel.

    Args:
        mask: Boolean array ``(*spatial)``.
        ranks: Sorted ranks, each below the number of ``True`` voxels.

    Returns:
        intp array of flat indices, one per rank.
    """
    cumulative = np.cumsum(mask.reshape(mask.shape[0], -1).sum(axis=1, dtype=np.int64))
    starts = np.concatenate(([0], cumulative[:-1]))
    slabs = np.searchsorted(cumulative, ranks, side="right")
    flat = np.empty(ranks.size, dtype=np.intp)
    slab_size = int(np.prod(mask.shape[1:]))
    # Group boundaries of equal slab numbers (ranks are sorted, so groups are contiguous).
    bounds = np.flatnonzero(np.diff(slabs, prepend=-1, append=mask.shape[0] + 1))
    for first, stop in zip(bounds[:-1], bounds[1:], strict=True):
        slab = int(slabs[first])
        positions = np.flatnonzero(mask[slab])
        flat[first:stop] = positions[ranks[first:stop] - starts[slab]] + slab * slab_size
    return flat


def _analyze_case(case: RawCase, samples_per_case: int, seed: int) -> _CaseSummary:
    image, geometry = read_image(case.image_files)
    if case.label_file is None:
        raise DatasetError(f"case '{case.case_id}' has no label file; the fingerprint needs labels")
    seg, _ = read_segmentation(case.label_file)
    if seg.shape != image.shape[1:]:
        raise DatasetError(f"label shape {seg.shape} differs from the image shape {image.shape[1:]}",
                           case.label_file)
    bbox = mask_bbox(nonzero_mask(image))
    window = bbox_slices(bbox)
    shape_after = tuple(stop - start for start, stop in bbox)
    # Foreground inside the crop only, as nnU-Net samples from the cropped case.
    indices = sample_foreground(seg[window] > 0, samples_per_case, case_seed(seed, case.case_id))
    samples = np.stack([channel[window][indices] for channel in image]).astype(np.float32, copy=False)
    spacing = tuple(float(s) for s in geometry.spacing)
    boxes = instance_box_sizes_mm(seg, spacing) if case.instances_file is not None else None
    return _CaseSummary(ndim=geometry.ndim, spacing=spacing,
                        shape_before_crop=tuple(int(s) for s in image.shape[1:]),
                        shape_after_crop=shape_after, samples=samples, box_sizes_mm=boxes)


def instance_box_sizes_mm(instance_map: np.ndarray, spacing: tuple[float, ...]) -> tuple[tuple[float, ...], ...]:
    """The extent in mm of the bounding box of every instance (ids 1..N, increasing) of an instance map.

    Args:
        instance_map: Integer ``(*spatial)`` map, 0 background.
        spacing: Voxel spacing in mm, same axis order.

    Returns:
        One ``(extent_axis0, ...)`` row per instance present.
    """
    found = ndimage.find_objects(np.asarray(instance_map).astype(np.int64, copy=False))
    return tuple(tuple(float((s.stop - s.start) * sp) for s, sp in zip(slices, spacing, strict=True))
                 for slices in found if slices is not None)


def intensity_stats(values: np.ndarray) -> ChannelIntensityStats:
    """nnU-Net's foreground statistics of one channel's samples (population std, linear percentiles).

    Raises:
        DatasetError: No samples (no labelled voxel in any case).
    """
    if values.size == 0:
        raise DatasetError("no foreground (label > 0) voxel in any training case; intensity statistics "
                           "need labelled voxels")
    values = np.asarray(values, dtype=np.float64)
    low, median, high = np.percentile(values, _PERCENTILES)
    return ChannelIntensityStats(mean=float(values.mean()), median=float(median), std=float(values.std()),
                                 min=float(values.min()), max=float(values.max()),
                                 percentile_00_5=float(low), percentile_99_5=float(high))


def extract_fingerprint(dataset: RawDataset, num_processes: int = 1, samples_per_case: int = 10000,
                        seed: int = 1234) -> Fingerprint:
    """Fingerprint a raw dataset.

    Args:
        dataset: The raw dataset (training cases with labels).
        num_processes: Worker processes; the result is identical for any number.
        samples_per_case: Foreground intensities drawn (with replacement) per case and channel.
        seed: Global seed of the intensity sampling.

    Returns:
        The fingerprint, cases in dataset order.

    Raises:
        DatasetError: Unreadable case, label/image shape mismatch, cases of different dimensionality or
            channel count, or no foreground voxel at all.
    """
    worker = functools.partial(_analyze_case, samples_per_case=samples_per_case, seed=seed)
    summaries = parallel_map(worker, list(dataset.cases), num_processes, "Fingerprint")
    _check_consistent(dataset, summaries)
    channels = summaries[0].samples.shape[0]
    stats = tuple(intensity_stats(np.concatenate([s.samples[c] for s in summaries])) for c in range(channels))
    return Fingerprint(
        schema_version=Fingerprint.SCHEMA_VERSION,
        ndim=summaries[0].ndim,
        case_ids=tuple(case.case_id for case in dataset.cases),
        spacings=tuple(s.spacing for s in summaries),
        shapes_before_crop=tuple(s.shape_before_crop for s in summaries),
        shapes_after_crop=tuple(s.shape_after_crop for s in summaries),
        relative_sizes_after_crop=tuple(float(np.prod(s.shape_after_crop) / np.prod(s.shape_before_crop))
                                        for s in summaries),
        foreground_intensity=stats,
        num_foreground_samples_per_case=samples_per_case,
        **_box_statistics(summaries),
    )


def _box_statistics(summaries: list[_CaseSummary]) -> dict[str, Any]:
    if any(s.box_sizes_mm is None for s in summaries):
        return {}
    return {"boxes_per_case": tuple(len(s.box_sizes_mm or ()) for s in summaries),
            "box_sizes_mm": tuple(box for s in summaries for box in s.box_sizes_mm or ())}


def _check_consistent(dataset: RawDataset, summaries: list[_CaseSummary]) -> None:
    first = summaries[0]
    # A single slice stored as 3D counts as 2D (see spatial_dimensionality), so a 2D NIfTI among 3D ones is caught.
    expected = describe_dimensionality(first.shape_before_crop)
    for case, summary in zip(dataset.cases, summaries, strict=True):
        found = describe_dimensionality(summary.shape_before_crop)
        if found != expected or summary.samples.shape[0] != first.samples.shape[0]:
            raise DatasetError(f"case '{case.case_id}' has {found} images with {summary.samples.shape[0]} "
                               f"channel(s), the first case {expected} with {first.samples.shape[0]}; all cases "
                               "must have the same dimensionality and channels; run 'autounet verify'",
                               case.image_files[0])


def save_fingerprint(path: str | Path, fingerprint: Fingerprint) -> None:
    """Write a fingerprint as indented JSON, atomically."""
    save_dataclass(path, fingerprint)


def load_fingerprint(path: str | Path) -> Fingerprint:
    """Read an autounet ``fingerprint.json`` or an nnU-Net v2 ``dataset_fingerprint.json``.

    The format is recognised by its keys. An nnU-Net file lacks case ids and per-case sizes before
    cropping; see :func:`autounet.fingerprint._nnunet.fingerprint_from_nnunet` for how they are filled.

    Raises:
        ConfigError: Missing, unreadable or malformed file (the message names file and field).
    """
    data: Any = read_json(path)
    if is_nnunet_fingerprint(data):
        fingerprint = fingerprint_from_nnunet(data, Path(path))
    else:
        fingerprint = from_dict(Fingerprint, data, source=path)
    _check_values(fingerprint, Path(path))
    return fingerprint


def _check_values(fingerprint: Fingerprint, path: Path) -> None:
    """Plans computed from a NaN, zero or negative spacing or size would be nonsense (or crash deep in planning);
    the types were checked when the file was parsed, the values are checked here."""
    count = len(fingerprint.case_ids)
    if fingerprint.ndim not in (2, 3) or count == 0 or not fingerprint.foreground_intensity:
        raise ConfigError(f"field 'ndim' is {fingerprint.ndim} with {count} case(s) and "
                          f"{len(fingerprint.foreground_intensity)} channel(s); a fingerprint needs ndim 2 or 3, cases "
                          "and channels (extract the fingerprint again)", path)
    for name in ("spacings", "shapes_before_crop", "shapes_after_crop", "relative_sizes_after_crop"):
        if len(getattr(fingerprint, name)) != count:
            raise ConfigError(f"field '{name}' has {len(getattr(fingerprint, name))} entries for {count} case(s)", path)
    for index, spacing in enumerate(fingerprint.spacings):
        if len(spacing) != fingerprint.ndim or not all(math.isfinite(s) and s > 0 for s in spacing):
            raise ConfigError(f"spacings[{index}] is {list(spacing)}; every voxel spacing must be a finite "
                              f"number > 0, {fingerprint.ndim} per case (extract the fingerprint again)", path)
    for name in ("shapes_before_crop", "shapes_after_crop"):
        for index, shape in enumerate(getattr(fingerprint, name)):
            if len(shape) != fingerprint.ndim or not all(0 < s <= _MAX_EDGE for s in shape):
                raise ConfigError(f"{name}[{index}] is {list(shape)}; every size must be a whole number in "
                                  f"1..{_MAX_EDGE}, {fingerprint.ndim} per case", path)
    for index, size in enumerate(fingerprint.relative_sizes_after_crop):
        if not (math.isfinite(size) and 0 < size <= 1):
            raise ConfigError(f"relative_sizes_after_crop[{index}] is {size}; it must lie in (0, 1]", path)
    for channel, stats in enumerate(fingerprint.foreground_intensity):
        for name, value in vars(stats).items():
            if not math.isfinite(value):
                raise ConfigError(f"foreground_intensity[{channel}].{name} is {value}; it must be finite", path)


def ensure_fingerprint(dataset: RawDataset, preprocessed_dir: Path, num_processes: int,
                       overwrite: bool = False) -> Fingerprint:
    """Load ``preprocessed_dir/fingerprint.json`` if present, else extract and write it.

    Args:
        dataset: The raw dataset.
        preprocessed_dir: This dataset's preprocessed folder (``<preprocessed>/<DatasetName>``).
        num_processes: Worker processes for extraction.
        overwrite: Extract again even if the file exists.

    Returns:
        The fingerprint.
    """
    path = Path(preprocessed_dir) / FINGERPRINT_FILENAME
    if path.is_file() and not overwrite:
        fingerprint = load_fingerprint(path)
        if dataset.description.instance_labels and not fingerprint.boxes_per_case:
            logger.info("%s has no box statistics for this instance-label dataset; extracting again", path)
            return _extract_and_save(dataset, path, num_processes)
        logger.info("reusing the fingerprint in %s (extract again with --overwrite)", path)
        if set(fingerprint.case_ids) != {case.case_id for case in dataset.cases}:
            logger.warning("%s lists other cases than %s has now; extract it again with --overwrite",
                           path, dataset.root)
        return fingerprint
    return _extract_and_save(dataset, path, num_processes)


def _extract_and_save(dataset: RawDataset, path: Path, num_processes: int) -> Fingerprint:
    fingerprint = extract_fingerprint(dataset, num_processes=num_processes)
    save_fingerprint(path, fingerprint)
    logger.info("fingerprint of %d case(s) written to %s", len(fingerprint.case_ids), path)
    return fingerprint
