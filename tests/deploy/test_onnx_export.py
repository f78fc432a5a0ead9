from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autounet.deploy import DeployError
from autounet.deploy.onnx_export import export_onnx
from autounet.deploy.runtime import OrtPatchModel
from autounet.networks.unet import build_network

from .conftest import tiny_network

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

# float32 ONNX Runtime vs torch: different convolution kernels sum in a different order; 1e-4 absolute on
# logits of order 1 (the target for trained models is 1e-3).
TOLERANCE = 1e-4


def _agreement(network: torch.nn.Module, path: Path, shapes: list[tuple[int, ...]]) -> None:
    ndim = len(shapes[0]) - 2
    model = OrtPatchModel(path, in_channels=2, num_outputs=3, ndim=ndim, threads=1)
    generator = torch.Generator().manual_seed(0)
    for shape in shapes:
        patches = torch.randn(shape, generator=generator)
        with torch.no_grad():
            expected = network(patches)
        actual = model(patches)
        assert actual.dtype == torch.float32 and actual.shape == expected.shape
        torch.testing.assert_close(actual, expected, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize(("ndim", "encoder"), [(2, "plain"), (2, "residual"), (3, "plain"), (3, "residual")])
def test_torchscript_export_agrees_at_patch_size_and_another_size(tmp_path: Path, ndim: int, encoder: str) -> None:
    network = tiny_network(ndim, encoder)
    patch = (8,) * ndim
    path = export_onnx(network, (1, 2, *patch), (4,) * ndim, tmp_path / "net.onnx", dynamo=False)
    _agreement(network, path, [(1, 2, *patch), (3, 2, 12, *(16,) * (ndim - 1))])


def test_dynamo_export_agrees_with_dynamic_batch_and_spatial_axes(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    network = tiny_network(3, "residual")
    path = export_onnx(network, (1, 2, 8, 8, 8), (4, 4, 4), tmp_path / "net.onnx")
    _agreement(network, path, [(1, 2, 8, 8, 8), (2, 2, 12, 16, 8)])


def test_export_refuses_deep_supervision_and_a_patch_off_the_stride(tmp_path: Path) -> None:
    network = tiny_network(2)
    deep = build_network(network.spec, 2, 3, deep_supervision=True)
    with pytest.raises(DeployError, match="deep_supervision"):
        export_onnx(deep, (1, 2, 8, 8), (4, 4), tmp_path / "deep.onnx", dynamo=False)
    with pytest.raises(DeployError, match="multiple of the network's total stride"):
        export_onnx(network, (1, 2, 8, 10), (4, 4), tmp_path / "odd.onnx", dynamo=False)
    assert not list(tmp_path.iterdir())


def test_export_shows_only_errors_of_torchs_exporter_loggers_and_restores_their_level(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from autounet.deploy import onnx_export

    exporter = logging.getLogger("torch.onnx")
    monkeypatch.setattr(exporter, "level", logging.INFO)
    seen: list[int] = []

    def record(network: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
        # what the dynamo exporter's operator registry logs with (its missing-torchvision warnings)
        seen.append(logging.getLogger("torch.onnx._internal.exporter._registration").getEffectiveLevel())
        path.write_bytes(b"graph")

    monkeypatch.setattr(onnx_export, "_export_torchscript", record)
    export_onnx(tiny_network(2), (1, 2, 8, 8), (4, 4), tmp_path / "net.onnx", dynamo=False)
    assert seen == [logging.ERROR]
    assert exporter.level == logging.INFO
