from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from autounet.networks import UNetSpec, build_network, conv_feature_map_elements

REFERENCE = json.loads((Path(__file__).parent / "nnunet_feature_map_sizes.json").read_text())


def small_spec(ndim: int, encoder: str) -> UNetSpec:
    return UNetSpec(ndim=ndim, encoder=encoder, features_per_stage=(4, 8, 16),  # type: ignore[arg-type]
                    kernel_sizes=((3,) * ndim,) * 3, strides=((1,) * ndim, (2,) * ndim, (2,) * ndim),
                    blocks_per_stage=(1, 2, 2) if encoder == "residual" else (2, 2, 2),
                    convs_per_decoder_stage=(1, 1) if encoder == "residual" else (2, 2))


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("encoder", ["plain", "residual"])
def test_forward_shapes_with_and_without_deep_supervision(ndim: int, encoder: str) -> None:
    spec = small_spec(ndim, encoder)
    x = torch.randn(2, 3, *([16] * ndim))
    outputs = build_network(spec, 3, 5, deep_supervision=True)(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 5, *([16] * ndim)), (2, 5, *([8] * ndim))]
    single = build_network(spec, 3, 5, deep_supervision=False)(x)
    assert tuple(single.shape) == (2, 5, *([16] * ndim))


def test_gradients_reach_every_parameter() -> None:
    network = build_network(small_spec(3, "residual"), 1, 2)
    loss = sum(o.float().pow(2).mean() for o in network(torch.randn(1, 1, 16, 16, 16)))
    loss.backward()
    assert all(p.grad is not None for p in network.parameters())


def _measured_elements(network: nn.Module, x: torch.Tensor) -> int:
    """Count conv outputs on a real forward pass, independently of the meta-device implementation."""
    total = 0

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
        nonlocal total
        total += out[0].numel()

    convs = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    for name, module in network.named_modules():
        if isinstance(module, convs) and ".shortcut." not in name:
            module.register_forward_hook(hook)
        elif name.endswith(".shortcut") and len(module) > 0:
            module.register_forward_hook(hook)
    with torch.no_grad():
        network(x)
    return total


@pytest.mark.parametrize("encoder", ["plain", "residual"])
def test_meta_estimate_equals_real_forward(encoder: str) -> None:
    spec = small_spec(3, encoder)
    measured = _measured_elements(build_network(spec, 2, 3), torch.zeros(1, 2, 16, 24, 16))
    assert conv_feature_map_elements(spec, (16, 24, 16), 2, 3) == measured


def test_plain_unet_matches_hand_computed_count() -> None:
    # 2D, features (4, 8), 16x16 input, 2 outputs, no deep supervision:
    # encoder 2*(4*256) + 2*(8*64); transposed conv 4*256; decoder convs 2*(4*256); head 2*256.
    spec = UNetSpec(2, "plain", (4, 8), ((3, 3), (3, 3)), ((1, 1), (2, 2)), (2, 2), (2,))
    expected = 2 * 4 * 256 + 2 * 8 * 64 + 4 * 256 + 2 * 4 * 256 + 2 * 256
    assert conv_feature_map_elements(spec, (16, 16), 1, 2, deep_supervision=False) == expected


@pytest.mark.parametrize("row", REFERENCE, ids=lambda r: f"{r['arch']}-{'x'.join(map(str, r['patch_size']))}")
def test_feature_map_count_matches_nnunet(row: dict) -> None:
    """nnU-Net v2's compute_conv_feature_map_size values (numbers recorded from nnunetv2 2.8.1)."""
    n = len(row["strides"])
    residual = row["arch"] != "PlainConvUNet"
    spec = UNetSpec(ndim=len(row["patch_size"]), encoder="residual" if residual else "plain",
                    features_per_stage=tuple(row["features_per_stage"]),
                    kernel_sizes=tuple(map(tuple, row["kernel_sizes"])), strides=tuple(map(tuple, row["strides"])),
                    blocks_per_stage=(1, 3, 4, 6, 6, 6, 6, 6, 6)[:n] if residual else (2,) * n,
                    convs_per_decoder_stage=(1,) * (n - 1) if residual else (2,) * (n - 1))
    count = conv_feature_map_elements(spec, row["patch_size"], row["input_channels"], row["num_classes_incl_bg"],
                                      deep_supervision=False)
    assert count == row["estimate"]


def test_parameter_count_of_standard_3d_unet() -> None:
    # nnU-Net's 6-stage 3D PlainConvUNet with (1,3,3) first kernel has 30,704,303 parameters (3 classes).
    spec = UNetSpec(3, "plain", (32, 64, 128, 256, 320, 320),
                    ((1, 3, 3),) + ((3, 3, 3),) * 5,
                    ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2)), (2,) * 6, (2,) * 5)
    assert build_network(spec, 1, 3).parameter_count() == 30_704_303
