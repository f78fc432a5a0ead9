"""Faster float32 inference on CPUs where it pays: channels-last weights and ``torch.compile``, switched on
once a prediction has spent long enough in the network to repay the compilation.

Compiling a 3D U-Net's forward takes tens of seconds on a small CPU; the compiled forward saves about a
third of every window's time on AVX-512 CPUs (``autounet.devices.cpu_compile_speeds_up_float32``). A few
small cases (or tiny networks) would lose, a real CT volume (hundreds of windows with mirroring) gains
minutes, so the network runs eagerly until it has taken about as long as a compilation, and only then
compiles. Which windows ran compiled depends on timing, so results may differ from an all-eager run within
float tolerance (about 1e-5 of the logits), never more. If compilation fails (no working C++ toolchain, an
inductor error), the network stays eager and one warning says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch

from autounet.devices import cpu_compile_speeds_up_float32
from autounet.inference.sliding_window import PatchModel

__all__ = ["COMPILED_TOLERANCE", "EAGER_SECONDS_BEFORE_COMPILE", "CompiledAfterWarmup", "compile_when_it_pays"]

logger = logging.getLogger(__name__)

EAGER_SECONDS_BEFORE_COMPILE = 60.0
"""Seconds of eager network calls before compiling: about what compiling a 3D U-Net's forward takes on a
2-core CPU, so that a prediction never loses more than it could have saved."""


COMPILED_TOLERANCE = 1e-3
"""Largest difference of compiled from eager logits, relative to their largest magnitude, that is float
rounding (measured: about 1e-5)."""


class CompiledAfterWarmup:
    """A patch model that calls a torch network eagerly until those calls took ``switch_after_seconds``, then
    through a channels-last, ``torch.compile``-d version of the same network (same weights, results equal
    within float tolerance).

    Args:
        network: The torch network in eval mode, on the CPU.
        switch_after_seconds: Eager network time before compiling.
    """

    def __init__(self, network: torch.nn.Module, switch_after_seconds: float = EAGER_SECONDS_BEFORE_COMPILE) -> None:
        self.network = network
        self.switch_after_seconds = switch_after_seconds
        self.eager_seconds = 0.0
        self.compiled: PatchModel | None = None
        self.failed = False
        self.batch_size = 0
        self.verified = False

    def __call__(self, patches: torch.Tensor) -> torch.Tensor | Sequence[torch.Tensor]:
        """Logits of a batch of patches ``(B, C, *patch)``."""
        if self.compiled is None and not self.failed and self.eager_seconds >= self.switch_after_seconds:
            self.network.to(memory_format=_channels_last(patches.ndim))
            # dynamic=False: the sliding window always sends the same patch shape.
            self.compiled = torch.compile(self.network, dynamic=False)
        if self.compiled is not None:
            try:
                return self._call_compiled(patches)
            except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to the eager network
                self._give_up(exc)
        start = time.perf_counter()
        output = self.network(patches)
        self.eager_seconds += time.perf_counter() - start
        return output

    def _call_compiled(self, patches: torch.Tensor) -> torch.Tensor:
        """The compiled forward; a case's last, smaller batch is padded to the compiled batch size, so that
        every call reuses the one compiled graph instead of compiling another (tens of seconds each)."""
        assert self.compiled is not None  # checked by the caller
        count = patches.shape[0]
        self.batch_size = self.batch_size or count
        if count < self.batch_size:
            padding = patches.new_zeros((self.batch_size - count, *patches.shape[1:]))
            patches = torch.cat([patches, padding])
        output = self.compiled(patches.contiguous(memory_format=_channels_last(patches.ndim)))
        if isinstance(output, (list, tuple)):
            output = output[0]
        if not self.verified:
            self._verify(patches, output)
        return output[:count]

    def _verify(self, patches: torch.Tensor, output: torch.Tensor) -> None:
        """Compare the first compiled batch with the eager network once: under instruction-set limits
        (``ATEN_CPU_CAPABILITY=avx2`` on an AVX-512 CPU) inductor's code was measured to disagree with eager
        (a quarter of the labels changed), so a compiled network is used only after it agreed."""
        expected = self.network(patches)
        if isinstance(expected, (list, tuple)):
            expected = expected[0]
        difference = float((output.float() - expected.float()).abs().max())
        scale = float(expected.float().abs().max())
        if not difference <= COMPILED_TOLERANCE * max(scale, 1.0):
            raise RuntimeError(f"the compiled network's logits differ from eager's by {difference:.3g}")
        self.verified = True

    def _give_up(self, exc: Exception) -> None:
        logger.warning("torch.compile failed (%s: %s); predicting without it", type(exc).__name__,
                       str(exc).splitlines()[0] if str(exc) else "")
        self.compiled, self.failed = None, True
        self.network.to(memory_format=torch.contiguous_format)


def _channels_last(tensor_ndim: int) -> torch.memory_format:
    return torch.channels_last_3d if tensor_ndim == 5 else torch.channels_last


def compile_when_it_pays(networks: Sequence[PatchModel], ndim: int, device: torch.device,
                         enabled: bool | None) -> tuple[PatchModel, ...]:
    """The patch models to predict with: torch networks wrapped in :class:`CompiledAfterWarmup` where that
    is faster, the others (runtime sessions, networks on a GPU) as they are.

    Args:
        networks: One patch model per fold.
        ndim: Spatial dimensionality of the networks.
        device: Where they run.
        enabled: ``None``: where :func:`~autounet.devices.cpu_compile_speeds_up_float32` says so, after the
            warm-up; ``True``: on every CPU, from the first window; ``False``: never.
    """
    if device.type != "cpu" or enabled is False or (enabled is None and not cpu_compile_speeds_up_float32(ndim)):
        return tuple(networks)
    warmup = 0.0 if enabled else EAGER_SECONDS_BEFORE_COMPILE
    return tuple(CompiledAfterWarmup(n, warmup) if isinstance(n, torch.nn.Module) else n for n in networks)
