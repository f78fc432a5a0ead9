"""Plans: every pipeline setting decided for a dataset, as typed dataclasses written as readable JSON.

A plans file holds named configurations (``2d``, ``3d_fullres``, ``3d_lowres``, ``3d_cascade_fullres``, and
for datasets with instance labels the detection configuration ``3d_det`` or ``2d_det``, which carries a
:class:`DetectionPlan`).
On disk a configuration may say ``"inherits_from": "3d_fullres"`` and give only what differs, as in
nnU-Net; loading resolves it into a complete :class:`ConfigurationPlan`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from autounet.dataset.derived import LabelDerivation
from autounet.errors import ConfigError
from autounet.io.jsonio import read_json, write_json
from autounet.io.serialization import OMIT_WHEN_DEFAULT, from_dict, to_dict
from autounet.networks.spec import UNetSpec

__all__ = [
    "ChannelNormalization",
    "ConfigurationPlan",
    "DetectionInference",
    "DetectionPlan",
    "NormalizationScheme",
    "Plans",
    "ResamplingPlan",
    "data_identifier",
    "describe_plans",
    "label_data_identifier",
    "load_plans",
    "save_plans",
    "validate_plans",
]

# Bounds on sizes read from plans files (autounet's, hand-edited, or converted from nnU-Net's): far beyond any real
# configuration, but small enough that nothing sized from them overflows or asks for exabytes.
MAX_PATCH_EDGE = 2**14
MAX_PATCH_VOXELS = 2**28
MAX_BATCH_SIZE = 2**12
MAX_SPACING_MM = 1e6

NormalizationScheme = Literal["ct", "zscore", "rescale_0_1", "rgb_to_0_1", "none"]


@dataclass(frozen=True)
class ChannelNormalization:
    """How one input channel is normalised.

    Attributes:
        scheme: ``ct``: clip to ``[clip_min, clip_max]`` then ``(x - mean) / std`` with dataset-wide values;
            ``zscore``: per-case mean/std; ``rescale_0_1``: per-case min/max to [0, 1];
            ``rgb_to_0_1``: divide by 255; ``none``.
        use_nonzero_mask: Normalise only inside the non-zero region (zero elsewhere); chosen when cropping
            to non-zero removed much of the image, so that the background does not dominate statistics.
        clip_min, clip_max, mean, std: Dataset-wide foreground statistics for ``ct``.
    """

    scheme: NormalizationScheme
    use_nonzero_mask: bool = False
    clip_min: float | None = None
    clip_max: float | None = None
    mean: float | None = None
    std: float | None = None


@dataclass(frozen=True)
class ResamplingPlan:
    """Interpolation used to bring cases to the target spacing.

    Attributes:
        image_order: Spline order for images (3: cubic).
        label_order: Order for labels, applied per class to a one-hot encoding (1: linear), then argmax.
        out_of_plane_order: Order along the out-of-plane axis of anisotropic data when it is resampled
            separately (0: nearest), so thick slices are not smeared into each other.
        anisotropy_threshold: Spacing ratio (max / min) above which the out-of-plane axis is separate.
    """

    image_order: int = 3
    label_order: int = 1
    out_of_plane_order: int = 0
    anisotropy_threshold: float = 3.0


@dataclass(frozen=True)
class DetectionInference:
    """Default inference parameters of a detector (swept on the validation predictions after training).

    Attributes:
        score_threshold: Boxes scoring below are dropped (0: keep all, so that the sweep and the AP see all).
        nms_iou: IoU above which the lower-scoring of two same-class boxes of one window is suppressed.
        cluster_iou: IoU at which boxes of overlapping windows, mirrors and folds are fused by weighted box
            clustering.
        min_size: Boxes with an extent below this many voxels on any axis are dropped.
        candidates_per_level: Highest-scoring anchors per level kept before NMS.
        detections_per_image: Boxes kept per case after fusion (AP at 100 detections, as nnDetection).
    """

    score_threshold: float = 0.0
    nms_iou: float = 0.6
    cluster_iou: float = 0.2
    min_size: float = 0.0
    candidates_per_level: int = 1000
    detections_per_image: int = 100


@dataclass(frozen=True)
class DetectionPlan:
    """What a detection configuration adds to the U-Net: which decoder levels carry heads, and the anchors.

    Attributes:
        num_classes: Object classes (from 0, as in the instance JSON; label ``c + 1`` is class ``c``).
        head_levels: Decoder levels with classification and regression heads, finest first; level ``l`` is
            the output of U-Net stage ``l`` (0: full resolution).
        strides: Per head level, its per-axis stride relative to the input (product of the stage strides).
        anchor_shapes: Per head level, the anchor shapes placed at each position (per-axis extents in voxels
            of the preprocessed data); the first level's shapes times the level's stride ratio.
        anchor_mean_best_iou: Mean over the training boxes of the best IoU with an anchor at the box
            centre: how well the anchors fit (1 is perfect).
        inference: Default inference parameters.
        class_segmentation: Whether the auxiliary segmentation head segments the object classes (background and
            one channel per class) instead of foreground, and each box's class scores are its objectness times
            the class shares of the segmentation inside it (:mod:`autounet.detection.class_evidence`). Absent
            (false) in plans written before it existed, whose networks have a foreground head.
    """

    num_classes: int
    head_levels: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    anchor_shapes: tuple[tuple[tuple[float, ...], ...], ...]
    anchor_mean_best_iou: float
    inference: DetectionInference = field(default_factory=DetectionInference)
    class_segmentation: bool = field(default=False, metadata=OMIT_WHEN_DEFAULT)


@dataclass(frozen=True)
class ConfigurationPlan:
    """One trainable configuration.

    Attributes:
        name: ``2d``, ``3d_fullres``, ``3d_lowres`` or ``3d_cascade_fullres`` (or a user-added name).
        ndim: Spatial dimensions of patches and network.
        spacing: Target spacing, in the plan's axis order (see ``Plans.axis_order``). For ``2d`` on 3D
            data, the in-plane axes only: slices keep their own out-of-plane spacing.
        median_shape: Median case shape at the target spacing (after cropping).
        patch_size: Training patch size in voxels.
        batch_size: Patches per training step.
        network: The U-Net topology.
        normalization: One entry per input channel.
        resampling: Interpolation settings.
        data_identifier: Names the preprocessed-data folder; a hash of everything preprocessing uses, so
            configurations that preprocess identically share data and any change gets a new folder.
        previous_stage: For a cascade, the configuration whose predictions are extra inputs.
        next_stage: The cascade stage that uses this one's predictions.
        batch_dice: Compute Dice over the whole batch (3D full-res/cascade) rather than per sample.
        estimated_memory_gib: Planner's estimate of training memory at this patch and batch size.
        detection: For a detection configuration (``3d_det``, ``2d_det``), the heads and anchors; its data
            stores two label maps per case (semantic, then instance ids). ``None`` for segmentation.
        label_derivation: Label maps this configuration trains on that preprocessing computes from the
            dataset's (derived line tasks, fused labels; :mod:`autounet.dataset.derived`); ``None``: the
            dataset's maps as they are. Its data gets a folder of its own (see :func:`label_data_identifier`).
    """

    name: str
    ndim: int
    spacing: tuple[float, ...]
    median_shape: tuple[int, ...]
    patch_size: tuple[int, ...]
    batch_size: int
    network: UNetSpec
    normalization: tuple[ChannelNormalization, ...]
    resampling: ResamplingPlan = field(default_factory=ResamplingPlan)
    data_identifier: str = ""
    previous_stage: str | None = None
    next_stage: str | None = None
    batch_dice: bool = False
    estimated_memory_gib: float = 0.0
    detection: DetectionPlan | None = field(default=None, metadata=OMIT_WHEN_DEFAULT)  # absent: segmentation
    label_derivation: LabelDerivation | None = field(default=None, metadata=OMIT_WHEN_DEFAULT)


@dataclass(frozen=True)
class Plans:
    """All configurations planned for one dataset.

    Attributes:
        schema_version: Version of this file layout.
        dataset_name: ``DatasetNNN_Name``.
        planner: Planner preset used (``default``, ``resenc_m``, ``resenc_l``, ``resenc_xl``).
        gpu_memory_gib: Memory budget the patch and batch sizes were chosen for.
        axis_order: Permutation applied to array axes before anything else (out-of-plane axis first);
            predictions are permuted back. Identity for most data.
        original_median_spacing: Median spacing of the raw data, raw axis order.
        original_median_shape: Median shape after cropping, raw axis order.
        configurations: Named configurations.
    """

    SCHEMA_VERSION: ClassVar[int] = 2  # 2: network specs name their registry key (UNetSpec.kind)

    schema_version: int
    dataset_name: str
    planner: str
    gpu_memory_gib: float
    axis_order: tuple[int, ...]
    original_median_spacing: tuple[float, ...]
    original_median_shape: tuple[int, ...]
    configurations: dict[str, ConfigurationPlan]

    def configuration(self, name: str) -> ConfigurationPlan:
        """The configuration called ``name``.

        Raises:
            ConfigError: No such configuration; the message lists the planned ones.
        """
        if name not in self.configurations:
            raise ConfigError(f"no configuration '{name}' in the plans; planned: {', '.join(self.configurations)}")
        return self.configurations[name]


def data_identifier(configuration: ConfigurationPlan, axis_order: tuple[int, ...]) -> str:
    """Hash of the fields preprocessing depends on (spacing, axis order, normalisation, resampling, ndim)."""
    relevant = {
        "ndim": configuration.ndim,
        "spacing": [round(s, 6) for s in configuration.spacing],
        "axis_order": list(axis_order),
        "normalization": to_dict(configuration.normalization),
        "resampling": to_dict(configuration.resampling),
    }
    if configuration.detection is not None:
        # Detection data stores two label maps per case (semantic, instances): never share a segmentation
        # folder. Segmentation identifiers stay as they were.
        relevant["label_maps"] = "semantic+instances"
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:10]
    return f"{configuration.ndim}d_{digest}"


def label_data_identifier(identifier: str, configuration: ConfigurationPlan) -> str:
    """The data folder name of a configuration whose preprocessing identifier is ``identifier``: the same
    without a label derivation, else with a digest of the derivation appended (a configuration that inherits
    the identifier of its parent in ``plans.json`` and adds a derivation still gets a folder of its own)."""
    if configuration.label_derivation is None:
        return identifier
    text = json.dumps(to_dict(configuration.label_derivation), sort_keys=True)
    return f"{identifier}_labels{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def save_plans(path: str | os.PathLike, plans: Plans) -> None:
    """Write plans as indented JSON; cascade stages are written compactly with ``inherits_from``."""
    data = to_dict(plans)
    for name, config in plans.configurations.items():
        parent = _inheritance_parent(plans, config)
        if parent is not None:
            parent_data = data["configurations"][parent]
            compact = {k: v for k, v in data["configurations"][name].items() if parent_data.get(k) != v}
            data["configurations"][name] = {"inherits_from": parent, **compact}
    write_json(path, data)


def load_plans(path: str | os.PathLike) -> Plans:
    """Read and validate a plans file, resolving ``inherits_from``.

    Raises:
        ConfigError: Malformed file, unknown/missing field, inheritance cycle or unknown parent.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("configurations"), dict):
        raise ConfigError("not a plans file (no 'configurations' object)", path)
    raw_configs: dict[str, Any] = data["configurations"]
    resolved = {name: _resolve(name, raw_configs, path, ()) for name in raw_configs}
    plans = from_dict(Plans, {**data, "configurations": resolved}, source=path)
    validate_plans(plans, path)
    return plans


def validate_plans(plans: Plans, source: str | os.PathLike | None = None) -> None:
    """Check the values of loaded plans: sizes positive and bounded, spacings positive and finite, one
    dimensionality per configuration (types are checked when the file is parsed).

    Args:
        plans: Plans read from a file (autounet's or converted from nnU-Net's).
        source: The file, named in the error.

    Raises:
        ConfigError: The first absurd value, naming the file and the field.
    """
    path = Path(source) if source is not None else None
    if sorted(plans.axis_order) != list(range(len(plans.axis_order))) or len(plans.axis_order) not in (2, 3):
        raise ConfigError(f"field 'axis_order' must be a permutation of 0..1 or 0..2, got {list(plans.axis_order)}",
                          path)
    _check_numbers("original_median_spacing", plans.original_median_spacing, 0.0, MAX_SPACING_MM, path)
    if not (math.isfinite(plans.gpu_memory_gib) and plans.gpu_memory_gib >= 0):
        raise ConfigError(f"field 'gpu_memory_gib' must be a finite number >= 0, got {plans.gpu_memory_gib}", path)
    for name, config in plans.configurations.items():
        _validate_configuration(config, f"configurations.{name}", path)


def _validate_configuration(config: ConfigurationPlan, where: str, path: Path | None) -> None:
    if config.ndim not in (2, 3) or config.network.ndim != config.ndim:
        raise ConfigError(f"field '{where}.ndim' is {config.ndim} and the network's {config.network.ndim}; both "
                          "must be 2 or both 3", path)
    for name, values in (("spacing", config.spacing), ("patch_size", config.patch_size)):
        if len(values) != config.ndim:
            raise ConfigError(f"field '{where}.{name}' has {len(values)} value(s) for a {config.ndim}D "
                              "configuration", path)
    _check_numbers(f"{where}.spacing", config.spacing, 0.0, MAX_SPACING_MM, path)
    _check_numbers(f"{where}.patch_size", config.patch_size, 0, MAX_PATCH_EDGE, path)
    if math.prod(config.patch_size) > MAX_PATCH_VOXELS:
        raise ConfigError(f"field '{where}.patch_size' {list(config.patch_size)} holds more than {MAX_PATCH_VOXELS} "
                          "voxels", path)
    if not 1 <= config.batch_size <= MAX_BATCH_SIZE:
        raise ConfigError(f"field '{where}.batch_size' must lie in 1..{MAX_BATCH_SIZE}, got {config.batch_size}",
                          path)
    for channel, norm in enumerate(config.normalization):
        for name in ("clip_min", "clip_max", "mean", "std"):
            value = getattr(norm, name)
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"field '{where}.normalization[{channel}].{name}' must be finite, got {value}",
                                  path)


def _check_numbers(where: str, values: tuple[float, ...], above: float, at_most: float, path: Path | None) -> None:
    """Every value finite, > ``above`` and <= ``at_most``."""
    for index, value in enumerate(values):
        if not (math.isfinite(value) and above < value <= at_most):
            raise ConfigError(f"field '{where}[{index}]' must be a finite number in ({above:g}, {at_most:g}], got "
                              f"{value}", path)


def _resolve(name: str, raw: dict[str, Any], path: Path, seen: tuple[str, ...]) -> dict[str, Any]:
    if name in seen:
        raise ConfigError(f"configurations inherit in a cycle: {' -> '.join((*seen, name))}", path)
    config = raw[name]
    if not isinstance(config, dict):
        raise ConfigError(f"configuration '{name}' must be an object", path)
    parent = config.get("inherits_from")
    if parent is None:
        return {**config, "name": config.get("name", name)}
    if parent not in raw:
        raise ConfigError(f"configuration '{name}' inherits from unknown '{parent}'", path)
    merged = copy.deepcopy(_resolve(parent, raw, path, (*seen, name)))
    merged.update({k: v for k, v in config.items() if k != "inherits_from"})
    merged["name"] = name
    return merged


def _inheritance_parent(plans: Plans, config: ConfigurationPlan) -> str | None:
    # A cascade's full-resolution stage is 3d_fullres plus a previous stage: store only the difference.
    if config.previous_stage is None or "3d_fullres" not in plans.configurations:
        return None
    parent = plans.configurations["3d_fullres"]
    return "3d_fullres" if replace(config, name=parent.name, previous_stage=None) == parent else None


def describe_plans(plans: Plans) -> str:
    """A small text table of the planned configurations."""
    rows = [("configuration", "spacing", "median shape", "patch", "batch", "stages", "encoder", "mem GiB")]
    for name, config in plans.configurations.items():
        rows.append((name, "x".join(f"{s:.3g}" for s in config.spacing), "x".join(map(str, config.median_shape)),
                     "x".join(map(str, config.patch_size)), str(config.batch_size), str(config.network.num_stages),
                     config.network.encoder, f"{config.estimated_memory_gib:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)
