"""What the machine's devices can do, for choices that depend on the hardware (device, mixed precision)."""

from __future__ import annotations

import functools
import re
import shutil

from autounet.errors import ConfigError

__all__ = ["DEVICE_PATTERN", "cpu_compile_speeds_up_float32", "cpu_has_native_bf16",
           "cpu_stacked_weight_gradient_speeds_up", "resolve_device"]

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
"""Device names the CLI accepts (``auto`` picks the best available)."""


def resolve_device(name: str) -> str:
    """The device to run on: ``auto`` is CUDA when available, else MPS, else the CPU; an explicit name is
    checked to exist on this machine.

    Raises:
        ConfigError: An unknown name, or a device this machine does not have (with what to use instead).
    """
    if not DEVICE_PATTERN.fullmatch(name):
        raise ConfigError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps")
    import torch

    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if name.startswith("cuda"):
        if not cuda:
            reason = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ConfigError(f"--device {name}: {reason}; use --device cpu (or auto)")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not mps:
        raise ConfigError("--device mps: MPS (Apple GPU) is not available here; use --device cpu (or auto)")
    return name


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 convolutions natively (AVX512-BF16 or AMX), as oneDNN reports it.

    On such CPUs bfloat16 autocast roughly halves the time of a U-Net training step; elsewhere bfloat16 is
    emulated and slower than float32, so autounet keeps float32 there.
    """
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # builds without oneDNN, or a torch without this query
        return False


@functools.lru_cache(maxsize=4)
def cpu_compile_speeds_up_float32(ndim: int) -> bool:
    """Whether channels-last weights plus ``torch.compile`` make float32 U-Net steps on this CPU faster.

    Measured with ``benchmarks/cpu_step_variants.py`` (3D U-Net, patch 64x96x96, batch 2, 2 threads, torch
    2.13): on an AVX-512 Xeon the training step took 0.72x and the inference forward 0.63x of eager's time, the
    loss unchanged; with the kernels limited to AVX2 the same change made the step 3x slower (channels-last 3D
    convolutions leave oneDNN's fast path) and ``torch.compile`` alone saved only 10%. So: 3D networks, CPUs
    whose PyTorch kernels run AVX-512, and a C++ compiler for inductor's generated code. 2D was not measured.

    Args:
        ndim: Spatial dimensionality of the network.
    """
    import torch

    if ndim != 3 or torch.backends.cpu.get_cpu_capability() != "AVX512":
        return False
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


def cpu_stacked_weight_gradient_speeds_up(ndim: int) -> bool:
    """Whether float32 3D training on this CPU should take convolution weight gradients from stacked 2D ones
    (``autounet.networks.weight_gradient``).

    PyTorch's kernels stopping at AVX2 (``torch.backends.cpu.get_cpu_capability()``) mean oneDNN has no
    ``jit:avx2`` kernel for the 3D weight gradient and falls back to a slow im2col product; with AVX-512
    kernels its own is as fast as the forward. Measured in ``benchmarks/cpu_step_variants.py`` (README).

    Args:
        ndim: Spatial dimensionality of the network.
    """
    import torch

    return ndim == 3 and torch.backends.cpu.get_cpu_capability() == "AVX2"
