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
