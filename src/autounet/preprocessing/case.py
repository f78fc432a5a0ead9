"""Preprocessing of one case: transpose, crop, normalise, resample, sample class locations.

The order is nnU-Net v2's: normalisation comes before resampling, because the non-zero mask it may use is
exact only at the original resolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autounet.errors import ConfigError
from autounet.fingerprint.extract import case_seed, locate_ranks
from autounet.io.geometry import ImageGeometry
from autounet.planning.plans import ConfigurationPlan, Plans
from autounet.preprocessing.crop import crop_to_nonzero
from autounet.preprocessing.normalize import needs_mask, normalize
from autounet.preprocessing.properties import CaseProperties, coordinate_tuples
from autounet.preprocessing.resample import compute_new_shape, resample_to_shape

__all__ = ["CaseOptions", "preprocess_case", "sample_class_locations", "target_spacing"]


@dataclass(frozen=True)
class CaseOptions:
    """Per-case settings that are not part of the plans.

    Attributes:
        case_id: Recorded in the properties; also seeds the class-location sampling.
        foreground_labels: Labels to record locations for (``None``: every positive value present). Pass
            the dataset's labels so that absent classes get an empty entry and an ignore label is skipped.
        max_locations_per_class: Locations kept per class (nnU-Net: 10,000) ...
        min_location_fraction: ... but at least this fraction of the class's voxels (nnU-Net: 1%).
        seed: Global seed of the sampling.
    """

    case_id: str = "case"
    foreground_labels: tuple[int, ...] | None = None
    max_locations_per_class: int = 10000
    min_location_fraction: float = 0.01
    seed: int = 1234


def target_spacing(spacing: Sequence[float], configuration: ConfigurationPlan) -> tuple[float, ...]:
    """The spacing a case is resampled to.

    A 2D configuration of 3D data keeps the slice axis (axis 0, after the plan's transposition) at the
    case's own spacing.

    Raises:
        ConfigError: The configuration's spacing does not fit the data's dimensionality.
    """
    planned = tuple(float(s) for s in configuration.spacing)
    if len(planned) == len(spacing):
        return planned
    if len(planned) == len(spacing) - 1 == 2:
        return (float(spacing[0]), *planned)
    raise ConfigError(f"configuration '{configuration.name}' has a {len(planned)}-value spacing for "
                      f"{len(spacing)}D data")


def sample_class_locations(seg: np.ndarray, labels: Sequence[int],
                           options: CaseOptions) -> dict[int, tuple[tuple[int, ...], ...]]:
    """Sample voxel coordinates of each class, without replacement (nnU-Net's rule).

    Per class: ``max(min(max_locations_per_class, n), ceil(n * min_location_fraction))`` of its ``n``
    voxels, drawn with a generator seeded by the case id, so reruns give identical results.

    Args:
        seg: Label map ``(*spatial)``.
        labels: Classes to sample.
        options: Counts and seed.

    Returns:
        Label -> coordinates in increasing C order; an empty tuple for a class absent from ``seg``.
    """
    rng = case_seed(options.seed, options.case_id)
    locations: dict[int, tuple[tuple[int, ...], ...]] = {}
    is_label = np.empty(seg.shape, dtype=bool)
    for label in sorted(int(v) for v in labels):
        np.equal(seg, label, out=is_label)
        total = int(np.count_nonzero(is_label))
        if total == 0:
            locations[label] = ()
            continue
        count = max(min(options.max_locations_per_class, total),
                    math.ceil(total * options.min_location_fraction))
        ranks = np.sort(rng.choice(total, size=count, replace=False))
        coords = np.stack(np.unravel_index(locate_ranks(is_label, ranks), seg.shape), axis=1)
        locations[label] = coordinate_tuples(coords)
    return locations


def _check_inputs(image: np.ndarray, seg: np.ndarray | None, geometry: ImageGeometry, plans: Plans) -> None:
    if image.ndim != geometry.ndim + 1:
        raise ValueError(f"image of shape {image.shape} is not (C, *spatial) for {geometry.ndim}D geometry")
    if seg is not None and (seg.ndim not in (geometry.ndim, geometry.ndim + 1)
                            or seg.shape[seg.ndim - geometry.ndim:] != image.shape[1:]):
        raise ValueError(f"segmentation shape {seg.shape} differs from image shape {image.shape[1:]}")
    if sorted(plans.axis_order) != list(range(geometry.ndim)):
        raise ConfigError(f"the plans' axis order {plans.axis_order} does not fit {geometry.ndim}D images")


def preprocess_case(image: np.ndarray, seg: np.ndarray | None, geometry: ImageGeometry, plans: Plans,
                    configuration: ConfigurationPlan, options: CaseOptions | None = None,
                    ) -> tuple[np.ndarray, np.ndarray | None, CaseProperties]:
    """Preprocess one case for a configuration. The inputs are not modified.

    Args:
        image: ``(C, *spatial)`` raw intensities, raw axis order (as :func:`autounet.io.read_image`).
        seg: ``(*spatial)`` integer label map, ``(L, *spatial)`` for a case with several label maps (one per
            task, :class:`~autounet.dataset.labels.OutputLayout` order), or ``None`` for a case without labels.
        geometry: The image's geometry.
        plans: Supplies the axis order.
        configuration: Target spacing, normalisation and resampling.
        options: Case id, labels and sampling counts; defaults when ``None``.

    Returns:
        ``(data, seg, properties)``: float32 ``(C, *spatial)`` data; int8 (int16 beyond label 127) labels
        shaped like ``seg`` with -1 on background outside the non-zero region, or ``None``; and the
        properties (class locations of the first label map in ``class_locations``, of the others in
        ``further_map_class_locations``). Arrays are in the plan's axis order and C-contiguous.

    Raises:
        ConfigError: Plans that do not fit the case (axis order, channels, spacing, normalisation).
    """
    options = options or CaseOptions()
    _check_inputs(image, seg, geometry, plans)
    axes = tuple(plans.axis_order)
    image_t = image.transpose((0, *(a + 1 for a in axes)))
    stacked = seg is not None and seg.ndim == image.ndim  # several label maps
    seg_t = None if seg is None else seg.transpose((0, *(a + 1 for a in axes)) if stacked else axes)
    spacing = tuple(float(geometry.spacing[a]) for a in axes)
    cropped, seg_crop, bbox = crop_to_nonzero(image_t, seg_t)
    # The one copy of the image: contiguous float32, normalised in place.
    data = np.array(cropped, dtype=np.float32, order="C")
    shape_after_crop = tuple(int(s) for s in data.shape[1:])
    # Every label map marks the same outside region (-1), so the first one gives the mask.
    inside = (seg_crop[0] if stacked else seg_crop) >= 0 if needs_mask(configuration.normalization) else None
    normalize(data, inside, configuration.normalization)
    target = target_spacing(spacing, configuration)
    new_shape = compute_new_shape(shape_after_crop, spacing, target)
    data = resample_to_shape(data, new_shape, spacing, target, configuration.resampling)
    locations: list[dict[int, tuple[tuple[int, ...], ...]]] = [{}]
    seg_out = None
    if seg_t is not None:
        # Already the smallest signed dtype (int8 up to label 127): cropping chose it, resampling keeps it.
        maps = resample_to_shape(seg_crop if stacked else seg_crop[None], new_shape, spacing, target,
                                 configuration.resampling, is_seg=True)
        seg_out = maps if stacked else maps[0]
        locations = []
        for index, label_map in enumerate(maps):
            # The options' labels are those of the first map; further maps sample what they contain.
            labels = options.foreground_labels if index == 0 else None
            if labels is None:
                labels = tuple(int(v) for v in np.unique(label_map) if v > 0)
            locations.append(sample_class_locations(label_map, labels, options))
    properties = CaseProperties(
        schema_version=CaseProperties.SCHEMA_VERSION, case_id=options.case_id, original_geometry=geometry,
        shape_before_crop=tuple(int(s) for s in image_t.shape[1:]), bbox_used_for_cropping=bbox,
        shape_after_crop=shape_after_crop, spacing_after_resampling=target,
        shape_after_resampling=tuple(int(s) for s in data.shape[1:]), class_locations=locations[0],
        further_map_class_locations=tuple(locations[1:]))
    return data, seg_out, properties
