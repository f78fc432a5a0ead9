"""Instance norms computed through group_norm: same parameters, same values and gradients within rounding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autounet.networks.group_norm import GroupNormInstanceNorm2d, GroupNormInstanceNorm3d, use_group_norm_instance_norms

from .conftest import twin_3d_networks


@pytest.mark.parametrize(("norm_class", "fast_class", "shape"), [
    (nn.InstanceNorm2d, GroupNormInstanceNorm2d, (3, 5, 9, 7)),
    (nn.InstanceNorm3d, GroupNormInstanceNorm3d, (2, 4, 5, 6, 7)),
])
def test_group_norm_form_equals_instance_norm(norm_class: type[nn.Module], fast_class: type[nn.Module],
                                              shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    reference = norm_class(shape[1], eps=1e-5, affine=True).double()
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-1, 1)
    fast = norm_class(shape[1], eps=1e-5, affine=True).double()
    fast.load_state_dict(reference.state_dict())
    assert use_group_norm_instance_norms(nn.Sequential(fast)) == 1
    assert type(fast) is fast_class and isinstance(fast, norm_class)
    assert fast.state_dict().keys() == reference.state_dict().keys()
    inputs = (torch.randn(shape, dtype=torch.float64) * 3 + 2).requires_grad_()
    activation = nn.LeakyReLU(0.01, inplace=True)
    want = activation(reference(inputs))
    got = activation(fast(inputs))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(want)
    expected = torch.autograd.grad(want, (inputs, reference.weight, reference.bias), grad)
    actual = torch.autograd.grad(got, (inputs, fast.weight, fast.bias), grad)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


def test_only_affine_norms_without_running_statistics_switch() -> None:
    plain = nn.InstanceNorm3d(4)  # not affine: no parameters to hand group_norm
    tracked = nn.InstanceNorm3d(4, affine=True, track_running_stats=True)
    other = nn.BatchNorm3d(4)
    assert use_group_norm_instance_norms(nn.Sequential(plain, tracked, other)) == 0
    assert (type(plain), type(tracked), type(other)) == (nn.InstanceNorm3d, nn.InstanceNorm3d, nn.BatchNorm3d)


def test_network_with_group_norm_forms_predicts_the_same() -> None:
    network, fast = twin_3d_networks(8, in_channels=2)
    assert use_group_norm_instance_norms(fast) == sum(isinstance(m, nn.InstanceNorm3d) for m in network.modules())
    image = torch.randn(2, 2, 8, 12, 12)
    torch.testing.assert_close(fast(image), network(image), rtol=1e-5, atol=1e-5)
