"""The stacked 3D weight gradient equals the direct one, and only eligible convolutions switch to it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autounet.networks import weight_gradient as wg

from .conftest import twin_3d_networks


def _direct_weight_gradient(inputs: torch.Tensor, grad_output: torch.Tensor, weight: torch.Tensor,
                            padding: tuple[int, ...]) -> torch.Tensor:
    return torch.ops.aten.convolution_backward(grad_output, inputs, weight, None, [1, 1, 1], list(padding),
                                               [1, 1, 1], False, [0, 0, 0], 1, [False, True, False])[1]


@pytest.mark.parametrize(("in_channels", "out_channels", "shape", "kernel"), [
    (4, 6, (5, 7, 6), (3, 3, 3)),  # inputs stacked (fewer channels than the output)
    (6, 4, (5, 7, 6), (3, 3, 3)),  # output gradient stacked (decoder: more input channels)
    (3, 3, (1, 4, 4), (3, 3, 3)),  # one slice: every other tap reads padding
    (5, 2, (6, 5, 5), (5, 3, 1)),  # deeper kernel, anisotropic in-plane kernel
    (2, 5, (2, 3, 3), (3, 1, 3)),
])
@pytest.mark.parametrize("chunk_bytes", [2**40, 1])  # one chunk; one depth slice per chunk
def test_stacked_weight_gradient_equals_the_direct_one(monkeypatch: pytest.MonkeyPatch, in_channels: int,
                                                       out_channels: int, shape: tuple[int, ...],
                                                       kernel: tuple[int, ...], chunk_bytes: int) -> None:
    monkeypatch.setattr(wg, "STACK_CHUNK_BYTES", chunk_bytes)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn((2, in_channels, *shape), generator=generator, dtype=torch.float64)
    weight = torch.randn((out_channels, in_channels, *kernel), generator=generator, dtype=torch.float64)
    padding = tuple(k // 2 for k in kernel)
    grad_output = torch.randn_like(torch.nn.functional.conv3d(inputs, weight, padding=padding))
    stacked = wg.stacked_depth_weight_gradient(inputs, grad_output, kernel, padding)
    assert stacked.is_contiguous()
    torch.testing.assert_close(stacked, _direct_weight_gradient(inputs, grad_output, weight, padding),
                               rtol=1e-12, atol=1e-12)


def test_switched_convolution_keeps_state_and_forward_and_its_gradients_pass_gradcheck() -> None:
    torch.manual_seed(0)
    conv = nn.Conv3d(16, 3, 3, padding=1).double()
    reference = nn.Conv3d(16, 3, 3, padding=1).double()
    reference.load_state_dict(conv.state_dict())
    assert wg.use_stacked_weight_gradient(nn.Sequential(conv)) == 1
    assert type(conv) is wg.StackedWeightGradientConv3d
    assert conv.state_dict().keys() == reference.state_dict().keys()
    inputs = torch.randn(2, 16, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(conv(inputs), reference(inputs), rtol=0, atol=0)
    out = conv(inputs)
    assert out.grad_fn is not None and "StackedWeightGradient" in type(out.grad_fn).__name__
    grads = torch.autograd.grad(out.square().sum(), (inputs, conv.weight, conv.bias))
    expected = torch.autograd.grad(reference(inputs).square().sum(), (inputs, reference.weight, reference.bias))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    small = nn.Conv3d(16, 2, 3, padding=1).double()
    wg.use_stacked_weight_gradient(small)
    probe = torch.randn(1, 16, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: wg._StackedWeightGradientConv3d.apply(x, w, b, (1, 1, 1)),
                                    (probe, small.weight, small.bias))


def test_float32_network_step_agrees_with_the_direct_gradients() -> None:
    network, stacked = twin_3d_networks(16, in_channels=1)
    switched = wg.use_stacked_weight_gradient(stacked)
    # Eligible: the second 16-channel encoder convolution, both stage-1 convolutions, both decoder ones; not the
    # first (one input channel), the stride-2 one, the transposed one or the 1x1x1 head.
    assert switched == sum(1 for m in stacked.modules() if type(m) is wg.StackedWeightGradientConv3d) == 4
    image = torch.randn(2, 1, 8, 12, 12)
    network(image).square().mean().backward()
    stacked(image).square().mean().backward()
    for (name, direct), (_, other) in zip(network.named_parameters(), stacked.named_parameters(), strict=True):
        torch.testing.assert_close(other.grad, direct.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize(("module", "eligible"), [
    (nn.Conv3d(16, 8, 3, padding=1), True),
    (nn.Conv3d(16, 8, (3, 1, 3), padding=(1, 0, 1)), True),
    (nn.Conv3d(15, 8, 3, padding=1), False),  # too few input channels to pay
    (nn.Conv3d(16, 8, 3, stride=2, padding=1), False),  # strided: slower stacked
    (nn.Conv3d(16, 8, (1, 3, 3), padding=(0, 1, 1)), False),  # nothing to stack; oneDNN's is fast
    (nn.Conv3d(16, 8, 3, padding=1, dilation=2), False),
    (nn.Conv3d(16, 8, 3, padding=1, groups=2), False),
    (nn.Conv3d(16, 8, 3, padding="same"), False),
    (nn.Conv3d(16, 8, 3, padding=1, padding_mode="reflect"), False),
    (nn.ConvTranspose3d(16, 8, 2, stride=2), False),
    (nn.Conv2d(16, 8, 3, padding=1), False),
])
def test_only_eligible_convolutions_switch(module: nn.Module, eligible: bool) -> None:
    assert wg.stacked_weight_gradient_applies(module) == eligible
    assert wg.use_stacked_weight_gradient(module) == int(eligible)


def test_other_dtypes_and_inference_keep_the_direct_path() -> None:
    conv = nn.Conv3d(16, 4, 3, padding=1)
    wg.use_stacked_weight_gradient(conv)
    inputs = torch.randn(1, 16, 3, 4, 4)
    with torch.no_grad():
        assert conv(inputs).grad_fn is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert "Stacked" not in type(conv(inputs).grad_fn).__name__
    assert "Stacked" in type(conv(inputs).grad_fn).__name__
