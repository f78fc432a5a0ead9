"""``autounet deploy`` with the accuracy check: the gate, the fall-back steps in order, refusal, the report, and
``predict --backend/--threads`` on the result (random tiny 3D models, a 2-fold split of 4 cases)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from autounet.cli.main import main
from autounet.deploy.report import load_report
from autounet.deploy.steps import FALLBACK_STEPS
from autounet.io.jsonio import write_json
from autounet.planning.api import plan_dataset
from tests.conftest import write_tiny_dataset
from tests.inference.random_models import DATASET, write_model_folder

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SPLIT = [{"train": ["case_002", "case_003"], "val": ["case_000", "case_001"]},
         {"train": ["case_000", "case_001"], "val": ["case_002", "case_003"]}]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deploy_check")
    raw = write_tiny_dataset(root / "raw", num_cases=4, num_channels=1, shape=(8, 20, 20))
    plans, _ = plan_dataset(raw, root / "preprocessed", num_processes=1)
    write_model_folder(root / "results", plans, raw, "3d_fullres", 1, folds=(0, 1))
    write_json(root / "preprocessed" / DATASET / "splits.json", SPLIT)
    assert main(["preprocess", "-d", "999", "-c", "3d_fullres", "-np", "1", "--data-root", str(root), "-q"]) == 0
    return root


def _deploy(data_root: Path, out: Path, *extra: str) -> int:
    return main(["deploy", "-d", "999", "-c", "3d_fullres", "-o", str(out), "--torchscript", "--check-disable-tta",
                 "--calibration-patches", "4", "--data-root", str(data_root), "-q", *extra])


class _FakeQuantizer:
    """Stands in for ``quantize_int8``: copies the float graph (a faithful "INT8" model) and records the nodes
    each call keeps in float."""

    def __init__(self) -> None:
        self.kept: list[tuple[str, ...]] = []

    def __call__(self, onnx_path: Path, calibration: np.ndarray, out_path: Path, keep_float: tuple[str, ...] = (),
                 method: str = "nncf") -> Path:
        self.kept.append(tuple(keep_float))
        shutil.copyfile(onnx_path, out_path)
        return out_path


def test_fp32_is_checked_reported_and_predicts_with_the_measured_backend(data_root: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "fp32"
    assert _deploy(data_root, out) == 0
    table = capsys.readouterr().out
    assert "mean drop / worst" in table and "organ" in table and "corner" in table
    report = load_report(out / "deploy_report.json")
    assert report.checked and report.accepted and report.precision == "fp32"
    assert [f.fold for f in report.folds] == ["0", "1"]
    assert report.folds[0].cases == ("case_000", "case_001") and report.folds[1].cases == ("case_002", "case_003")
    for fold in report.folds:
        (attempt,) = fold.attempts
        assert fold.accepted == attempt.step == "fp32" and attempt.passed
        assert [c.name for c in attempt.classes] == ["organ", "corner"]
        assert all(abs(c.drop) < 1e-3 for c in attempt.classes)  # ONNX Runtime fp32 = torch up to ~1e-5
        assert fold.float_seconds_per_window > 0 and fold.deployed_seconds_per_window > 0
    manifest = json.loads((out / "deploy.json").read_text())
    assert manifest["report"] == "deploy_report.json" and "deploy_report.json" in manifest["files"]
    assert manifest["backend"] == report.backend and manifest["batch_size"] == report.batch_size >= 1
    assert report.split.endswith("splits.json")

    inputs = data_root / "raw" / DATASET / "imagesTr"
    assert main(["predict", "-i", str(inputs), "-o", str(tmp_path / "pred"), "-m", str(out), "--threads", "1",
                 "--disable-tta"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("backend:") == 1 and f"backend: {report.backend} (fp32), 1 thread(s)" in printed
    assert len(list((tmp_path / "pred").glob("case_*.nii.gz"))) == 4


def test_faithful_int8_is_accepted_at_the_first_step(data_root: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openvino")
    fake = _FakeQuantizer()
    monkeypatch.setattr("autounet.deploy.quantize.quantize_int8", fake)
    out = tmp_path / "int8"
    assert _deploy(data_root, out, "--precision", "int8", "-f", "0") == 0
    report = load_report(out / "deploy_report.json")
    assert report.accepted and [f.accepted for f in report.folds] == ["int8"] and fake.kept == [()]


def test_failing_gate_walks_every_step_in_order_then_refuses(data_root: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("openvino")
    fake = _FakeQuantizer()
    monkeypatch.setattr("autounet.deploy.quantize.quantize_int8", fake)

    def dice(model: object, network: object, cases: object, labels: object, settings: object,
             description: str = "") -> dict[str, float]:
        # The float network is perfect; every deployed graph loses 2 Dice points on "corner".
        return {"organ": 0.9, "corner": 0.9 if isinstance(network, nn.Module) else 0.88}

    monkeypatch.setattr("autounet.deploy.accuracy.fold_dice", dice)
    out = tmp_path / "refused"
    assert _deploy(data_root, out, "--precision", "int8", "-f", "1") == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "no quantization step keeps the Dice" in captured.err
    assert not out.exists() and not list(tmp_path.glob(".refused*"))
    assert "mean drop / worst" in captured.out  # the table is printed before the refusal
    kept = tmp_path / "refused.deploy_report.json"
    report = load_report(kept)
    assert not report.accepted and report.folds[0].accepted == ""
    attempts = report.folds[0].attempts
    assert [a.step for a in attempts] == [s.name for s in FALLBACK_STEPS] and not any(a.passed for a in attempts)
    assert [a.float_nodes for a in attempts] == fake.kept
    for smaller, larger in zip(fake.kept, fake.kept[1:], strict=False):
        assert set(smaller) < set(larger)  # every step keeps strictly more in float


def test_tolerances_decide(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openvino")
    monkeypatch.setattr("autounet.deploy.quantize.quantize_int8", _FakeQuantizer())
    calls: list[str] = []

    def dice(model: object, network: object, cases: object, labels: object, settings: object,
             description: str = "") -> dict[str, float]:
        if isinstance(network, nn.Module):
            return {"organ": 0.9, "corner": 0.9}
        calls.append("deployed")
        return {"organ": 0.9, "corner": 0.89 if len(calls) == 1 else 0.9}  # 1 point lost at the first step only

    monkeypatch.setattr("autounet.deploy.accuracy.fold_dice", dice)
    out = tmp_path / "second"
    assert _deploy(data_root, out, "--precision", "int8", "-f", "0") == 0  # mean drop 0.5 holds, class 1.0 holds
    assert load_report(out / "deploy_report.json").folds[0].accepted == "int8"
    calls.clear()
    out = tmp_path / "strict"
    assert _deploy(data_root, out, "--precision", "int8", "-f", "0", "--max-class-drop", "0.9") == 0
    report = load_report(out / "deploy_report.json")
    assert [a.step for a in report.folds[0].attempts] == ["int8", "first-last-float"]
    assert report.folds[0].accepted == "first-last-float"


def test_real_int8_quantization_is_checked(data_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("nncf")
    pytest.importorskip("openvino")
    import onnx

    out = tmp_path / "real"
    # Random weights: the Dice drop of a random network says nothing, so the limits are wide; the test checks
    # that the quantized graph is the one checked, reported and deployed.
    assert _deploy(data_root, out, "--precision", "int8", "-f", "0", "--max-mean-drop", "100",
                   "--max-class-drop", "100") == 0
    report = load_report(out / "deploy_report.json")
    (attempt,) = report.folds[0].attempts
    assert attempt.step == "int8" and len(attempt.classes) == 2 and report.backend in ("onnxruntime", "openvino")
    ops = {node.op_type for node in onnx.load(str(out / "fold_0" / "model.onnx")).graph.node}
    assert "QuantizeLinear" in ops


def test_int8_without_labelled_data_needs_the_explicit_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    legacy = Path(__file__).parents[1] / "inference" / "legacy" / "plain3d" / "model" / "3d_fullres"
    args = ["deploy", "-m", str(legacy), "-o", str(tmp_path / "out"), "--precision", "int8", "--data-root",
            str(tmp_path / "empty")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--no-accuracy-check" in err and not (tmp_path / "out").exists()


def test_predict_backend_and_threads_are_validated(data_root: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    inputs = data_root / "raw" / DATASET / "imagesTr"
    base = ["predict", "-i", str(inputs), "-o", str(tmp_path / "out"), "--data-root", str(data_root)]
    for bad in (["--threads", "0"], ["--threads", "x"], ["--backend", "tensorrt"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*base, "-d", "999", "-c", "3d_fullres", *bad])
        assert exit_info.value.code == 2
    capsys.readouterr()
    assert main([*base, "-d", "999", "-c", "3d_fullres", "--backend", "openvino"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--backend openvino runs deployed model folders" in err
    deployed = tmp_path / "deployed"
    assert _deploy(data_root, deployed, "-f", "0", "--no-accuracy-check") == 0
    assert not (deployed / "deploy_report.json").exists()  # fp32 unchecked: a plain export
    capsys.readouterr()
    assert main([*base, "-m", str(deployed), "--backend", "torch"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds ONNX graphs" in err
