"""A faster float32 weight gradient for 3D convolutions on CPUs whose kernels stop at AVX2.

Measured with oneDNN limited to AVX2 (torch 2.13; ``ONEDNN_VERBOSE=1`` and the profiler): a 3D convolution's
forward and input gradient run oneDNN's ``jit:avx2`` kernels, but its weight gradient falls back to
``gemm:jit`` (im2col and a matrix product) and takes 2-3x the forward's time, about half of a float32
training step; the 2D weight gradient has a ``jit:avx2`` kernel. So, for a stride-1 ``kd x kh x kw``
convolution, this module stacks the ``kd`` depth taps of one side as channels of a batch of 2D images (one
image per depth slice) and asks for the weight gradient of a single 2D ``kh x kw`` convolution: the same sum of
products, regrouped. 32 to 32 channels on 2x32x96x96, one thread: 1.64 s direct, 0.82 s stacked; 64 to 32
channels (a decoder convolution), two threads: 1.77 s, 0.80 s. Equal to the direct result within float
rounding (``tests/networks/test_weight_gradient.py``); the whole step in ``benchmarks/train_step.py`` and
``benchmarks/cpu_step_variants.py`` (README).

Strided convolutions (1.6x slower stacked) and thin inputs (the first convolution: 2.8x slower) keep the
direct gradient; so do CPUs with AVX-512 kernels, where oneDNN's own 3D weight gradient is as fast as the
forward.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional

from autounet.networks.swap import switch_module_classes

MIN_STACKED_IN_CHANNELS = 16
"""Input channels below which the direct weight gradient is kept (1 channel: 2.8x slower stacked; 32
channels: 2x faster; measured at 32x96x96, batch 2)."""

STACK_CHUNK_BYTES = 256 * 2**20
"""Largest stacked input built at once; larger ones are processed in depth chunks whose gradients add up,
so the extra memory stays bounded for large patches."""


def stacked_depth_weight_gradient(inputs: torch.Tensor, grad_output: torch.Tensor, kernel_size: tuple[int, ...],
                                  padding: tuple[int, ...]) -> torch.Tensor:
    """The weight gradient of a stride-1, dilation-1, ungrouped 3D convolution, from one 2D weight gradient.

    ``grad_weight[o, c, t, i, j] = sum over n, d, h, w of grad_output[n, o, d, h, w] * x[n, c, d + t, h + i,
    w + j]`` (``x`` zero-padded). The ``kd`` depth taps ``t`` of the thinner side are stacked as channels of 2D
    images, one image per depth slice: of the input (``x[n, :, d + t]`` beside ``grad_output[n, :, d]``) when it
    has at most as many channels as the output, else of the output gradient (``grad_output[n, :, d - t]`` beside
    ``x[n, :, d]``; decoder convolutions read twice the channels they write), and a 2D convolution's weight
    gradient sums the rest. Large stacks are built in depth chunks whose gradients add up
    (:data:`STACK_CHUNK_BYTES`).

    Args:
        inputs: The convolution's input, ``(N, C, D, H, W)``.
        grad_output: Gradient of its output, ``(N, O, D', H', W')`` with ``D' = D + 2 * padding[0] - kd + 1``.
        kernel_size: ``(kd, kh, kw)``.
        padding: Zero padding per axis, ``(pd, ph, pw)``.

    Returns:
        The weight gradient, ``(O, C, kd, kh, kw)``, contiguous.
    """
    kd, kh, kw = kernel_size
    channels, out_channels = inputs.shape[1], grad_output.shape[1]
    stack_inputs = channels <= out_channels
    # Slice j of the stacked side pairs with slice j of the other side, and its tap t reads slice
    # j + direction * t + shift of the stacked side.
    stacked_side, other = (inputs, grad_output) if stack_inputs else (grad_output, inputs)
    direction, shift = (1, -padding[0]) if stack_inputs else (-1, padding[0])
    batch, stacked_channels, source_depth = stacked_side.shape[:3]
    depth = other.shape[2]
    plane = stacked_side.shape[3:]
    slice_bytes = batch * kd * stacked_channels * plane[0] * plane[1] * stacked_side.element_size()
    chunk = max(1, min(depth, STACK_CHUNK_BYTES // max(1, slice_bytes)))
    template = inputs.new_empty((out_channels, kd * channels, kh, kw) if stack_inputs
                                else (kd * out_channels, channels, kh, kw))  # the 2D weight: shape only
    total: torch.Tensor | None = None
    for first in range(0, depth, chunk):
        last = min(depth, first + chunk)
        stacked = stacked_side.new_empty((batch, last - first, kd, stacked_channels, *plane))
        for tap in range(kd):
            offset = direction * tap + shift
            # Slices j whose source j + offset lies outside the tensor read the zero padding.
            low, high = max(first, -offset), min(last, source_depth - offset)
            if low >= high:
                stacked[:, :, tap].zero_()
                continue
            stacked[:, :low - first, tap].zero_()
            stacked[:, high - first:, tap].zero_()
            stacked[:, low - first:high - first, tap] = stacked_side[:, :, low + offset:high + offset].transpose(1, 2)
        stacked_images = stacked.view(batch * (last - first), kd * stacked_channels, *plane)
        other_images = other[:, :, first:last].transpose(1, 2).reshape(batch * (last - first), other.shape[1],
                                                                        *other.shape[3:])
        images, grads = (stacked_images, other_images) if stack_inputs else (other_images, stacked_images)
        part = torch.ops.aten.convolution_backward(
            grads, images, template, None, [1, 1], [padding[1], padding[2]], [1, 1], False, [0, 0], 1,
            [False, True, False])[1]
        total = part if total is None else total.add_(part)
    assert total is not None  # depth >= 1
    if stack_inputs:
        return total.view(out_channels, kd, channels, kh, kw).transpose(1, 2).contiguous()
    return total.view(kd, out_channels, channels, kh, kw).permute(1, 2, 0, 3, 4).contiguous()


class _StackedWeightGradientConv3d(torch.autograd.Function):
    """``F.conv3d`` (stride 1) whose backward takes the weight gradient from :func:`stacked_depth_weight_gradient`
    and the input and bias gradients from PyTorch's own convolution backward."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,  # type: ignore[override]
                padding: tuple[int, int, int]) -> torch.Tensor:
        ctx.save_for_backward(inputs, weight)
        ctx.padding = padding
        ctx.has_bias = bias is not None
        return functional.conv3d(inputs, weight, bias, 1, padding)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        inputs, weight = ctx.saved_tensors
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_input = grad_bias = grad_weight = None
        if need_input:
            grad_input = torch.ops.aten.convolution_backward(
                grad_output, inputs, weight, None, [1, 1, 1], list(ctx.padding), [1, 1, 1], False, [0, 0, 0], 1,
                [True, False, False])[0]
        if need_bias and ctx.has_bias:
            # Not from convolution_backward: asking it for the bias gradient makes oneDNN compute the weight
            # gradient too (measured: 3x the time of the input gradient alone).
            grad_bias = grad_output.sum(dim=(0, 2, 3, 4))
        if need_weight:
            # No .contiguous() first: stacking copies each slice of both sides anyway, whatever their strides.
            grad_weight = stacked_depth_weight_gradient(inputs, grad_output, tuple(weight.shape[2:]), ctx.padding)
        return grad_input, grad_weight, grad_bias, None


_DTYPES = (torch.float32, torch.float64)  # float64: for gradcheck; autocast's bfloat16 keeps oneDNN's path


class StackedWeightGradientConv3d(nn.Conv3d):
    """An ``nn.Conv3d`` (same parameters and state dict) whose training backward uses the stacked weight
    gradient when the input is a float32 (or float64) CPU tensor; anything else runs ``nn.Conv3d``'s own
    path."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,  # noqa: A002  # nn.Conv3d's name
                      bias: torch.Tensor | None) -> torch.Tensor:
        if (torch.is_grad_enabled() and weight.requires_grad and input.device.type == "cpu"
                and input.dtype in _DTYPES and weight.dtype == input.dtype
                and not torch.is_autocast_enabled("cpu")):
            return _StackedWeightGradientConv3d.apply(input, weight, bias, tuple(self.padding))
        return super()._conv_forward(input, weight, bias)


def stacked_weight_gradient_applies(module: nn.Module) -> bool:
    """Whether ``module`` is a 3D convolution the stacked weight gradient speeds up: stride 1, no dilation or
    groups, zero padding given as numbers, a kernel deeper than one slice, at least
    :data:`MIN_STACKED_IN_CHANNELS` input channels."""
    return (type(module) is nn.Conv3d and module.stride == (1, 1, 1) and module.dilation == (1, 1, 1)
            and module.groups == 1 and module.padding_mode == "zeros" and not isinstance(module.padding, str)
            and module.kernel_size[0] > 1 and module.in_channels >= MIN_STACKED_IN_CHANNELS)


def use_stacked_weight_gradient(network: nn.Module) -> int:
    """Switch the network's eligible 3D convolutions to :class:`StackedWeightGradientConv3d`, in place
    (:func:`~autounet.networks.swap.switch_module_classes`); the forward computes exactly what it did.

    Args:
        network: Any module.

    Returns:
        How many convolutions were switched.
    """
    return switch_module_classes(
        network, lambda module: StackedWeightGradientConv3d if stacked_weight_gradient_applies(module) else None)
