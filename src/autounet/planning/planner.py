"""The experiment planner: fingerprint + dataset.json + memory budget -> Plans, deterministically.

The heuristics follow nnU-Net v2's published defaults closely, so plans agree with nnU-Net's for the same
fingerprint (target spacing, axis order, strides, kernels, the low-resolution stage). Deliberate
differences are listed in the README ("Planning").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from autounet.dataset.description import DatasetDescription
from autounet.dataset.labels import OutputLayout
from autounet.errors import PlanError
from autounet.fingerprint.model import Fingerprint
from autounet.networks.memory import conv_feature_map_elements
from autounet.networks.spec import UNetSpec
from autounet.planning.detection import detection_configuration
from autounet.planning.plans import ChannelNormalization, ConfigurationPlan, Plans, ResamplingPlan, data_identifier
from autounet.planning.presets import PlannerPreset, get_preset
from autounet.planning.shapes import compute_new_shape
from autounet.planning.topology import plan_topology

__all__ = ["compute_new_shape", "fullres_target_spacing", "plan_experiment"]

logger = logging.getLogger(__name__)

ANISOTROPY_THRESHOLD = 3.0
MIN_BATCH_SIZE = 2
BASE_FEATURES = 32
LOWRES_PATCH_COVERAGE = 0.25  # plan a low-res stage when a full-res patch sees < 25% of the median image
LOWRES_SPACING_STEP = 1.03
NONZERO_MASK_THRESHOLD = 0.75  # normalise inside the non-zero mask when cropping kept < 3/4 of the voxels
_CHANNEL_SCHEMES = {"ct": "ct", "nonorm": "none", "none": "none", "zscore": "zscore",
                    "rescale_to_0_1": "rescale_0_1", "rescale_0_1": "rescale_0_1", "rgb_to_0_1": "rgb_to_0_1"}


def fullres_target_spacing(fingerprint: Fingerprint, threshold: float = ANISOTROPY_THRESHOLD) -> tuple[float, ...]:
    """Median spacing, except for a coarse axis with few voxels: there the 10th percentile.

    Taking the median along a strongly anisotropic axis (e.g. 10 mm slices against 1.5 mm in-plane, with
    some cases at 5 mm) would throw away half the slices of the finer cases; the 10th percentile keeps them,
    but never finer than the in-plane spacing.
    """
    spacings = np.asarray(fingerprint.spacings, dtype=np.float64)
    target = np.percentile(spacings, 50, axis=0)
    median_size = np.percentile(np.asarray(fingerprint.shapes_after_crop, dtype=np.float64), 50, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != worst]
    if not others:
        return tuple(float(t) for t in target)
    max_other_spacing = max(target[a] for a in others)
    anisotropic_spacing = target[worst] > threshold * max_other_spacing
    few_voxels = median_size[worst] * threshold < min(median_size[a] for a in others)
    if anisotropic_spacing and few_voxels:
        coarse = float(np.percentile(spacings[:, worst], 10))
        if coarse < max_other_spacing:
            coarse = max(max_other_spacing, coarse) + 1e-5
        target[worst] = coarse
    return tuple(float(t) for t in target)


def _axis_order(target_spacing: Sequence[float]) -> tuple[int, ...]:
    # The coarsest axis goes first so that 2D slices are always taken in-plane.
    if len(target_spacing) == 2:
        return (0, 1)
    worst = int(np.argmax(target_spacing))
    return (worst, *[a for a in range(len(target_spacing)) if a != worst])


@dataclass(frozen=True)
class _Budget:
    preset: PlannerPreset
    memory_gib: float
    in_channels: int
    num_outputs: int
    task_outputs: tuple[int, ...] = ()

    def elements(self, spec: UNetSpec, patch_size: tuple[int, ...]) -> int:
        # Without the low-resolution deep-supervision heads: the reference values were calibrated so.
        return conv_feature_map_elements(spec, patch_size, self.in_channels, self.num_outputs, deep_supervision=False)

    def reference(self, ndim: int) -> float:
        base = self.preset.reference_elements_3d if ndim == 3 else self.preset.reference_elements_2d
        return base * self.memory_gib / self.preset.reference_memory_gib

    def reference_batch(self, ndim: int) -> int:
        return self.preset.reference_batch_3d if ndim == 3 else self.preset.reference_batch_2d

    def too_large(self, elements: int, ndim: int) -> bool:
        if self.preset.patch_fits_at_min_batch:
            return elements / self.reference_batch(ndim) * MIN_BATCH_SIZE > self.reference(ndim)
        return elements > self.reference(ndim)


def _network(budget: _Budget, ndim: int, strides: tuple, kernels: tuple) -> UNetSpec:
    preset = budget.preset
    stages = len(strides)
    cap = preset.max_features_3d if ndim == 3 else preset.max_features_2d
    # The spec names the preset's network and each task's channels, so the memory estimate measures the
    # network that will be trained (an early-branching network's decoders included).
    return UNetSpec(ndim=ndim, encoder=preset.encoder,
                    features_per_stage=tuple(min(cap, BASE_FEATURES * 2**i) for i in range(stages)),
                    kernel_sizes=kernels, strides=strides, blocks_per_stage=preset.encoder_blocks[:stages],
                    convs_per_decoder_stage=preset.decoder_convs[: stages - 1], kind=preset.network,
                    task_outputs=budget.task_outputs)


def _initial_patch(spacing: Sequence[float], median_shape: Sequence[float]) -> list[float]:
    # Aspect ratio from the spacing (equal physical extent per axis), volume of a 256^3 (2D: 2048^2) patch,
    # then clipped to the median image: far too large on purpose, the memory loop shrinks it.
    inverse = 1.0 / np.asarray(spacing, dtype=np.float64)
    edge = 256.0**3 if len(spacing) == 3 else 2048.0**2
    initial = [round(v) for v in inverse * (edge / np.prod(inverse)) ** (1 / len(spacing))]
    return [min(i, m) for i, m in zip(initial, median_shape, strict=True)]


def _plan_network(spacing: Sequence[float], median_shape: Sequence[float], n_voxels_dataset: float,
                  budget: _Budget) -> tuple[tuple[int, ...], int, UNetSpec, float]:
    """Patch size, batch size, network and memory estimate (GiB) for one configuration."""
    ndim = len(spacing)
    topology = plan_topology(spacing, _initial_patch(spacing, median_shape))
    if topology.num_stages < 2:
        raise PlanError(f"median image {tuple(round(m) for m in median_shape)} is too small for a U-Net")
    spec = _network(budget, ndim, topology.strides, topology.kernel_sizes)
    elements = budget.elements(spec, topology.patch_size)
    while budget.too_large(elements, ndim):
        # Shrink the axis that is largest relative to the median image, by one step of its divisor; the
        # divisor is recomputed first so that no valid size (e.g. 224 between 256 and 192) is skipped.
        patch = list(topology.patch_size)
        axis = int(np.argsort([p / m for p, m in zip(patch, median_shape, strict=True)])[-1])
        probe = list(patch)
        probe[axis] -= topology.divisor[axis]
        patch[axis] -= plan_topology(spacing, probe).divisor[axis]
        topology = plan_topology(spacing, patch)
        spec = _network(budget, ndim, topology.strides, topology.kernel_sizes)
        elements = budget.elements(spec, topology.patch_size)
    reference, reference_batch = budget.reference(ndim), budget.reference_batch(ndim)
    batch_size = round(reference / elements * reference_batch)
    # Cap the batch so one step sees at most a fraction of the dataset (overfitting on small datasets).
    dataset_cap = round(n_voxels_dataset * budget.preset.max_dataset_fraction / math.prod(topology.patch_size))
    batch_size = max(min(batch_size, dataset_cap), MIN_BATCH_SIZE)
    memory_gib = budget.memory_gib * elements * batch_size / (reference * reference_batch)
    return topology.patch_size, batch_size, spec, memory_gib


def _normalization(description: DatasetDescription, fingerprint: Fingerprint) -> tuple[ChannelNormalization, ...]:
    use_mask = fingerprint.median_relative_size_after_crop < NONZERO_MASK_THRESHOLD
    schemes = []
    for channel, name in sorted(description.channel_names.items()):
        scheme = _CHANNEL_SCHEMES.get(name.casefold(), "zscore")
        if scheme == "ct":
            stats = fingerprint.foreground_intensity[channel]
            schemes.append(ChannelNormalization("ct", False, stats.percentile_00_5, stats.percentile_99_5,
                                                stats.mean, stats.std))
        else:
            # Only z-scoring leaves the outside of the mask at zero meaningfully; CT uses global values.
            schemes.append(ChannelNormalization(scheme, use_mask and scheme == "zscore"))  # type: ignore[arg-type]
    return tuple(schemes)


@dataclass(frozen=True)
class _Context:
    budget: _Budget
    normalization: tuple[ChannelNormalization, ...]
    axis_order: tuple[int, ...]


def _configuration(name: str, spacing: Sequence[float], median_shape: Sequence[float], n_voxels: float,
                   context: _Context, batch_dice: bool) -> ConfigurationPlan | None:
    try:
        patch, batch, spec, memory = _plan_network(spacing, median_shape, n_voxels, context.budget)
    except PlanError as exc:
        logger.warning("skipping configuration %s: %s", name, exc.problem)
        return None
    config = ConfigurationPlan(
        name=name, ndim=len(spacing), spacing=tuple(float(s) for s in spacing),
        median_shape=tuple(int(round(m)) for m in median_shape), patch_size=patch, batch_size=batch,
        network=spec, normalization=context.normalization, resampling=ResamplingPlan(
            anisotropy_threshold=ANISOTROPY_THRESHOLD), batch_dice=batch_dice, estimated_memory_gib=round(memory, 3))
    return replace(config, data_identifier=data_identifier(config, context.axis_order))


def _plan_lowres(fullres: ConfigurationPlan, median_shape: np.ndarray, num_cases: int,
                 context: _Context) -> ConfigurationPlan | None:
    """Coarsen the spacing in 3% steps until a patch covers a quarter of the (coarser) median image."""
    fullres_spacing = np.asarray(fullres.spacing)
    spacing = fullres_spacing.copy()
    median_voxels = float(np.prod(median_shape))
    patch_voxels = float(math.prod(fullres.patch_size))
    lowres = None
    while patch_voxels / median_voxels < LOWRES_PATCH_COVERAGE:
        coarse = spacing.max() / spacing > 2
        # Axes much finer than the coarsest catch up first; then all axes coarsen together.
        spacing = np.where(coarse, spacing * LOWRES_SPACING_STEP, spacing) if coarse.any() \
            else spacing * LOWRES_SPACING_STEP
        shape = fullres_spacing / spacing * median_shape
        median_voxels = float(np.prod(shape))
        lowres = _configuration("3d_lowres", spacing, [round(s) for s in shape], median_voxels * num_cases,
                                context, batch_dice=False)
        if lowres is None:
            return None
        patch_voxels = float(math.prod(lowres.patch_size))
    if lowres is None or float(np.prod(median_shape)) / median_voxels < 2:
        return None  # not worth a second stage: the low-res image would be less than half as small
    return lowres


def _with_detection(configurations: dict[str, ConfigurationPlan], fingerprint: Fingerprint, num_classes: int,
                    order: tuple[int, ...]) -> dict[str, ConfigurationPlan]:
    # Detection runs on the full-resolution configuration of the data's own dimensionality; 3D data too
    # thin for one (single slices) on the 2D configuration.
    base = configurations.get("3d_fullres") or configurations.get("2d")
    if base is None:
        raise PlanError("no full-resolution configuration fits, so no detection configuration can be planned")
    detection = detection_configuration(base, fingerprint, num_classes, order)
    return {**configurations, detection.name: detection}


def _budget(preset: PlannerPreset, memory_gib: float, description: DatasetDescription) -> _Budget:
    layout = OutputLayout.from_description(description)
    if len(layout.tasks) == 1:
        if preset.network != "unet":
            raise PlanError(f"planner preset '{preset.name}' is for datasets with several label maps; this one "
                            "has one")
        # nnU-Net's estimate counts the dataset.json's label entries, whatever the heads predict.
        return _Budget(preset, memory_gib, description.num_channels, len(description.labels))
    task_outputs = tuple(task.scheme.num_outputs for task in layout.tasks)
    return _Budget(preset, memory_gib, description.num_channels, sum(task_outputs), task_outputs)


def plan_experiment(fingerprint: Fingerprint, description: DatasetDescription, dataset_name: str,
                    preset: str = "default", gpu_memory_gib: float | None = None) -> Plans:
    """Plan all configurations for a dataset.

    Args:
        fingerprint: The dataset fingerprint (autounet's or one imported from nnU-Net).
        description: The dataset's ``dataset.json``.
        dataset_name: ``DatasetNNN_Name``, recorded in the plans.
        preset: ``default`` (plain U-Net), ``resenc_m``, ``resenc_l`` or ``resenc_xl``.
        gpu_memory_gib: Training memory budget; the preset's default (8 GiB for ``default``) if ``None``.

    Returns:
        Plans with ``2d``, and for 3D data ``3d_fullres`` plus, for large images, ``3d_lowres`` and
        ``3d_cascade_fullres``. A dataset with instance labels also gets its detection configuration,
        ``3d_det`` (``2d_det`` for 2D data, see :mod:`autounet.planning.detection`); the segmentation
        configurations stay, trained on the semantic map (the segmentation-to-boxes baseline).

    Raises:
        PlanError: Inconsistent inputs (channel count mismatch, empty fingerprint), no configuration fits,
            or an instance-label dataset without boxes in its fingerprint.
    """
    chosen = get_preset(preset)
    if not fingerprint.spacings:
        raise PlanError("the fingerprint lists no cases")
    if fingerprint.num_channels != description.num_channels:
        raise PlanError(f"fingerprint has {fingerprint.num_channels} channel(s) but dataset.json declares "
                        f"{description.num_channels}; re-run 'autounet fingerprint --overwrite'")
    memory = chosen.default_memory_gib if gpu_memory_gib is None else float(gpu_memory_gib)
    if memory <= 0:
        raise PlanError(f"GPU memory budget must be positive, got {memory}")
    budget = _budget(chosen, memory, description)
    spacing = fullres_target_spacing(fingerprint)
    order = _axis_order(spacing)
    context = _Context(budget, _normalization(description, fingerprint), order)
    shapes = [compute_new_shape(shape, sp, spacing)
              for shape, sp in zip(fingerprint.shapes_after_crop, fingerprint.spacings, strict=True)]
    median_shape = np.median(np.asarray(shapes, dtype=np.float64), axis=0)[list(order)]
    spacing_t = np.asarray(spacing)[list(order)]
    num_cases = len(fingerprint.spacings)
    n_voxels = float(np.prod(median_shape)) * num_cases
    configurations: dict[str, ConfigurationPlan] = {}
    if fingerprint.ndim == 3 and median_shape[0] > 1:
        fullres = _configuration("3d_fullres", spacing_t, median_shape, n_voxels, context, batch_dice=False)
        if fullres is not None:
            lowres = _plan_lowres(fullres, median_shape, num_cases, context)
            if lowres is not None:
                configurations["3d_lowres"] = replace(lowres, next_stage="3d_cascade_fullres")
                fullres = replace(fullres, batch_dice=True)
            configurations["3d_fullres"] = fullres
            if lowres is not None:
                configurations["3d_cascade_fullres"] = replace(fullres, name="3d_cascade_fullres",
                                                               previous_stage="3d_lowres")
    in_plane = slice(1, None) if fingerprint.ndim == 3 else slice(None)
    plan_2d = _configuration("2d", spacing_t[in_plane], median_shape[in_plane], n_voxels, context, batch_dice=True)
    if plan_2d is not None:
        configurations = {"2d": plan_2d, **configurations}
    if not configurations:
        raise PlanError(f"no configuration fits: median image shape {tuple(median_shape)} is too small")
    if description.instance_labels:
        configurations = _with_detection(configurations, fingerprint, len(description.instance_classes), order)
    return Plans(schema_version=Plans.SCHEMA_VERSION, dataset_name=dataset_name, planner=chosen.name,
                 gpu_memory_gib=memory, axis_order=order, original_median_spacing=fingerprint.median_spacing,
                 original_median_shape=tuple(int(round(v)) for v in np.median(
                     np.asarray(fingerprint.shapes_after_crop, dtype=np.float64), axis=0)),
                 configurations=configurations)
