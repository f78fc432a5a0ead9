"""Static INT8 post-training quantization of an exported ONNX network.

Two methods, both writing a QDQ ONNX graph (QuantizeLinear/DequantizeLinear pairs around the int8
operations, per-channel symmetric int8 weights, per-tensor uint8/int8 activations), so a deployed model
stays one portable ONNX file:

- ``"onnxruntime"``: ``onnxruntime.quantization.quantize_static`` with MinMax calibration.
- ``"nncf"``: NNCF post-training quantization (its default preset: symmetric weights per channel, activation
  ranges from its calibrated statistics, fast bias correction) on the ONNX graph. Needs ``nncf``.

The default, ``"nncf"``, was chosen by measurement (``benchmarks/deploy_patch.py --repeats 3 --calibration 8``;
Intel Xeon (family 6 model 207, AVX-512 VNNI, AMX int8/bf16), 2 threads shared with other jobs, medians of 3,
random-weight U-Nets of realistic size, so timings are noisy and agreement is a numerics check, not Dice):
argmax agreement with torch fp32, 3D 64x96x96: NNCF 93.0% vs ONNX Runtime MinMax 89.8%; 2D 256x256: 92.3% vs
89.1% (the same on either runtime). Speed depends on the runtime far more than on the quantizer: QDQ graphs on
ONNX Runtime were barely faster than fp32 (3D 2.07 s vs 4.30 s fp32 ORT and 4.03 s torch; NNCF's graph even
10.9 s there), while OpenVINO runs them with int8 kernels (3D 0.75-1.0 s, 2D 0.05-1.3 s vs torch 7.5 s).
So NNCF decides the quantization and :class:`autounet.deploy.runtime.OpenVinoPatchModel` runs the result.
Caveat found while measuring: OpenVINO's *float* path defaults to bf16 on AMX CPUs (3D 0.56 s, 98.8%
agreement), so INT8 must beat that, not torch fp32, before it is worth its accuracy risk.

Normalisation layers are never quantized by either tool (InstanceNormalization has
no int8 kernel); ``keep_float`` names further nodes, e.g. the first and last convolutions
(:func:`first_and_last_convolutions`), to keep in float as the accuracy fall-back.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from autounet.deploy._deps import DeployError, OnnxModelError, require

__all__ = ["DEFAULT_METHOD", "METHODS", "first_and_last_convolutions", "quantize_int8"]

METHODS = ("onnxruntime", "nncf")
DEFAULT_METHOD = "nncf"


def quantize_int8(onnx_path: Path, calibration_patches: np.ndarray, out_path: Path,
                  keep_float: Sequence[str] = (), method: str = DEFAULT_METHOD) -> Path:
    """Quantize a float ONNX network to INT8 with calibration patches.

    Args:
        onnx_path: The float32 graph (from :func:`autounet.deploy.onnx_export.export_onnx`).
        calibration_patches: ``(N, C, *patch)`` float32 patches, e.g. from
            :func:`autounet.deploy.calibration.draw_calibration_patches`; each is fed as a batch of one.
        out_path: Where the quantized ``.onnx`` file is written.
        keep_float: Names of graph nodes to leave in float (see :func:`first_and_last_convolutions`).
        method: ``"nncf"`` or ``"onnxruntime"`` (see the module docstring).

    Returns:
        ``out_path``.

    Raises:
        DeployError: Unknown method, no calibration patches, or a ``keep_float`` name not in the graph.
        OnnxModelError: The input graph cannot be read.
        MissingDependencyError: The method's package is not installed.
    """
    if method not in METHODS:
        raise DeployError(f"unknown quantization method '{method}'; choose one of {', '.join(METHODS)}", onnx_path)
    patches = np.asarray(calibration_patches, dtype=np.float32)
    if patches.ndim < 4 or len(patches) == 0:
        raise DeployError(f"calibration needs patches (N, C, *patch), got shape {patches.shape}", onnx_path)
    onnx = require("onnx")
    try:
        model = onnx.load(str(onnx_path))
    except Exception as error:  # noqa: BLE001  # protobuf raises its own untyped errors for bad files
        raise OnnxModelError(f"cannot read the ONNX model: {str(error).splitlines()[0]}", onnx_path) from None
    names = {node.name for node in model.graph.node}
    unknown = sorted(set(keep_float) - names)
    if unknown:
        raise DeployError(f"keep_float names nodes not in the graph: {', '.join(unknown)}", onnx_path)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    input_name = model.graph.input[0].name
    if method == "onnxruntime":
        _quantize_onnxruntime(Path(onnx_path), patches, input_name, out_path, keep_float)
    else:
        _quantize_nncf(model, patches, out_path, keep_float)
    return out_path


def first_and_last_convolutions(onnx_path: Path) -> tuple[str, str]:
    """Names of the first and the last Conv node of a graph (in graph order): the fall-back's float candidates."""
    onnx = require("onnx")
    convs = [node.name for node in onnx.load(str(onnx_path)).graph.node if node.op_type == "Conv"]
    if not convs:
        raise DeployError("the graph has no convolutions", onnx_path)
    return convs[0], convs[-1]


def _batches(patches: np.ndarray) -> Iterator[np.ndarray]:
    for index in range(len(patches)):
        yield patches[index:index + 1]


def _quantize_onnxruntime(onnx_path: Path, patches: np.ndarray, input_name: str, out_path: Path,
                          keep_float: Sequence[str]) -> None:
    quantization = require("onnxruntime.quantization")

    class _Reader(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = _batches(patches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory() as scratch:
        # shape inference + graph clean-up first, as ONNX Runtime recommends before static quantization
        prepared = Path(scratch) / "prepared.onnx"
        quantization.shape_inference.quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
        quantization.quantize_static(
            str(prepared), str(out_path), _Reader(), quant_format=quantization.QuantFormat.QDQ, per_channel=True,
            activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
            calibrate_method=quantization.CalibrationMethod.MinMax, nodes_to_exclude=list(keep_float))


def _quantize_nncf(model: object, patches: np.ndarray, out_path: Path, keep_float: Sequence[str]) -> None:
    nncf = require("nncf")
    onnx = require("onnx")
    ignored = nncf.IgnoredScope(names=list(keep_float)) if keep_float else None
    input_name = model.graph.input[0].name
    dataset = nncf.Dataset([{input_name: batch} for batch in _batches(patches)])
    quantized = nncf.quantize(model, dataset, subset_size=len(patches), ignored_scope=ignored)
    temporary = out_path.with_name(out_path.name + ".tmp")
    onnx.save(quantized, str(temporary))
    temporary.replace(out_path)
