"""The CPU a deployed model runs on: its instruction-set flags, threads, and which runtime is fastest on it.

Threads default to the *physical* cores this process may run on: the logical CPUs of
``os.sched_getaffinity`` (a container's or ``taskset``'s limit, not the host's count) with hyper-threading
siblings counted once, because two threads on one core share its vector units and convolutions gain nothing
from the second (they often lose to the contention). The flags that decide which int8/bf16 kernels exist
(``avx2``, ``avx512f``, ``avx512_vnni``, ``avx512_bf16``, ``amx_int8``) are read from ``/proc/cpuinfo`` and
recorded in the deployment report, so a timing can be read against the machine that produced it.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["KNOWN_FLAGS", "CpuInfo", "default_threads", "parse_cpuinfo", "read_cpuinfo", "seconds_per_window"]

KNOWN_FLAGS: tuple[str, ...] = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
                                "amx_int8")
"""The flags that decide which fast kernels ONNX Runtime, OpenVINO and torch can use (in report order)."""

_CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuInfo:
    """What the deployment report records about the CPU.

    Attributes:
        model: The CPU's model name (``platform.processor()`` where there is no ``/proc/cpuinfo``).
        flags: Those of :data:`KNOWN_FLAGS` the CPU has, in that order.
        logical_cpus: Logical CPUs this process may run on.
        physical_cores: Distinct physical cores among them.
    """

    model: str
    flags: tuple[str, ...]
    logical_cpus: int
    physical_cores: int


def parse_cpuinfo(text: str, allowed: set[int] | None = None) -> CpuInfo:
    """Read a ``/proc/cpuinfo`` text.

    Args:
        text: The file's content: blocks of ``key : value`` lines, one block per logical CPU.
        allowed: Logical CPU numbers (``processor``) this process may use; ``None``: all of them.

    Returns:
        The model name and flags of the first allowed CPU, and the allowed logical and physical core counts
        (a block without ``physical id``/``core id``, as in some virtual machines, counts as its own core).
    """
    blocks = [_fields(block) for block in text.split("\n\n") if block.strip()]
    blocks = [b for b in blocks if "processor" in b and (allowed is None or _int(b["processor"]) in allowed)]
    if not blocks:
        return CpuInfo(model=platform.processor(), flags=(), logical_cpus=max(1, len(allowed or ())),
                       physical_cores=max(1, len(allowed or ())))
    cores = {(b.get("physical id", ""), b.get("core id", b["processor"])) for b in blocks}
    have = set(blocks[0].get("flags", "").split())
    return CpuInfo(model=blocks[0].get("model name", platform.processor()),
                   flags=tuple(flag for flag in KNOWN_FLAGS if flag in have),
                   logical_cpus=len(blocks), physical_cores=len(cores))


def read_cpuinfo() -> CpuInfo:
    """This machine's :class:`CpuInfo`, limited to the CPUs this process may run on."""
    allowed = _affinity()
    try:
        text = _CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: no flags, every CPU counted
        text = ""
    return parse_cpuinfo(text, allowed)


def default_threads() -> int:
    """Runtime threads by default: the physical cores this process may run on (see the module docstring)."""
    return max(1, read_cpuinfo().physical_cores)


def seconds_per_window(model: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...],
                       repeats: int = 3) -> float:
    """Median seconds of one call of a patch model on a random batch of ``shape``, after one warm-up call.

    Args:
        model: A patch model (torch network in eval mode, or a runtime session wrapped as one).
        shape: ``(B, C, *patch)``.
        repeats: Timed calls.
    """
    patches = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.inference_mode():
        model(patches)  # first call: memory planning, kernel selection
        for _ in range(repeats):
            start = time.perf_counter()
            model(patches)
            times.append(time.perf_counter() - start)
    return statistics.median(times) / shape[0]


def _fields(block: str) -> dict[str, str]:
    fields = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _int(text: str) -> int:
    return int(text) if text.isdigit() else -1


def _affinity() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))
