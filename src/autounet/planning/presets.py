"""Planner presets: the default plain U-Net and residual-encoder presets in the spirit of nnU-Net's
ResEnc M / L / XL. A preset is data; the planner has a single code path."""

from __future__ import annotations

from dataclasses import dataclass

from autounet.errors import PlanError
from autounet.networks.spec import EncoderKind

__all__ = ["PRESETS", "PlannerPreset", "get_preset"]


@dataclass(frozen=True)
class PlannerPreset:
    """Network family and the memory calibration that goes with it.

    Attributes:
        name: Preset key.
        encoder: Encoder kind of the planned U-Net.
        encoder_blocks: Convs (plain) or residual blocks (residual) per encoder stage, truncated to depth.
        decoder_convs: Convs per decoder stage.
        reference_elements_3d: Conv feature-map elements (see ``conv_feature_map_elements``) that fit
            ``reference_memory_gib`` at batch size ``reference_batch_3d``, measured by nnU-Net's authors.
        reference_elements_2d: The same for 2D at ``reference_batch_2d``.
        reference_memory_gib: GPU memory the reference values were measured for.
        default_memory_gib: Budget when the user gives none.
        reference_batch_2d: Batch size of the 2D reference.
        reference_batch_3d: Batch size of the 3D reference.
        patch_fits_at_min_batch: Shrink patches until they fit at the minimum batch size (plain preset);
            otherwise until one reference batch fits (residual presets, which were calibrated that way).
        max_dataset_fraction: A batch may cover at most this fraction of the dataset's voxels.
        max_features_2d: Feature cap per stage in 2D.
        max_features_3d: Feature cap per stage in 3D.
        network: Registry key of the planned network (the memory estimate measures it).
    """

    name: str
    encoder: EncoderKind
    encoder_blocks: tuple[int, ...]
    decoder_convs: tuple[int, ...]
    reference_elements_3d: float
    reference_elements_2d: float
    reference_memory_gib: float
    default_memory_gib: float
    reference_batch_2d: int = 12
    reference_batch_3d: int = 2
    patch_fits_at_min_batch: bool = False
    max_dataset_fraction: float = 1.0
    max_features_2d: int = 512
    max_features_3d: int = 320
    network: str = "unet"


_PLAIN_BLOCKS = (2,) * 14
_RESIDUAL_BLOCKS = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)
_RESIDUAL_DECODER = (1,) * 12

PRESETS: dict[str, PlannerPreset] = {
    preset.name: preset
    for preset in (
        PlannerPreset("default", "plain", _PLAIN_BLOCKS, _PLAIN_BLOCKS[:-1], 560e6, 85e6, 8.0, 8.0,
                      patch_fits_at_min_batch=True, max_dataset_fraction=0.05),
        # Several label maps, a decoder per task: the plain preset's calibration, the branches measured.
        PlannerPreset("early_branching", "plain", _PLAIN_BLOCKS, _PLAIN_BLOCKS[:-1], 560e6, 85e6, 8.0, 8.0,
                      patch_fits_at_min_batch=True, max_dataset_fraction=0.05, network="unet_early_branching"),
        PlannerPreset("resenc_m", "residual", _RESIDUAL_BLOCKS, _RESIDUAL_DECODER, 680e6, 135e6, 8.0, 8.0),
        PlannerPreset("resenc_l", "residual", _RESIDUAL_BLOCKS, _RESIDUAL_DECODER, 2100e6, 380e6, 24.0, 24.0),
        PlannerPreset("resenc_xl", "residual", _RESIDUAL_BLOCKS, _RESIDUAL_DECODER, 3600e6, 560e6, 40.0, 40.0),
    )
}


def get_preset(name: str) -> PlannerPreset:
    """The preset called ``name``.

    Raises:
        PlanError: Unknown name; the message lists the presets.
    """
    if name not in PRESETS:
        raise PlanError(f"unknown planner preset '{name}'; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
