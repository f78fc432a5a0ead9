"""ONNX Runtime patch models: an ONNX file as a drop-in for the torch network in sliding-window prediction.

A :class:`OrtPatchModel` is a ``PatchModel`` (``(B, C, *patch)`` float tensor -> ``(B, K, *patch)`` float32
logits tensor). The file is checked when it is opened, not at the first window: a corrupted or truncated file,
or one whose input channels, output channels or spatial rank do not fit the plan, raises
:class:`OnnxModelError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from autounet.deploy._deps import DeployError, OnnxModelError, require

__all__ = ["RUNTIMES", "OpenVinoPatchModel", "OrtPatchModel", "open_runtime"]


class OrtPatchModel:
    """An ONNX file run by ONNX Runtime on the CPU.

    Args:
        path: The ``.onnx`` file.
        in_channels: Input channels the plan expects.
        num_outputs: Output channels (logits) the plan expects.
        ndim: Spatial dimensions of the plan's configuration (2 or 3).
        threads: Intra-op threads; ``None`` lets ONNX Runtime use every core.

    Raises:
        OnnxModelError: The file is unreadable or its input/output shapes do not fit the plan.
        MissingDependencyError: ``onnxruntime`` is not installed.
    """

    def __init__(self, path: Path, in_channels: int, num_outputs: int, ndim: int, threads: int | None = None) -> None:
        ort = require("onnxruntime")
        self.path = Path(path)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initialisers are noise for a user
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001  # ORT raises its own untyped errors for bad files
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise OnnxModelError(f"cannot load the ONNX model (corrupted or truncated file?): {message}",
                                 self.path) from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise OnnxModelError(f"expected one input and one output, the graph has {len(inputs)} and "
                                 f"{len(outputs)}", self.path)
        _check_shape(self.path, "input", inputs[0].shape, in_channels, ndim)
        _check_shape(self.path, "output", outputs[0].shape, num_outputs, ndim)
        self._input_name, self._output_name = inputs[0].name, outputs[0].name

    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, *patch)`` float32 of patches ``(B, C, *patch)`` (on the CPU)."""
        array = np.ascontiguousarray(patches.detach().to("cpu", torch.float32).numpy())
        (logits,) = self._session.run([self._output_name], {self._input_name: array})
        return torch.from_numpy(np.asarray(logits, dtype=np.float32)).to(patches.device)


def _check_shape(path: Path, role: str, shape: list[object], channels: int, ndim: int) -> None:
    """Refuse a graph whose declared ``role`` shape is not ``(B, channels, *ndim spatial)``."""
    if len(shape) != ndim + 2:
        raise OnnxModelError(f"the graph's {role} has {len(shape) - 2} spatial dimensions, the plan {ndim}", path)
    declared = shape[1]
    if isinstance(declared, int) and declared != channels:
        raise OnnxModelError(f"the graph's {role} has {declared} channels, the plan expects {channels}", path)


class OpenVinoPatchModel:
    """An ONNX file (float or QDQ INT8) run by OpenVINO on the CPU: the fast path for NNCF-quantized models.

    Args:
        path: The ``.onnx`` file.
        in_channels: Input channels the plan expects.
        num_outputs: Output channels (logits) the plan expects.
        ndim: Spatial dimensions of the plan's configuration (2 or 3).
        threads: Inference threads; ``None`` lets OpenVINO choose.
        inference_precision: ``"f32"`` to keep float layers in float32; ``None`` is OpenVINO's default, which
            is bf16 on CPUs with AMX/AVX-512 bf16 (faster, ~1% of argmax voxels differ from float32).

    Raises:
        OnnxModelError: The file is unreadable or its input/output shapes do not fit the plan.
        MissingDependencyError: ``openvino`` is not installed.
    """

    def __init__(self, path: Path, in_channels: int, num_outputs: int, ndim: int, threads: int | None = None,
                 inference_precision: str | None = "f32") -> None:
        ov = require("openvino")
        self.path = Path(path)
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except Exception as error:  # noqa: BLE001  # OpenVINO raises its own untyped errors for bad files
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise OnnxModelError(f"cannot load the ONNX model (corrupted or truncated file?): {message}",
                                 self.path) from None
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise OnnxModelError(f"expected one input and one output, the graph has {len(model.inputs)} and "
                                 f"{len(model.outputs)}", self.path)
        for role, port, channels in (("input", model.inputs[0], in_channels), ("output", model.outputs[0],
                                                                               num_outputs)):
            shape = port.get_partial_shape()
            dims = [d.get_length() if d.is_static else None for d in shape]
            _check_shape(self.path, role, dims, channels, ndim)
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        if inference_precision is not None:
            config["INFERENCE_PRECISION_HINT"] = inference_precision
        self._compiled = core.compile_model(model, "CPU", config)

    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, *patch)`` float32 of patches ``(B, C, *patch)`` (on the CPU)."""
        array = np.ascontiguousarray(patches.detach().to("cpu", torch.float32).numpy())
        logits = self._compiled(array)[0]
        return torch.from_numpy(np.asarray(logits, dtype=np.float32).copy()).to(patches.device)


RUNTIMES: dict[str, type[OrtPatchModel] | type[OpenVinoPatchModel]] = {"onnxruntime": OrtPatchModel,
                                                                      "openvino": OpenVinoPatchModel}
"""The runtimes a deployed graph can run on, by the name ``predict --backend`` takes."""


def open_runtime(name: str, path: Path, in_channels: int, num_outputs: int, ndim: int,
                 threads: int | None = None) -> OrtPatchModel | OpenVinoPatchModel:
    """Open an ONNX file on the runtime called ``name`` (a key of :data:`RUNTIMES`).

    Raises:
        OnnxModelError: The file is unreadable or does not fit the plan.
        MissingDependencyError: The runtime is not installed.
        DeployError: Unknown runtime name.
    """
    if name not in RUNTIMES:
        raise DeployError(f"unknown runtime '{name}'; choose one of {', '.join(RUNTIMES)}", path)
    return RUNTIMES[name](path, in_channels, num_outputs, ndim, threads=threads)
