"""What the machine's devices can do, for choices that depend on the hardware (mixed precision)."""

from __future__ import annotations

import argparse
import functools
import logging
import re

from autounet.errors import ConfigError

__all__ = ["cpu_has_native_bf16", "device_name", "resolve_device"]

logger = logging.getLogger(__name__)


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


_DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def device_name(text: str) -> str:
    """An argparse ``type=`` for ``--device``: the syntax only (``cpu``, ``cuda``, ``cuda:N``, ``mps``), no torch.

    Raises:
        argparse.ArgumentTypeError: Any other name, so the CLI answers with a usage error.
    """
    name = text.strip().lower()
    if not _DEVICE_PATTERN.match(name):
        raise argparse.ArgumentTypeError(f"unknown device '{text}'; use cpu, cuda, cuda:N or mps")
    return name


def resolve_device(requested: str | None) -> str:
    """The device to run on: an explicit one if this machine has it, else the best available.

    Args:
        requested: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; ``None`` picks CUDA, then MPS, then CPU and logs
            the choice once.

    Returns:
        The device name, as torch accepts it.

    Raises:
        ConfigError: The requested device is unknown or not present on this machine.
    """
    import torch

    if requested is None:
        if torch.cuda.is_available():
            chosen = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            chosen = "mps"
        else:
            chosen = "cpu"
        logger.info("device: %s (the best available; choose with --device)", chosen)
        return chosen
    name = requested.strip().lower()
    if not _DEVICE_PATTERN.match(name):
        raise ConfigError(f"--device: unknown device '{requested}'; use cpu, cuda, cuda:N or mps")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            raise ConfigError(f"--device {requested}: this machine has {count} usable CUDA device(s); "
                              "use --device cpu (or mps on Apple silicon)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ConfigError(f"--device {requested}: MPS is not available on this machine; use --device cpu")
    return name
