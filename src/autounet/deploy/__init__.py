"""Deployment: ONNX export, ONNX Runtime patch models, calibration patches and INT8 quantization.

The stage turns a torch network into a patch model (``(B, C, *patch)`` float tensor -> logits) that
``inference`` can run in place of the torch network. Its third-party packages (``onnx``, ``onnxruntime``,
``onnxscript``, ``nncf``, ``openvino``) are the optional ``deploy`` extra: importing this package works without them,
and using a
function that needs them raises :class:`MissingDependencyError` saying what to install.
"""

from __future__ import annotations

from autounet.deploy._deps import DeployError, MissingDependencyError, OnnxModelError

__all__ = ["DeployError", "MissingDependencyError", "OnnxModelError"]
