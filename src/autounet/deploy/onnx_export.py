"""Export an autounet network to ONNX with dynamic batch and spatial axes.

Exporter and opset, chosen deliberately:
- The **dynamo exporter** (``torch.onnx.export(..., dynamo=True)``, torch's supported path since the
  TorchScript exporter was deprecated) is the default. Its spatial axes are declared as *multiples of the
  network's total stride* (``stride * Dim``), which is exactly the set of sizes a U-Net accepts (skip
  connections must line up after the transposed convolutions); any other size is refused by ONNX Runtime's
  shape check instead of producing silently misaligned features. Both exporters were tried on 2D and 3D
  networks with plain and residual encoders with torch 2.13: both export and agree with torch to ~1e-5; the
  TorchScript exporter (``dynamo=False``) stays selectable as a fall-back for torch builds without
  ``onnxscript``.
- **Opset 18**: the oldest opset the dynamo exporter emits natively (no down-conversion pass), supported by
  ONNX Runtime >= 1.14 and OpenVINO, and it has every operation a U-Net uses (Conv, ConvTranspose,
  InstanceNormalization, LeakyRelu, Concat, Add).
- Deep supervision must be off: a deployable graph has one output, the full-resolution logits.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from autounet.deploy._deps import DeployError, require

__all__ = ["INPUT_NAME", "OPSET", "OUTPUT_NAME", "export_onnx"]

OPSET = 18
INPUT_NAME = "patches"
OUTPUT_NAME = "logits"


def export_onnx(network: nn.Module, example_shape: tuple[int, ...], total_stride: tuple[int, ...], out_path: Path,
                dynamo: bool = True) -> Path:
    """Write ``network`` as an ONNX graph with dynamic batch and spatial axes.

    Args:
        network: A network returning one logits tensor (built with ``deep_supervision=False``).
        example_shape: ``(B, C, *patch)`` of the tracing input, e.g. ``(1, channels, *patch_size)``.
        total_stride: The network's total downsampling per spatial axis
            (:meth:`UNetSpec.total_downsampling`); spatial sizes of the graph are multiples of it.
        out_path: Where the ``.onnx`` file is written (atomically: a temporary name, then replaced).
        dynamo: Use the dynamo exporter (default) or the TorchScript one.

    Returns:
        ``out_path``.

    Raises:
        DeployError: The network has deep supervision on, or the example shape does not fit the stride.
        MissingDependencyError: ``onnx`` (or, for the dynamo exporter, ``onnxscript``) is not installed.
    """
    require("onnx")
    if dynamo:
        require("onnxscript")
    spatial = example_shape[2:]
    if getattr(network, "deep_supervision", False):
        raise DeployError("export needs a network built with deep_supervision=False (one output)", out_path)
    if len(spatial) != len(total_stride) or any(s % t for s, t in zip(spatial, total_stride, strict=True)):
        raise DeployError(f"example patch {tuple(spatial)} is not a multiple of the network's total stride "
                          f"{tuple(total_stride)}", out_path)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = out_path.with_name(out_path.name + ".tmp")
    was_training = network.training
    network.eval()
    example = torch.zeros(example_shape, dtype=torch.float32)
    try:
        with torch.no_grad(), warnings.catch_warnings(), _quiet_exporter_logs():
            warnings.simplefilter("ignore")  # exporter chatter (deprecations, tracer hints) is not the user's
            if dynamo:
                _export_dynamo(network, example, total_stride, temporary)
            else:
                _export_torchscript(network, example, temporary)
        temporary.replace(out_path)
    finally:
        temporary.unlink(missing_ok=True)
        network.train(was_training)
    return out_path


@contextlib.contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    """Only errors from torch's ONNX exporter loggers while exporting: the dynamo exporter logs a warning per
    torchvision operator it cannot register when torchvision is not installed (four lines in every deploy),
    which says nothing about the user's model."""
    exporter = logging.getLogger("torch.onnx")
    level = exporter.level
    exporter.setLevel(logging.ERROR)
    try:
        yield
    finally:
        exporter.setLevel(level)


def _export_dynamo(network: nn.Module, example: torch.Tensor, total_stride: tuple[int, ...], path: Path) -> None:
    dim = torch.export.Dim
    axes: dict[int, object] = {0: dim("batch", min=1, max=1024)}
    for axis, stride in enumerate(total_stride):
        # a multiple of the stride, so the exporter can prove the skip connections line up
        axes[2 + axis] = stride * dim(f"s{axis}", min=1, max=max(1, 4096 // stride))
    program = torch.onnx.export(network, (example,), dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME],
                                output_names=[OUTPUT_NAME], dynamic_shapes=({**axes},), external_data=False,
                                verbose=False)
    program.save(str(path))


def _export_torchscript(network: nn.Module, example: torch.Tensor, path: Path) -> None:
    spatial_names = {2 + axis: f"s{axis}" for axis in range(example.dim() - 2)}
    dynamic = {name: {0: "batch", **spatial_names} for name in (INPUT_NAME, OUTPUT_NAME)}
    torch.onnx.export(network, (example,), str(path), dynamo=False, opset_version=OPSET,
                      input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=dynamic)
