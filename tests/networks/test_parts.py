"""Networks from parts: the registry, injected encoder/decoder/heads, and checkpoints of the old key layout."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from autounet.detection.retina_unet import RetinaUNetOutput
from autounet.errors import CheckpointError, ConfigError
from autounet.networks import (
    Decoder,
    SegmentationHeads,
    UNet,
    UNetSpec,
    build_network,
    inference_state_dict,
    network_names,
    register_network,
)

SPECS = {
    "plain3d": UNetSpec(ndim=3, encoder="plain", features_per_stage=(4, 8, 16),
                        kernel_sizes=((1, 3, 3), (3, 3, 3), (3, 3, 3)), strides=((1, 1, 1), (1, 2, 2), (2, 2, 2)),
                        blocks_per_stage=(2, 2, 2), convs_per_decoder_stage=(2, 2)),
    "residual2d": UNetSpec(ndim=2, encoder="residual", features_per_stage=(4, 8, 16), kernel_sizes=((3, 3),) * 3,
                           strides=((1, 1), (2, 2), (2, 2)), blocks_per_stage=(1, 2, 2),
                           convs_per_decoder_stage=(1, 1)),
}
SHAPES = {"plain3d": (8, 16, 16), "residual2d": (16, 16)}
# Sums of the parameters and of every output for seed 7 and a fixed input, computed with the code before the
# heads left the decoder (commit 6af046b): the same seed must still build the same network.
CHECKSUMS = {
    ("plain3d", True): (57.21675119850977, (1624.7387405680347, 144.31517830037046)),
    ("plain3d", False): (58.53046102006181, (3212.2235721854377,)),
    ("residual2d", True): (41.89220803117405, (-110.60847772199122, 34.32268325879704)),
    ("residual2d", False): (42.11422739530008, (59.76059958236874,)),
}


@pytest.mark.parametrize(("name", "deep_supervision"), sorted(CHECKSUMS))
def test_same_seed_builds_the_same_network_as_before(name: str, deep_supervision: bool) -> None:
    torch.manual_seed(7)
    network = build_network(SPECS[name], 2, 3, deep_supervision=deep_supervision)
    x = torch.randn((1, 2, *SHAPES[name]), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outputs = network(x)
        total = sum(float(p.double().sum()) for p in network.parameters())
    outputs = outputs if isinstance(outputs, list) else [outputs]
    expected_total, expected_outputs = CHECKSUMS[(name, deep_supervision)]
    assert total == pytest.approx(expected_total, rel=1e-12)
    assert tuple(float(o.double().sum()) for o in outputs) == pytest.approx(expected_outputs, rel=1e-9)


@pytest.mark.parametrize("kind", network_names())
@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_registered_network_builds_and_runs(kind: str, name: str) -> None:
    # Two tasks of 2 and 1 channels: networks that branch per task need them, the others ignore them.
    network = build_network(replace(SPECS[name], kind=kind, task_outputs=(2, 1)), 2, 3, deep_supervision=True)
    outputs = network(torch.zeros((2, 2, *SHAPES[name])))
    if isinstance(outputs, RetinaUNetOutput):  # a detector: num_outputs classes per anchor, and a foreground head
        assert outputs.class_logits.shape == (2, len(outputs.anchors), 3)
        assert outputs.seg_logits.shape == (2, 2, *SHAPES[name])
    else:
        assert outputs[0].shape == (2, 3, *SHAPES[name])


def test_registry_refuses_duplicates_and_suggests_names() -> None:
    assert "unet" in network_names()
    with pytest.raises(ValueError, match="already registered"):
        register_network("unet")(lambda *_: nn.Identity())
    with pytest.raises(ConfigError, match="did you mean 'unet'"):
        build_network(replace(SPECS["plain3d"], kind="unte"), 1, 2)


def test_injected_parts_replace_the_defaults() -> None:
    spec = SPECS["residual2d"]

    class FeatureSum(nn.Module):
        """A toy head on the decoder's features: the sum over channels of every level."""

        num_inputs = 2

        def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
            return [f.sum(dim=1, keepdim=True) for f in features]

    network = UNet(spec, 2, 3, heads=FeatureSum())
    outputs = network(torch.zeros((1, 2, 16, 16)))
    assert [tuple(o.shape) for o in outputs] == [(1, 1, 16, 16), (1, 1, 8, 8)]
    features = Decoder(spec)(network.encoder(torch.zeros((1, 2, 16, 16))))
    assert [tuple(f.shape) for f in features] == [(1, 4, 16, 16), (1, 8, 8, 8)]


def test_old_checkpoint_keys_load_and_map_to_inference() -> None:
    spec = SPECS["plain3d"]
    torch.manual_seed(0)
    trained = build_network(spec, 2, 3, deep_supervision=True)
    # The layout before the seams: heads owned by the decoder.
    old = {k.replace("heads.levels.", "decoder.heads."): v for k, v in trained.state_dict().items()}
    assert any(k.startswith("decoder.heads.1.") for k in old)
    fresh = build_network(spec, 2, 3, deep_supervision=True)
    fresh.load_state_dict(old, strict=True)
    x = torch.randn((1, 2, 8, 16, 16))
    with torch.no_grad():
        expected = trained(x)[0]
        torch.testing.assert_close(fresh(x)[0], expected, rtol=0, atol=0)
        for state in (old, trained.state_dict()):
            single = build_network(spec, 2, 3, deep_supervision=False)
            single.load_state_dict(inference_state_dict(state), strict=True)
            torch.testing.assert_close(single(x), expected, rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="no segmentation head"):
        inference_state_dict({"encoder.stages.0.0.0.weight": torch.zeros(1)})


def test_heads_without_deep_supervision_keep_only_full_resolution() -> None:
    heads = SegmentationHeads(SPECS["plain3d"], 3, deep_supervision=False)
    assert heads.num_inputs == 1 and len(heads.levels) == 1 and heads.levels[0].in_channels == 4
