"""When training compiles the network: asked for, or automatically for long float32 3D runs on AVX-512 CPUs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from autounet.training import run
from autounet.training.recipe import RunOptions, TrainingRecipe


@dataclass(frozen=True)
class _Configuration:
    ndim: int


def _network() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3), torch.nn.Conv3d(4, 2, 1))


@pytest.fixture
def compiled_networks(monkeypatch: pytest.MonkeyPatch) -> list[torch.nn.Module]:
    calls: list[torch.nn.Module] = []

    def fake_compile(network: torch.nn.Module) -> torch.nn.Module:
        calls.append(network)
        return network

    monkeypatch.setattr(torch, "compile", fake_compile)
    return calls


@pytest.mark.parametrize(("fast_cpu", "amp", "epochs", "compile_option", "expected"), [
    (True, False, 1000, None, "channels_last"),  # long float32 3D run on AVX-512: automatic
    (True, False, 2, None, "eager"),  # too short to repay the compilation
    (True, True, 1000, None, "eager"),  # bf16 autocast: not measured, left alone
    (False, False, 1000, None, "eager"),  # AVX2-only CPU: channels-last would be slower
    (True, False, 1000, False, "eager"),  # --no-compile wins
    (False, False, 2, True, "compiled"),  # --compile wins, without channels-last where it does not help
])
def test_automatic_compilation_only_where_it_was_measured_to_pay(
        monkeypatch: pytest.MonkeyPatch, compiled_networks: list[torch.nn.Module], fast_cpu: bool, amp: bool,
        epochs: int, compile_option: bool | None, expected: str) -> None:
    monkeypatch.setattr(run, "cpu_compile_speeds_up_float32", lambda ndim: fast_cpu and ndim == 3)
    network = _network()
    recipe = TrainingRecipe(epochs=epochs, iterations_per_epoch=250)
    options = RunOptions(device="cpu", amp=amp, compile=compile_option)
    result = run._compiled(network, _Configuration(3), recipe, options, torch.device("cpu"))  # type: ignore[arg-type]
    assert result is network
    assert bool(compiled_networks) == (expected != "eager")
    channels_last = network[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert channels_last == (expected == "channels_last")


@pytest.mark.parametrize(("capability", "device", "ndim", "stacked", "group_norm"), [
    ("AVX2", "cpu", 3, True, True),  # float32 3D on AVX2 kernels: stacked weight gradients
    ("AVX512", "cpu", 3, False, True),  # oneDNN's own 3D weight gradient is fast there
    ("AVX2", "cpu", 2, False, True),  # 2D weight gradients have AVX2 kernels
    ("AVX2", "meta", 3, False, False),  # not a CPU: left alone
])
def test_fast_float32_parts_only_where_measured(monkeypatch: pytest.MonkeyPatch, capability: str, device: str,
                                                ndim: int, stacked: bool, group_norm: bool) -> None:
    from autounet.networks.group_norm import GroupNormInstanceNorm3d
    from autounet.networks.weight_gradient import StackedWeightGradientConv3d

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    network = torch.nn.Sequential(torch.nn.Conv3d(16, 16, 3, padding=1), torch.nn.InstanceNorm3d(16, affine=True),
                                  torch.nn.Conv3d(16, 2, 1))
    options = RunOptions(device="cpu", amp=False)
    run._use_fast_cpu_float32_parts(network, _Configuration(ndim), options, torch.device(device))  # type: ignore[arg-type]
    assert (type(network[0]) is StackedWeightGradientConv3d) == stacked
    assert (type(network[1]) is GroupNormInstanceNorm3d) == group_norm
    assert type(network[2]) is torch.nn.Conv3d
