"""What the machine's devices can do, for choices that depend on the hardware (device, mixed precision)."""

from __future__ import annotations

import functools
import re

from autounet.errors import ConfigError

__all__ = ["DEVICE_PATTERN", "cpu_has_native_bf16", "resolve_device"]

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
