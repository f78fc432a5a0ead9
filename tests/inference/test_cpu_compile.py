"""Channels-last + torch.compile after a warm-up: same logits, padded last batch, eager fallback, when it applies."""

from __future__ import annotations

import logging

import pytest
import torch

from autounet.inference import cpu_compile
from autounet.inference.cpu_compile import CompiledAfterWarmup, compile_when_it_pays


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.InstanceNorm3d(4, affine=True),
                               torch.nn.LeakyReLU(0.01), torch.nn.Conv3d(4, 3, 1)).eval()


def test_compiled_forward_matches_eager_and_reuses_one_graph_for_a_smaller_last_batch() -> None:
    network = _network()
    patches = torch.randn(2, 1, 8, 8, 8)
    with torch.inference_mode():
        expected = network(patches).clone()
        model = CompiledAfterWarmup(network, switch_after_seconds=1e-9)
        eager = model(patches)
        assert model.compiled is None
        compiled = model(patches)
        assert model.compiled is not None and not model.failed and model.verified
        last = model(patches[:1])
    torch.testing.assert_close(eager, expected)
    torch.testing.assert_close(compiled, expected, rtol=1e-4, atol=1e-5)
    assert last.shape == (1, 3, 8, 8, 8)
    torch.testing.assert_close(last, expected[:1], rtol=1e-4, atol=1e-5)
    assert model.batch_size == 2


def test_only_torch_networks_on_the_cpu_are_wrapped_and_only_where_asked_or_measured(
        monkeypatch: pytest.MonkeyPatch) -> None:
    network = _network()

    def session(patches: torch.Tensor) -> torch.Tensor:
        return patches

    cpu = torch.device("cpu")
    wrapped = compile_when_it_pays([network, session], 3, cpu, True)
    assert isinstance(wrapped[0], CompiledAfterWarmup) and wrapped[1] is session
    assert wrapped[0].switch_after_seconds == 0.0  # asked for: compiled from the first window
    assert compile_when_it_pays([network], 3, cpu, False) == (network,)
    assert compile_when_it_pays([network], 3, torch.device("meta"), True) == (network,)
    monkeypatch.setattr(cpu_compile, "cpu_compile_speeds_up_float32", lambda ndim: ndim == 3)
    automatic = compile_when_it_pays([network], 3, cpu, None)[0]
    assert isinstance(automatic, CompiledAfterWarmup)
    assert automatic.switch_after_seconds == cpu_compile.EAGER_SECONDS_BEFORE_COMPILE
    assert compile_when_it_pays([network], 2, cpu, None) == (network,)


def _broken_compiler(network: torch.nn.Module, **kwargs: object) -> object:
    def call(*inputs: object) -> None:
        raise RuntimeError("no C++ compiler\nlong details")
    return call


def _miscompiler(network: torch.nn.Module, **kwargs: object) -> object:
    return lambda patches: network(patches) + 1.0  # wrong by far more than rounding


@pytest.mark.parametrize(("compiler", "warning"), [
    (_broken_compiler, "torch.compile failed (RuntimeError: no C++ compiler); predicting without it"),
    (_miscompiler, "torch.compile failed (RuntimeError: the compiled network's logits differ from eager's by 1); "
                   "predicting without it"),
])
def test_a_failing_or_disagreeing_compiled_network_falls_back_to_eager_with_one_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, compiler: object, warning: str) -> None:
    monkeypatch.setattr(torch, "compile", compiler)
    network = _network()
    patches = torch.randn(1, 1, 6, 6, 6)
    with torch.inference_mode():
        expected = network(patches).clone()
        model = CompiledAfterWarmup(network, switch_after_seconds=0.0)
        with caplog.at_level(logging.WARNING):
            first, second = model(patches), model(patches)
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(second, expected)
    assert model.failed and model.compiled is None and not model.verified
    assert [r.getMessage() for r in caplog.records] == [warning]
    assert network[0].weight.is_contiguous()
