"""The accuracy fall-back of INT8 quantization: steps that keep progressively more of a U-Net in float.

Each :class:`QuantizationStep` names node *selectors*; a selector picks nodes of the exported float graph by
their operation and position (graph order is topological, so "before the first strided convolution" is the
first encoder stage and "after the last transposed convolution" the last decoder stage). Normalisation layers
stay float at every step (neither quantizer has int8 kernels for them). The order follows where quantization
error hurts a segmentation most, cheapest first:

1. ``int8``: every convolution int8.
2. ``first-last-float``: the first convolution (raw intensities, the widest range) and the last one (the logits
   the argmax decides on) in float: two small layers, little speed lost.
3. ``upsampling-float``: also the transposed convolutions (their int8 kernels are missing on many CPUs
   anyway, so ONNX Runtime runs them through dequantize/quantize pairs).
4. ``full-resolution-float``: also every convolution of the full-resolution stages, where thin and small
   structures live; the lower stages, most of the multiply-adds of a 3D network, stay int8.
5. ``decoder-float``: the whole decoder in float, the encoder int8.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autounet.deploy._deps import DeployError, OnnxModelError, require

__all__ = ["FALLBACK_STEPS", "SELECTORS", "QuantizationStep", "float_nodes"]


@dataclass(frozen=True)
class QuantizationStep:
    """One attempt of the fall-back.

    Attributes:
        name: Short name, as the report and the CLI table show it.
        keep_float: Keys of :data:`SELECTORS` whose nodes stay float (their union).
        description: One line for the report.
    """

    name: str
    keep_float: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class _Node:
    name: str
    op_type: str
    strided: bool


def _convolutions(nodes: Sequence[_Node]) -> list[_Node]:
    return [n for n in nodes if n.op_type == "Conv"]


def _first_and_last(nodes: Sequence[_Node]) -> list[str]:
    convs = _convolutions(nodes)
    return [convs[0].name, convs[-1].name] if convs else []


def _upsampling(nodes: Sequence[_Node]) -> list[str]:
    return [n.name for n in nodes if n.op_type in ("ConvTranspose", "Resize")]


def _full_resolution(nodes: Sequence[_Node]) -> list[str]:
    first_strided = next((i for i, n in enumerate(nodes) if n.op_type == "Conv" and n.strided), len(nodes))
    ups = [i for i, n in enumerate(nodes) if n.op_type in ("ConvTranspose", "Resize")]
    last_up = ups[-1] if ups else len(nodes)
    return [n.name for i, n in enumerate(nodes) if n.op_type == "Conv" and (i < first_strided or i > last_up)]


def _decoder(nodes: Sequence[_Node]) -> list[str]:
    ups = [i for i, n in enumerate(nodes) if n.op_type in ("ConvTranspose", "Resize")]
    first_up = ups[0] if ups else len(nodes)
    return [n.name for i, n in enumerate(nodes) if i >= first_up and n.op_type in ("Conv", "ConvTranspose")]


SELECTORS: dict[str, Callable[[Sequence[_Node]], list[str]]] = {
    "first_and_last_convolutions": _first_and_last,
    "upsampling": _upsampling,
    "full_resolution_convolutions": _full_resolution,
    "decoder": _decoder,
}
"""Node selectors by key: graph nodes in order -> names of the nodes to keep in float."""

FALLBACK_STEPS: tuple[QuantizationStep, ...] = (
    QuantizationStep("int8", (), "every convolution int8 (normalisation float)"),
    QuantizationStep("first-last-float", ("first_and_last_convolutions",),
                     "first and last convolutions float"),
    QuantizationStep("upsampling-float", ("first_and_last_convolutions", "upsampling"),
                     "also the transposed convolutions (upsampling) float"),
    QuantizationStep("full-resolution-float", ("first_and_last_convolutions", "upsampling",
                                               "full_resolution_convolutions"),
                     "also every convolution of the full-resolution stages float"),
    QuantizationStep("decoder-float", ("first_and_last_convolutions", "upsampling", "full_resolution_convolutions",
                                       "decoder"),
                     "the whole decoder float, the encoder int8"),
)
"""The fall-back, tried in this order until the accuracy gate holds (see the module docstring)."""


def float_nodes(onnx_path: Path, step: QuantizationStep) -> tuple[str, ...]:
    """Names of the nodes of a float graph that ``step`` keeps in float, in graph order.

    Raises:
        DeployError: The step names an unknown selector.
        OnnxModelError: The graph cannot be read.
    """
    unknown = [key for key in step.keep_float if key not in SELECTORS]
    if unknown:
        raise DeployError(f"quantization step '{step.name}' names unknown selectors: {', '.join(unknown)} "
                          f"(known: {', '.join(SELECTORS)})", onnx_path)
    onnx = require("onnx")
    try:
        graph = onnx.load(str(onnx_path)).graph
    except Exception as error:  # noqa: BLE001  # protobuf raises its own untyped errors for bad files
        raise OnnxModelError(f"cannot read the ONNX model: {str(error).splitlines()[0]}", onnx_path) from None
    nodes = [_Node(node.name, node.op_type, any(a.name == "strides" and any(s > 1 for s in a.ints)
                                                for a in node.attribute)) for node in graph.node]
    chosen: set[str] = set()
    for key in step.keep_float:
        chosen.update(SELECTORS[key](nodes))
    return tuple(n.name for n in nodes if n.name in chosen)
