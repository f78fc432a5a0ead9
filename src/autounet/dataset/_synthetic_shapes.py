"""Case recipes of the synthetic example datasets: vectorised shape primitives and one recipe per kind.

Every recipe takes a ``numpy.random.Generator`` and a nominal shape and returns one case. Shapes are
defined in normalised coordinates (``-1..1`` along every array axis), so a recipe works at any size, from
the tiny volumes of unit tests to the defaults; structures keep a radius of at least 1.5 voxels so that
they survive tiny shapes. Nothing here touches a global random state: a case depends on its generator only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from autounet.io.geometry import ImageGeometry, WorldFrame

__all__ = ["CaseRecipe", "SyntheticCase", "ct_case", "mr_case", "multichannel_case", "png_case"]

Grid = tuple[np.ndarray, ...]
# direction[r][j] is world component r of array axis j: array (Z, Y, X) runs along world (z, y, x).
_AXIAL = ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))
# The voxel order of most CT volumes converted from DICOM: in RAS, array X runs to -x and Y to -y.
_AXIAL_FLIPPED = ((0.0, 0.0, -1.0), (0.0, -1.0, 0.0), (1.0, 0.0, 0.0))
_MIN_RADIUS_VOXELS = 1.5
# An elliptical cylinder is an ellipsoid whose radius along Z no volume reaches.
_ENDLESS = 1e6


@dataclass(frozen=True)
class SyntheticCase:
    """One generated case.

    Attributes:
        channels: One array per channel, each ``(Z, Y, X)`` or ``(Y, X)``, in the dtype to be written.
        segmentation: ``uint8`` label map of the same shape, values consecutive from 0.
        geometry: Where the voxels lie, in the world frame of the format the recipe is written in.
    """

    channels: tuple[np.ndarray, ...]
    segmentation: np.ndarray
    geometry: ImageGeometry


CaseRecipe = Callable[[np.random.Generator, tuple[int, ...]], SyntheticCase]


# ---------------------------------------------------------------------------------------------- primitives


def jitter_shape(rng: np.random.Generator, shape: tuple[int, ...], fraction: float) -> tuple[int, ...]:
    """Vary each axis by up to ``fraction`` of its size, and by at least one voxel when ``fraction > 0``."""
    if fraction <= 0:
        return tuple(shape)
    spread = [max(1, round(fraction * s)) for s in shape]
    return tuple(int(s + rng.integers(-d, d + 1)) for s, d in zip(shape, spread, strict=True))


def normalised_grid(shape: tuple[int, ...]) -> Grid:
    """Open grid of voxel-centre coordinates in ``(-1, 1)`` per axis, broadcastable to ``shape``."""
    axes = []
    for axis, size in enumerate(shape):
        view = [1] * len(shape)
        view[axis] = size
        axes.append(((np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0).reshape(view))
    return tuple(axes)


def min_radius(shape: tuple[int, ...]) -> np.ndarray:
    """The smallest radius, in normalised units per axis, that still spans a few voxels."""
    return np.array([2.0 * _MIN_RADIUS_VOXELS / s for s in shape])


def smooth_field(rng: np.random.Generator, grid: Grid, max_frequency: float,
                 num_waves: int = 6) -> np.ndarray:
    """A smooth random field scaled to ``max |f| == 1``: a sum of separable products of random cosines.

    Products of 1D cosines rather than filtered noise or plane waves: the cosines are evaluated per axis
    only, so a term costs one multiply-add per voxel, the shape is exact without resampling, and
    ``max_frequency`` (cycles per normalised unit) states the smoothness directly.
    """
    field = np.zeros(np.broadcast_shapes(*(g.shape for g in grid)))
    for _ in range(num_waves):
        term = np.asarray(rng.uniform(0.5, 1.0))
        for axis in grid:
            frequency = rng.uniform(-max_frequency, max_frequency)
            term = term * np.cos(2.0 * math.pi * frequency * axis + rng.uniform(0.0, 2.0 * math.pi))
        field += term
    peak = float(np.abs(field).max())
    return field / peak if peak > 0 else field


def texture(rng: np.random.Generator, shape: tuple[int, ...], sigma_voxels: float) -> np.ndarray:
    """Fine, zero-mean, unit-variance tissue texture: Gaussian-filtered white noise."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_voxels, mode="reflect")
    return noise / max(float(noise.std()), 1e-8)


def ellipsoid_distance(grid: Grid, centre: np.ndarray, radii: np.ndarray, angle: float = 0.0) -> np.ndarray:
    """Normalised ellipsoid distance (``< 1`` inside), rotated by ``angle`` radians in the last two axes."""
    offsets = [g - c for g, c in zip(grid, centre, strict=True)]
    if angle:
        cos, sin = math.cos(angle), math.sin(angle)
        first, second = offsets[-2], offsets[-1]
        offsets[-2], offsets[-1] = cos * first + sin * second, cos * second - sin * first
    return np.sqrt(sum((o / r) ** 2 for o, r in zip(offsets, radii, strict=True)))


def blob(grid: Grid, centre: np.ndarray, radii: np.ndarray, field: np.ndarray, amplitude: float,
         angle: float = 0.0) -> np.ndarray:
    """Boolean mask of an ellipsoid whose surface is pushed in and out by ``amplitude * field``."""
    return ellipsoid_distance(grid, centre, radii, angle) + amplitude * field < 1.0


def point_in(rng: np.random.Generator, centre: np.ndarray, radii: np.ndarray, fraction: float) -> np.ndarray:
    """A random point within ``fraction`` of an ellipsoid's radii (uniform in the unit ball, then scaled)."""
    direction = rng.standard_normal(len(centre))
    direction /= max(float(np.linalg.norm(direction)), 1e-8)
    return centre + radii * direction * fraction * rng.uniform(0.0, 1.0) ** (1.0 / len(centre))


def rician(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of a signal with complex Gaussian noise, as in magnitude MR images."""
    real = signal + rng.normal(0.0, sigma, size=signal.shape)
    return np.sqrt(real**2 + rng.normal(0.0, sigma, size=signal.shape) ** 2)


def partial_volume(image: np.ndarray, spacing: tuple[float, ...], fwhm_mm: float) -> np.ndarray:
    """Blur by a Gaussian point-spread function of ``fwhm_mm``, so that edges are not perfectly sharp."""
    return ndimage.gaussian_filter(image, [fwhm_mm / 2.355 / s for s in spacing], mode="nearest")


def _inside_border(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its outermost voxel layer cleared: recipes aim for that, this guarantees it."""
    inner = np.zeros_like(mask)
    inner[tuple(slice(1, -1) for _ in mask.shape)] = True
    return mask & inner


def _fitting_radii(rng: np.random.Generator, shape: tuple[int, ...], centre: np.ndarray, amplitude: float,
                   low: float) -> np.ndarray:
    """Radii of a body that, deformed by ``amplitude``, keeps at least two voxels of air on every side."""
    margin = np.maximum(4.0 / np.asarray(shape), 0.05)
    largest = (1.0 - margin - np.abs(centre)) / (1.0 + amplitude)
    return largest * rng.uniform(low, 1.0, size=len(shape))


def _scanner_geometry(rng: np.random.Generator, shape: tuple[int, ...], spacing: tuple[float, ...],
                      direction: tuple[tuple[float, ...], ...], frame: WorldFrame) -> ImageGeometry:
    # Scanners centre the volume near the isocentre, so the origin sits near minus half the field of view.
    extent = np.asarray(shape) * np.asarray(spacing)
    centre_offset = np.asarray(direction) @ (extent / 2.0)
    origin = np.round(-centre_offset + rng.uniform(-15.0, 15.0, size=len(shape)), 3)
    return ImageGeometry(spacing=spacing, origin=tuple(float(v) for v in origin), direction=direction,
                         world_frame=frame)


def _in_plane_spacing(rng: np.random.Generator, nominal: float, jitter: float) -> float:
    return round(float(nominal * rng.uniform(1.0 - jitter, 1.0 + jitter)), 4)


# ------------------------------------------------------------------------------------------------- MR head


def mr_case(rng: np.random.Generator, shape: tuple[int, ...]) -> SyntheticCase:
    """T1-like head, ``float32``: brain (1), ventricles (2), lesion (3, absent in about 1 case in 10).

    Spacing is ``(3.0, s, s)`` mm with ``s`` near 0.8; everything outside the head is exactly 0.
    """
    shape = jitter_shape(rng, shape, 0.06)
    in_plane = _in_plane_spacing(rng, 0.8, 0.06)
    spacing = (3.0, in_plane, in_plane)
    grid = normalised_grid(shape)
    head_centre = rng.uniform(-0.04, 0.04, size=3)
    head_radii = _fitting_radii(rng, shape, head_centre, 0.05, 0.88)
    head_field = smooth_field(rng, grid, 0.8)
    head = _inside_border(blob(grid, head_centre, head_radii, head_field, 0.05))
    # The skull's outer surface follows the scalp's, a few percent further in.
    skull_outer = blob(grid, head_centre, head_radii * rng.uniform(0.9, 0.93), head_field, 0.05)
    brain_centre = head_centre + rng.uniform(-0.02, 0.02, size=3)
    brain_radii = head_radii * rng.uniform(0.74, 0.8, size=3)
    brain = blob(grid, brain_centre, brain_radii, smooth_field(rng, grid, 1.0), 0.06) & head
    labels = _brain_labels(rng, grid, brain, brain_centre, brain_radii)
    tissue = np.where(head, 0.85, 0.0)
    tissue[skull_outer & ~brain] = 0.12
    tissue[brain] = 0.62 + 0.05 * texture(rng, shape, 1.0)[brain]
    tissue[labels == 2] = 0.2
    tissue[labels == 3] = rng.uniform(0.32, 0.44)
    tissue = partial_volume(tissue, spacing, 1.2)
    scale = 1000.0 * rng.uniform(0.8, 1.25)
    bias = np.exp(0.25 * smooth_field(rng, grid, 0.4))
    image = rician(rng, tissue * bias * scale, rng.uniform(0.025, 0.045) * scale)
    # Exact zeros outside the head (as after defacing/masking) give cropping to non-zero work to do.
    image = np.where(head, image, 0.0).astype(np.float32)
    return SyntheticCase((image,), labels, _scanner_geometry(rng, shape, spacing, _AXIAL, "RAS"))


def _brain_labels(rng: np.random.Generator, grid: Grid, brain: np.ndarray, centre: np.ndarray,
                  radii: np.ndarray) -> np.ndarray:
    """Brain 1, two ventricles 2 mirrored across the midline (X), an optional lesion 3."""
    floor = min_radius(brain.shape)
    labels = brain.astype(np.uint8)
    vent_radii = np.maximum(radii * rng.uniform([0.3, 0.3, 0.1], [0.45, 0.45, 0.16]), floor)
    spread = radii[2] * rng.uniform(0.12, 0.2)
    tilt = rng.uniform(0.1, 0.35)
    field = smooth_field(rng, grid, 1.2)
    for side in (-1.0, 1.0):
        vent_centre = centre + np.array([0.0, rng.uniform(-0.08, 0.08) * radii[1], side * spread])
        labels[blob(grid, vent_centre, vent_radii, field, 0.15, side * tilt) & brain] = 2
    if rng.uniform() < 0.9:
        lesion_centre = point_in(rng, centre, radii, 0.6)
        lesion_radii = np.maximum(radii * rng.uniform(0.1, 0.24) * rng.uniform(0.8, 1.2, size=3), floor)
        labels[blob(grid, lesion_centre, lesion_radii, smooth_field(rng, grid, 2.0), 0.25) & brain] = 3
    return labels


# ------------------------------------------------------------------------------------------------ CT torso


def ct_case(rng: np.random.Generator, shape: tuple[int, ...]) -> SyntheticCase:
    """Abdomen-like CT in Hounsfield units, ``int16``: organ (1, ~70 HU), contrast vessel (2, ~300 HU).

    An unlabelled spine (~500 HU), subcutaneous fat and bowel gas make the task more than thresholding.
    Spacing is ``(1.5, s, s)`` mm with ``s`` near 1.0, stored in the voxel order of DICOM conversions.
    """
    shape = jitter_shape(rng, shape, 0.06)
    in_plane = _in_plane_spacing(rng, 1.0, 0.08)
    spacing = (1.5, in_plane, in_plane)
    grid = normalised_grid(shape)
    body_centre = np.array([0.0, *rng.uniform(-0.04, 0.04, size=2)])
    body_radii = _fitting_radii(rng, shape, body_centre, 0.04, 0.82) * np.array([_ENDLESS, 1.0, 1.0])
    body_field = smooth_field(rng, grid, 0.8)
    body = blob(grid, body_centre, body_radii, body_field, 0.04)
    interior = blob(grid, body_centre, body_radii * [1.0, 0.86, 0.88], body_field, 0.04)
    # Array Y runs posterior in this voxel order: the spine sits at positive Y.
    spine_centre = body_centre + [0.0, 0.62 * body_radii[1], rng.uniform(-0.04, 0.04)]
    spine_radii = np.maximum([_ENDLESS, *(body_radii[1] * rng.uniform(0.9, 1.1) * np.array([0.2, 0.16]))],
                             min_radius(shape))
    spine = blob(grid, spine_centre, spine_radii, smooth_field(rng, grid, 2.0), 0.1) & interior
    labels = np.zeros(shape, dtype=np.uint8)
    # A liver-like organ on the patient's right, which is low X in this voxel order.
    organ_centre = np.array([rng.uniform(-0.15, 0.15),
                             body_centre[1] + body_radii[1] * rng.uniform(-0.2, 0.05),
                             body_centre[2] - body_radii[2] * rng.uniform(0.35, 0.5)])
    in_plane_radii = body_radii[1:] * rng.uniform([0.4, 0.35], [0.55, 0.5])
    organ_radii = np.maximum([rng.uniform(0.6, 0.9), *in_plane_radii], min_radius(shape))
    organ = blob(grid, organ_centre, organ_radii, smooth_field(rng, grid, 1.0), 0.12, rng.uniform(-0.4, 0.4))
    labels[organ & interior & ~spine] = 1
    labels[_vessel(rng, grid, spine_centre, body_radii) & interior] = 2
    hu = np.where(body, 40.0 + 10.0 * texture(rng, shape, 1.0), -1000.0)
    hu[body & ~interior] = -100.0
    hu[spine] = 500.0 + 60.0 * texture(rng, shape, 0.8)[spine]
    hu[labels == 1] = rng.uniform(60.0, 80.0) + 6.0 * texture(rng, shape, 1.5)[labels == 1]
    hu[labels == 2] = rng.uniform(250.0, 350.0)
    hu[_gas(rng, grid, interior & (labels == 0) & ~spine)] = -800.0
    hu = partial_volume(hu, spacing, 1.5) + rng.normal(0.0, rng.uniform(8.0, 18.0), size=shape)
    image = np.clip(np.round(hu), -1024, 3071).astype(np.int16)
    return SyntheticCase((image,), labels, _scanner_geometry(rng, shape, spacing, _AXIAL_FLIPPED, "RAS"))


def _vessel(rng: np.random.Generator, grid: Grid, spine_centre: np.ndarray,
            body_radii: np.ndarray) -> np.ndarray:
    """An aorta-like tube in front of the spine whose centre line wanders smoothly along Z."""
    z, y, x = grid
    radius = max(body_radii[1] * rng.uniform(0.1, 0.14), 2.0 * _MIN_RADIUS_VOXELS / min(y.size, x.size))
    centre_y = spine_centre[1] - body_radii[1] * rng.uniform(0.3, 0.38)
    centre_x = spine_centre[2] + body_radii[2] * rng.uniform(0.12, 0.22)
    wander = 0.3 * radius * np.sin(math.pi * rng.uniform(0.5, 1.5) * z + rng.uniform(0.0, 2.0 * math.pi))
    return ((y - centre_y - wander) / radius) ** 2 + ((x - centre_x + wander) / radius) ** 2 < 1.0


def _gas(rng: np.random.Generator, grid: Grid, allowed: np.ndarray) -> np.ndarray:
    """A few small unlabelled gas pockets in the soft tissue."""
    pockets = np.zeros(allowed.shape, dtype=bool)
    floor = min_radius(allowed.shape)
    for _ in range(int(rng.integers(0, 4))):
        centre = rng.uniform(-0.5, 0.5, size=3)
        pockets |= ellipsoid_distance(grid, centre, np.maximum(rng.uniform(0.04, 0.08, size=3), floor)) < 1.0
    return pockets & allowed


# ------------------------------------------------------------------------------------- two-channel MR pelvis


def multichannel_case(rng: np.random.Generator, shape: tuple[int, ...]) -> SyntheticCase:
    """Co-registered T1- and T2-like channels, ``uint16``: gland (1), lesion (2), cyst (3, most cases).

    The lesion matches the gland on T1 and is dark on T2; the cyst is dark on T1 and bright on T2, so both
    channels are needed. Spacing ``(2.5, s, s)`` mm, ``s`` near 1.0, ITK (LPS) frame.
    """
    shape = jitter_shape(rng, shape, 0.05)
    in_plane = _in_plane_spacing(rng, 1.0, 0.05)
    spacing = (2.5, in_plane, in_plane)
    grid, floor = normalised_grid(shape), min_radius(shape)
    body_centre = rng.uniform(-0.03, 0.03, size=3)
    body_radii = _fitting_radii(rng, shape, body_centre, 0.04, 0.85)
    body_field = smooth_field(rng, grid, 0.8)
    body = blob(grid, body_centre, body_radii, body_field, 0.04)
    interior = blob(grid, body_centre, body_radii * 0.85, body_field, 0.04)
    gland_centre = point_in(rng, body_centre, body_radii, 0.25)
    gland_radii = np.maximum(body_radii * rng.uniform(0.4, 0.55, size=3), floor)
    gland = blob(grid, gland_centre, gland_radii, smooth_field(rng, grid, 1.0), 0.1) & interior
    labels = gland.astype(np.uint8)
    lesion_centre = point_in(rng, gland_centre, gland_radii, 0.5)
    lesion_radii = np.maximum(gland_radii * rng.uniform(0.3, 0.45, size=3), floor)
    labels[blob(grid, lesion_centre, lesion_radii, smooth_field(rng, grid, 2.0), 0.2) & gland] = 2
    if rng.uniform() < 0.85:
        cyst_radii = np.maximum(body_radii * rng.uniform(0.1, 0.18), floor)
        labels[(ellipsoid_distance(grid, point_in(rng, body_centre, body_radii, 0.55), cyst_radii) < 1.0)
               & interior] = 3
    # Relative signal of (air, soft tissue, fat, gland, lesion, cyst) per channel.
    contrasts = {"T1": (0.0, 0.5, 0.9, 0.45, 0.45, 0.15), "T2": (0.0, 0.35, 0.7, 0.65, 0.3, 0.95)}
    tissue_class = np.where(body, np.where(interior, 1, 2), 0)
    tissue_class = np.where(labels > 0, labels + 2, tissue_class)
    channels = []
    for levels in contrasts.values():
        tissue = np.asarray(levels)[tissue_class] + 0.04 * texture(rng, shape, 1.0) * body
        tissue = partial_volume(tissue, spacing, 1.5) * np.exp(0.2 * smooth_field(rng, grid, 0.4))
        scale = 800.0 * rng.uniform(0.8, 1.25)
        # Integers, as scanners store them; float noise would also compress four times worse.
        channels.append(np.round(rician(rng, tissue * scale, 0.03 * scale)).astype(np.uint16))
    return SyntheticCase(tuple(channels), labels, _scanner_geometry(rng, shape, spacing, _AXIAL, "LPS"))


# ------------------------------------------------------------------------------------------------ 2D PNG


def png_case(rng: np.random.Generator, shape: tuple[int, ...]) -> SyntheticCase:
    """Grey ``uint8`` picture: bright discs (1), dark bars (2), unlabelled bright rings as distractors."""
    grid = normalised_grid(shape)
    pixels = np.asarray(shape, dtype=np.float64)
    side = float(pixels.min())
    image = 90.0 + 25.0 * smooth_field(rng, grid, 1.0) + 6.0 * texture(rng, tuple(shape), 2.0)
    labels = np.zeros(shape, dtype=np.uint8)
    # Rings first: a disc or bar drawn later covers them, keeping image and labels consistent.
    for label, count in ((0, int(rng.integers(0, 3))), (1, int(rng.integers(1, 5)))):
        for _ in range(count):
            radius = max(rng.uniform(0.04, 0.09) * side, 2.0)
            distance = ellipsoid_distance(grid, rng.uniform(-0.75, 0.75, size=2), 2.0 * radius / pixels)
            mask = (distance < 1.0) & (distance > 0.6) if label == 0 else distance < 1.0
            image[mask] = rng.uniform(150.0, 200.0) - 20.0 * distance[mask]
            labels[mask] = label
    for _ in range(int(rng.integers(1, 4))):
        bar = _bar(rng, grid, pixels, side)
        image[bar] = rng.uniform(25.0, 60.0)
        labels[bar] = 2
    image = ndimage.gaussian_filter(image, 0.7) + rng.normal(0.0, rng.uniform(4.0, 10.0), size=image.shape)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return SyntheticCase((image,), labels, ImageGeometry.default(2))


def _bar(rng: np.random.Generator, grid: Grid, pixels: np.ndarray, side: float) -> np.ndarray:
    """A rotated rectangle, measured in pixels so that it is not squashed in non-square images."""
    y, x = (g * p / 2.0 for g, p in zip(grid, pixels, strict=True))
    centre = rng.uniform(-0.65, 0.65, size=2) * pixels / 2.0
    angle = rng.uniform(0.0, math.pi)
    along = (y - centre[0]) * math.cos(angle) + (x - centre[1]) * math.sin(angle)
    across = -(y - centre[0]) * math.sin(angle) + (x - centre[1]) * math.cos(angle)
    half_length = rng.uniform(0.12, 0.3) * side
    half_width = max(rng.uniform(0.02, 0.04) * side, _MIN_RADIUS_VOXELS)
    return (np.abs(along) < half_length) & (np.abs(across) < half_width)
