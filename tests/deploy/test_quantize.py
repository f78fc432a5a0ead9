from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autounet.deploy import DeployError
from autounet.deploy.onnx_export import export_onnx
from autounet.deploy.quantize import METHODS, first_and_last_convolutions, quantize_int8
from autounet.deploy.runtime import OrtPatchModel

from .conftest import tiny_network

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _smooth(count: int, seed: int) -> np.ndarray:
    noise = torch.randn((count, 2, 16, 16), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.avg_pool2d(noise, 3, stride=1, padding=1).numpy() * 3


@pytest.fixture(scope="module")
def float_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    network = tiny_network(2)
    path = export_onnx(network, (1, 2, 16, 16), (4, 4), tmp_path_factory.mktemp("q") / "fp32.onnx", dynamo=False)
    return network, path


@pytest.mark.parametrize("method", METHODS)
def test_int8_model_runs_and_agrees_with_fp32_on_most_voxels(float_model: tuple, tmp_path: Path,
                                                             method: str) -> None:
    if method == "nncf":
        pytest.importorskip("nncf")
    network, path = float_model
    int8 = quantize_int8(path, _smooth(8, 1), tmp_path / "int8.onnx", method=method)
    model = OrtPatchModel(int8, 2, 3, 2, threads=1)
    patches = torch.from_numpy(_smooth(4, 2))
    with torch.no_grad():
        expected = network(patches).argmax(1)
    logits = model(patches)
    assert logits.shape == (4, 3, 16, 16) and logits.dtype == torch.float32
    assert (logits.argmax(1) == expected).float().mean() > 0.9
    import onnx

    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops


@pytest.mark.parametrize("method", METHODS)
def test_keep_float_leaves_the_named_convolutions_unquantized(float_model: tuple, tmp_path: Path,
                                                              method: str) -> None:
    if method == "nncf":
        pytest.importorskip("nncf")
    import onnx

    _, path = float_model
    first, last = first_and_last_convolutions(path)
    int8 = quantize_int8(path, _smooth(4, 1), tmp_path / "int8.onnx", keep_float=(first, last), method=method)
    graph = onnx.load(str(int8)).graph
    producers = {output: node for node in graph.node for output in node.output}
    for name in (first, last):
        (conv,) = [node for node in graph.node if node.name == name]
        weight_source = producers.get(conv.input[1])
        assert weight_source is None or weight_source.op_type != "DequantizeLinear", name
    quantized_convs = [node for node in graph.node if node.op_type == "Conv" and node.name not in (first, last)
                       and producers.get(node.input[1]) is not None
                       and producers[node.input[1]].op_type == "DequantizeLinear"]
    assert quantized_convs


def test_bad_arguments_are_refused(float_model: tuple, tmp_path: Path) -> None:
    _, path = float_model
    with pytest.raises(DeployError, match="unknown quantization method"):
        quantize_int8(path, _smooth(2, 0), tmp_path / "q.onnx", method="magic")
    with pytest.raises(DeployError, match="not in the graph: nope"):
        quantize_int8(path, _smooth(2, 0), tmp_path / "q.onnx", keep_float=("nope",), method="onnxruntime")
