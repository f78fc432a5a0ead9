"""A deployed model folder predicts like its torch model, through the unchanged predictor and CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from autounet.cli.main import main
from autounet.io.images import read_image

pytest.importorskip("onnxruntime")

LEGACY = Path(__file__).parents[1] / "inference" / "legacy" / "plain3d"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deploy")
    shutil.copytree(LEGACY / "model" / "3d_fullres", root / "model")
    out = root / "deployed"
    assert main(["deploy", "-m", str(root / "model"), "-f", "0", "1", "-o", str(out), "--torchscript", "-q"]) == 0
    return out


def test_deployed_model_predicts_like_torch(deployed: Path, tmp_path: Path) -> None:
    assert sorted(p.name for p in deployed.iterdir()) == ["dataset.json", "deploy.json", "fold_0", "fold_1",
                                                          "plans.json"]
    out = tmp_path / "out"
    assert main(["predict", "-i", str(LEGACY / "input"), "-o", str(out), "-m", str(deployed),
                 "--save-probabilities", "-q"]) == 0
    expected = np.load(LEGACY / "expected" / "case_000.npz")["probabilities"]
    actual = np.load(out / "case_000.npz")["probabilities"]
    np.testing.assert_allclose(actual, expected, atol=1e-3)
    seg, geometry = read_image([out / "case_000.nii.gz"])
    reference, reference_geometry = read_image([LEGACY / "expected" / "case_000.nii.gz"])
    assert geometry == reference_geometry and np.mean(seg == reference) > 0.999


def test_altered_graph_is_one_line(deployed: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(deployed, broken)
    graph = broken / "fold_1" / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])
    assert main(["predict", "-i", str(LEGACY / "input"), "-o", str(tmp_path / "out"), "-m", str(broken)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fold_1/model.onnx" in err and "SHA-256" in err
    assert not (tmp_path / "out" / "case_000.nii.gz").exists()


def test_existing_output_is_refused(deployed: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["deploy", "-m", str(LEGACY / "model" / "3d_fullres"), "-o", str(deployed), "--torchscript"]) == 1
    assert "output folder exists" in capsys.readouterr().err


def test_int8_deployment_runs_through_openvino(tmp_path: Path) -> None:
    pytest.importorskip("nncf")
    pytest.importorskip("openvino")
    from autounet.deploy.model_folder import deploy_model, load_deployed_model

    rng = np.random.default_rng(0)
    calibration = rng.normal(size=(4, 2, 8, 20, 20)).astype(np.float32)
    manifest = deploy_model(LEGACY / "model" / "3d_fullres", tmp_path / "int8", folds=(0,), precision="int8",
                            calibration=calibration, dynamo=False)
    assert manifest.precision == "int8" and manifest.folds == ("0",)
    model = load_deployed_model(tmp_path / "int8")
    import torch

    logits = model.networks[0](torch.from_numpy(calibration[:1]))
    assert logits.shape == (1, 3, 8, 20, 20) and torch.isfinite(logits).all()
