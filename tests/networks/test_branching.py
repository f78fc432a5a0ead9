"""Early-branching multi-task U-Net: shared encoder, a decoder per task, outputs stacked in task order."""

from __future__ import annotations

import pytest
import torch

from autounet.networks import build_network, inference_state_dict
from autounet.networks.branching import EarlyBranchingUNet
from autounet.networks.spec import UNetSpec

SPEC = UNetSpec(ndim=2, encoder="plain", features_per_stage=(4, 8, 16), kernel_sizes=((3, 3),) * 3,
                strides=((1, 1), (2, 2), (2, 2)), blocks_per_stage=(1, 1, 1), convs_per_decoder_stage=(1, 1),
                kind="unet_early_branching", task_outputs=(3, 2))


def test_outputs_are_the_branches_stacked_in_task_order() -> None:
    torch.manual_seed(0)
    network = build_network(SPEC, 1, 5, deep_supervision=True)
    assert isinstance(network, EarlyBranchingUNet)
    x = torch.randn(2, 1, 16, 16)
    outputs = network(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 5, 16, 16), (2, 5, 8, 8)]
    skips = network.encoder(x)
    first, second = network.branches[0](skips), network.branches[1](skips)
    torch.testing.assert_close(outputs[0][:, :3], first[0])
    torch.testing.assert_close(outputs[0][:, 3:], second[0])


def test_a_task_loss_reaches_only_its_own_decoder() -> None:
    network = build_network(SPEC, 1, 5, deep_supervision=False)
    network(torch.randn(1, 1, 16, 16))[:, :3].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in network.branches[0].parameters())
    assert all(p.grad is None or not p.grad.any() for p in network.branches[1].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in network.encoder.parameters())


def test_deep_supervision_weights_load_into_the_inference_network() -> None:
    trained = build_network(SPEC, 1, 5, deep_supervision=True)
    state = inference_state_dict(trained.state_dict())
    assert "branches.1.heads.levels.0.weight" in state and "branches.1.heads.levels.1.weight" not in state
    plain = build_network(SPEC, 1, 5, deep_supervision=False)
    plain.load_state_dict(state)  # strict: every key matches
    x = torch.randn(1, 1, 16, 16)
    trained.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(x), trained(x)[0])


@pytest.mark.parametrize("task_outputs", [(), (5,), (2, 2)])
def test_needs_two_tasks_whose_channels_add_up(task_outputs: tuple[int, ...]) -> None:
    from dataclasses import replace

    with pytest.raises(ValueError, match="early branching|add up"):
        build_network(replace(SPEC, task_outputs=task_outputs), 1, 5)


def test_an_early_branching_run_folder_predicts(tmp_path) -> None:
    """The model folder loader counts every branch's head (it read one shared head before)."""
    from types import SimpleNamespace

    from autounet.inference.model_folder import _load_network

    trained = build_network(SPEC, 1, 5, deep_supervision=True)
    configuration = SimpleNamespace(network=SPEC, name="2d")
    network, num_outputs = _load_network({"network": trained.state_dict()}, configuration, 1,  # type: ignore[arg-type]
                                         tmp_path / "checkpoint_final.pt")
    assert num_outputs == 5 and isinstance(network, EarlyBranchingUNet) and not network.deep_supervision
