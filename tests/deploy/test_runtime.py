from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autounet.deploy import OnnxModelError
from autounet.deploy.onnx_export import export_onnx
from autounet.deploy.runtime import OrtPatchModel

from .conftest import tiny_network

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def onnx_2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("onnx")
    return export_onnx(tiny_network(2), (1, 2, 8, 8), (4, 4), folder / "net.onnx", dynamo=False)


def test_patch_model_contract(onnx_2d: Path) -> None:
    model = OrtPatchModel(onnx_2d, in_channels=2, num_outputs=3, ndim=2, threads=1)
    logits = model(torch.randn(2, 2, 8, 12, dtype=torch.float64))
    assert isinstance(logits, torch.Tensor) and logits.dtype == torch.float32 and logits.shape == (2, 3, 8, 12)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupted_file_gives_one_line_error_naming_the_file(onnx_2d: Path, tmp_path: Path, damage: str) -> None:
    content = onnx_2d.read_bytes()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes({"truncated": content[: len(content) // 2], "garbage": b"\x00not onnx" * 50,
                        "empty": b""}[damage])
    with pytest.raises(OnnxModelError) as caught:
        OrtPatchModel(broken, in_channels=2, num_outputs=3, ndim=2)
    message = str(caught.value)
    assert "\n" not in message and str(broken) in message and "cannot load" in message


@pytest.mark.parametrize(("in_channels", "num_outputs", "ndim", "expected"), [
    (1, 3, 2, "input has 2 channels, the plan expects 1"),
    (2, 4, 2, "output has 3 channels, the plan expects 4"),
    (2, 3, 3, "input has 2 spatial dimensions, the plan 3"),
])
def test_graph_that_does_not_fit_the_plan_is_refused(onnx_2d: Path, in_channels: int, num_outputs: int, ndim: int,
                                                     expected: str) -> None:
    with pytest.raises(OnnxModelError, match=expected) as caught:
        OrtPatchModel(onnx_2d, in_channels, num_outputs, ndim)
    assert str(onnx_2d) in str(caught.value) and "\n" not in str(caught.value)


def test_openvino_patch_model_agrees_and_refuses_bad_files(onnx_2d: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from autounet.deploy.runtime import OpenVinoPatchModel

    reference = OrtPatchModel(onnx_2d, 2, 3, 2, threads=1)
    model = OpenVinoPatchModel(onnx_2d, 2, 3, 2, threads=1)
    patches = torch.randn(2, 2, 8, 12)
    torch.testing.assert_close(model(patches), reference(patches), atol=1e-4, rtol=0)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(onnx_2d.read_bytes()[:100])
    with pytest.raises(OnnxModelError, match="cannot load") as caught:
        OpenVinoPatchModel(broken, 2, 3, 2)
    assert str(broken) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(OnnxModelError, match="output has 3 channels, the plan expects 5"):
        OpenVinoPatchModel(onnx_2d, 2, 5, 2)
