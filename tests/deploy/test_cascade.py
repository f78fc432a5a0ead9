"""Deployed cascades: the previous stage travels in ``previous_stage/`` and ``predict -m`` runs the whole cascade
like torch (random tiny 3D models of ``tests.inference.random_models``, folds 0 and 1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from autounet.cli.main import main
from autounet.deploy import DeployError
from autounet.deploy.report import load_report
from autounet.inference import PredictionSettings, Predictor
from autounet.inference.loaded_model import LoadedModel
from autounet.io.images import read_image
from autounet.io.jsonio import write_json
from autounet.planning.plans import load_plans, save_plans
from autounet.preprocessing.storage import load_case
from tests.inference.random_models import DATASET, write_random_models

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SETTINGS = PredictionSettings(use_mirroring=False, save_probabilities=True, show_progress=False)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_models(tmp_path_factory.mktemp("cascade_models"))


@pytest.fixture(scope="module")
def deployed(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from autounet.deploy.model_folder import deploy_model

    out = tmp_path_factory.mktemp("cascade_deployed") / "deployed"
    manifest = deploy_model(data_root / "results" / DATASET / "3d_cascade_fullres", out, folds=(0, 1), dynamo=False)
    assert manifest.previous_stage == "previous_stage" and manifest.in_channels == 1 + 2
    return out


def test_previous_stage_is_a_complete_deployed_folder_listed_outside(deployed: Path) -> None:
    from autounet.deploy.model_folder import load_deployed_model

    inner = json.loads((deployed / "previous_stage" / "deploy.json").read_text())
    assert inner["configuration"] == "3d_lowres" and inner["in_channels"] == 1 and inner["previous_stage"] == ""
    assert inner["folds"] == ["0", "1"] and inner["precision"] == "fp32"
    outer = json.loads((deployed / "deploy.json").read_text())
    assert {"previous_stage/deploy.json", "previous_stage/fold_0/model.onnx",
            "previous_stage/fold_1/model.onnx"} <= set(outer["files"])
    model = load_deployed_model(deployed, (1,))
    assert model.previous_stage is not None and model.previous_stage.configuration.name == "3d_lowres"
    assert len(model.networks) == len(model.previous_stage.networks) == 1
    assert model.networks[0](torch.zeros(1, 3, 8, 16, 16)).shape == (1, 3, 8, 16, 16)


def test_deployed_cascade_predicts_like_torch(data_root: Path, deployed: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    torch_cascade = Predictor.from_model_folder(data_root / "results" / DATASET / "3d_cascade_fullres", (0, 1),
                                                settings=SETTINGS)
    onnx_cascade = Predictor.from_model_folder(deployed, (), settings=SETTINGS)
    assert onnx_cascade.previous is not None
    calls: list[str] = []
    original = onnx_cascade.previous.predict_logits

    def spy(data: torch.Tensor) -> torch.Tensor:
        calls.append("previous")
        return original(data)

    monkeypatch.setattr(onnx_cascade.previous, "predict_logits", spy)
    image, geometry = read_image([data_root / "raw" / DATASET / "imagesTr" / "case_001_0000.nii.gz"])
    expected_seg, expected = torch_cascade.predict_array(image, geometry)
    seg, probabilities = onnx_cascade.predict_array(image, geometry)
    assert probabilities is not None and expected is not None
    np.testing.assert_allclose(probabilities, expected, atol=1e-3)
    assert np.mean(seg == expected_seg) > 0.999
    assert calls == ["previous"]  # the deployed lowres stage ran first


def test_cli_predicts_a_deployed_cascade(data_root: Path, deployed: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(data_root / "raw" / DATASET / "imagesTr" / "case_002_0000.nii.gz", inputs)
    assert main(["predict", "-i", str(inputs), "-o", str(tmp_path / "onnx"), "-m", str(deployed), "-q",
                 "--disable-tta"]) == 0
    assert main(["predict", "-i", str(inputs), "-o", str(tmp_path / "torch"), "-m",
                 str(data_root / "results" / DATASET / "3d_cascade_fullres"), "-f", "0", "1", "-q",
                 "--disable-tta"]) == 0
    seg, _ = read_image([tmp_path / "onnx" / "case_002.nii.gz"])
    reference, _ = read_image([tmp_path / "torch" / "case_002.nii.gz"])
    assert np.mean(seg == reference) > 0.999


def test_altered_previous_stage_graph_is_one_line(data_root: Path, deployed: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(deployed, broken)
    graph = broken / "previous_stage" / "fold_1" / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])
    inputs = data_root / "raw" / DATASET / "imagesTr"
    assert main(["predict", "-i", str(inputs), "-o", str(tmp_path / "out"), "-m", str(broken)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "previous_stage/fold_1/model.onnx" in err and "SHA-256" in err
    assert not list((tmp_path / "out").glob("case_*.nii.gz"))


def test_missing_previous_stage_is_one_line(deployed: Path, tmp_path: Path) -> None:
    from autounet.deploy.model_folder import load_deployed_model

    broken = tmp_path / "broken"
    shutil.copytree(deployed, broken)
    manifest = json.loads((broken / "deploy.json").read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith("previous_stage/")}
    (broken / "deploy.json").write_text(json.dumps(manifest))
    shutil.rmtree(broken / "previous_stage")
    with pytest.raises(DeployError, match="previous stage '3d_lowres' is missing") as error:
        load_deployed_model(broken)
    assert "\n" not in str(error.value)


def test_int8_cascade_needs_calibration_of_every_stage(data_root: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from autounet.deploy.model_folder import deploy_model

    folder = data_root / "results" / DATASET / "3d_cascade_fullres"
    rng = np.random.default_rng(0)
    full = rng.normal(size=(2, 3, 8, 16, 16)).astype(np.float32)
    low = rng.normal(size=(2, 1, 8, 16, 16)).astype(np.float32)
    with pytest.raises(DeployError, match=r"every stage.*3d_cascade_fullres, 3d_lowres\); missing: 3d_lowres"):
        deploy_model(folder, tmp_path / "a", precision="int8", calibration={"3d_cascade_fullres": full},
                     dynamo=False)
    with pytest.raises(DeployError, match="missing: 3d_cascade_fullres, 3d_lowres"):
        deploy_model(folder, tmp_path / "b", precision="int8", calibration=full, dynamo=False)
    assert not list(tmp_path.iterdir())

    seen: list[tuple[str, tuple[int, ...]]] = []

    def fake_quantize(onnx_path: Path, calibration: np.ndarray, out_path: Path, **_: object) -> Path:
        seen.append((onnx_path.parent.parent.name, calibration.shape))
        shutil.copyfile(onnx_path, out_path)
        return out_path

    monkeypatch.setattr("autounet.deploy.quantize.quantize_int8", fake_quantize)
    pytest.importorskip("nncf")
    manifest = deploy_model(folder, tmp_path / "int8", precision="int8", dynamo=False,
                            calibration={"3d_cascade_fullres": full, "3d_lowres": low})
    assert manifest.precision == "int8"
    assert json.loads((tmp_path / "int8" / "previous_stage" / "deploy.json").read_text())["precision"] == "int8"
    assert seen == [("previous_stage", low.shape), (".int8.partial", full.shape)]  # the lowres stage first


@pytest.fixture(scope="module")
def check_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random cascade models, both stages preprocessed, a 2-fold split and lowres "cross-validation predictions"
    (label maps in the full-resolution grid) for int8 calibration of the cascade stage."""
    root = write_random_models(tmp_path_factory.mktemp("cascade_check"))
    preprocessed = root / "preprocessed" / DATASET
    plans = load_plans(root / "results" / DATASET / "3d_cascade_fullres" / "plans.json")
    save_plans(preprocessed / "plans.json", plans)
    write_json(preprocessed / "splits.json", [{"train": ["case_001", "case_002"], "val": ["case_000"]},
                                              {"train": ["case_000"], "val": ["case_001", "case_002"]}])
    for configuration in ("3d_fullres", "3d_lowres"):
        assert main(["preprocess", "-d", "999", "-c", configuration, "-np", "1", "--data-root", str(root), "-q"]) == 0
    predictions = root / "results" / DATASET / "3d_lowres" / "predicted_next_stage" / "3d_cascade_fullres"
    predictions.mkdir(parents=True)
    data_folder = preprocessed / plans.configuration("3d_cascade_fullres").data_identifier
    for case in ("case_000", "case_001", "case_002"):
        data, seg, _ = load_case(data_folder, case)
        assert seg is not None
        labels = np.where(seg.reshape(data.shape[1:]) > 0, 2, 0).astype(np.uint8)  # every foreground voxel as 2
        np.save(predictions / f"{case}.npy", labels)
    return root


def test_accuracy_check_compares_the_whole_cascade(check_root: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    from autounet.deploy import accuracy

    compared: list[tuple[str, str, int]] = []
    real = accuracy.fold_dice

    def spy(model: LoadedModel, network: object, *args: object, **kwargs: object) -> dict[str, float]:
        previous = model.previous_stage
        compared.append((model.configuration.name, type(previous.networks[0]).__name__ if previous else "",
                         len(previous.networks) if previous else 0))
        return real(model, network, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("autounet.deploy.accuracy.fold_dice", spy)
    out = tmp_path / "checked"
    assert main(["deploy", "-d", "999", "-c", "3d_cascade_fullres", "-f", "0", "-o", str(out), "--torchscript",
                 "--check-disable-tta", "--data-root", str(check_root), "-q"]) == 0
    # The lowres stage is checked on its own first, then the torch cascade against the deployed one (fold 0 only).
    assert compared == [("3d_lowres", "", 0), ("3d_lowres", "", 0), ("3d_cascade_fullres", "UNet", 1),
                        ("3d_cascade_fullres", "OrtPatchModel", 1)]
    for folder in (out, out / "previous_stage"):
        report = load_report(folder / "deploy_report.json")
        assert report.accepted and report.folds[0].cases == ("case_000",)
        assert all(abs(c.drop) < 1e-3 for c in report.folds[0].attempts[0].classes)
    assert capsys.readouterr().out.count("mean drop / worst") == 2  # both stages' tables


def test_int8_calibration_of_the_cascade_carries_the_previous_stage(check_root: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openvino")
    seen: dict[str, np.ndarray] = {}

    def fake_quantize(onnx_path: Path, calibration: np.ndarray, out_path: Path, **_: object) -> Path:
        seen.setdefault("lowres" if "previous_stage" in onnx_path.parts else "cascade", calibration)
        shutil.copyfile(onnx_path, out_path)
        return out_path

    monkeypatch.setattr("autounet.deploy.quantize.quantize_int8", fake_quantize)
    out = tmp_path / "int8"
    assert main(["deploy", "-d", "999", "-c", "3d_cascade_fullres", "-f", "0", "-o", str(out), "--torchscript",
                 "--precision", "int8", "--check-disable-tta", "--calibration-patches", "4",
                 "--data-root", str(check_root), "-q"]) == 0
    assert seen["lowres"].shape[:2] == (4, 1) and seen["cascade"].shape[:2] == (4, 3)
    one_hot = seen["cascade"][:, 1:]
    assert set(np.unique(one_hot).tolist()) <= {0.0, 1.0} and not one_hot[:, 0].any()  # only label 2 predicted
    assert one_hot[:, 1].any()
    from autounet.deploy.model_folder import load_deployed_model

    assert load_deployed_model(out, backend="onnxruntime").previous_stage is not None
    for folder in (out, out / "previous_stage"):  # a faithful "int8" graph passes each stage's check at once
        assert [f.accepted for f in load_report(folder / "deploy_report.json").folds] == ["int8"]
