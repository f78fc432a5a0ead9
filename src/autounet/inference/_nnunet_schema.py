"""The shape of nnU-Net v2's ``plans.json``, as far as autounet reads it: checked before any key is used, so a
missing or mistyped field is one error naming the file and the field (never a ``KeyError`` or ``TypeError``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autounet.io.schema import Fields, ListOf, MapOf, Number, OneOf, check_json
from autounet.planning.plans import MAX_BATCH_SIZE, MAX_PATCH_EDGE, MAX_SPACING_MM

_COUNT = Number(integer=True, minimum=1, maximum=2**16)
_COUNT_OR_LIST = OneOf((_COUNT, ListOf(_COUNT, min_length=1)), "a positive integer or a list of them")
_EDGE = Number(integer=True, minimum=1, maximum=MAX_PATCH_EDGE)
# kernel_sizes / strides: one entry per stage, each one size for every axis or one per axis.
_PER_STAGE_AXES = ListOf(OneOf((_EDGE, ListOf(_EDGE, min_length=2, max_length=3)),
                               "a positive integer or a list of 2 or 3 of them"), min_length=1)
_ARCH_KWARGS = Fields(
    required={"n_stages": Number(integer=True, minimum=1, maximum=32), "features_per_stage": _COUNT_OR_LIST,
              "kernel_sizes": _PER_STAGE_AXES, "strides": _PER_STAGE_AXES, "n_conv_per_stage_decoder": _COUNT_OR_LIST},
    optional={"n_conv_per_stage": _COUNT_OR_LIST, "n_blocks_per_stage": _COUNT_OR_LIST, "conv_bias": bool,
              "norm_op_kwargs": Fields(optional={"eps": Number(positive=True), "affine": bool}),
              "nonlin_kwargs": Fields(optional={"negative_slope": Number()}), "stem_channels": _COUNT,
              "conv_op": str, "norm_op": str, "nonlin": str, "block": str})
_RESAMPLING = {f"resampling_fn_{kind}": str for kind in ("data", "seg", "probabilities")}
_ORDER = Number(integer=True, minimum=0, maximum=5)
_RESAMPLING_KWARGS = {f"resampling_fn_{kind}_kwargs": Fields(optional={"order": _ORDER, "order_z": _ORDER})
                      for kind in ("data", "seg", "probabilities")}
_CONFIGURATION = Fields(
    required={"spacing": ListOf(Number(positive=True, maximum=MAX_SPACING_MM), min_length=2, max_length=3),
              "patch_size": ListOf(_EDGE, min_length=2, max_length=3),
              "architecture": Fields(required={"network_class_name": str, "arch_kwargs": _ARCH_KWARGS}),
              "normalization_schemes": ListOf(str, min_length=1)},
    optional={"batch_size": Number(integer=True, minimum=1, maximum=MAX_BATCH_SIZE),
              "median_image_size_in_voxels": ListOf(Number(minimum=0), min_length=2, max_length=3),
              "use_mask_for_norm": ListOf(bool), "data_identifier": str, "previous_stage": str, "batch_dice": bool,
              **_RESAMPLING, **_RESAMPLING_KWARGS})
_PLANS = Fields(
    required={"configurations": MapOf(dict, min_length=1)},
    optional={"transpose_forward": ListOf(Number(integer=True, minimum=0, maximum=2), min_length=2, max_length=3),
              "original_median_spacing_after_transp": ListOf(Number(positive=True, maximum=MAX_SPACING_MM)),
              "original_median_shape_after_transp": ListOf(Number(minimum=0)),
              "foreground_intensity_properties_per_channel": MapOf(MapOf(Number())),
              "dataset_name": str, "plans_name": str})


def check_nnunet_plans(data: Any, path: Path) -> None:
    """Check the top level of a parsed nnU-Net ``plans.json`` (configurations are checked once resolved).

    Raises:
        ConfigError: The first missing or mistyped field, naming the file and the field.
    """
    check_json(data, _PLANS, path, "")


def check_nnunet_configuration(config: Any, name: str, path: Path) -> None:
    """Check one configuration of nnU-Net plans after ``inherits_from`` is merged in.

    Raises:
        ConfigError: The first missing or mistyped field, naming the file and the field
            (``configurations.<name>.<field>``).
    """
    check_json(config, _CONFIGURATION, path, f"configurations.{name}")
