"""A deployed model folder travels through export-model and install-model; its SHA-256 are checked on the
way out, on the way in, and when predict loads it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from autounet.cli.main import main
from autounet.io import read_segmentation
from tests.sharing._model import read_manifest, read_members, write_zip

pytest.importorskip("onnxruntime")

LEGACY = Path(__file__).parents[1] / "inference" / "legacy" / "plain3d"
DATASET = "Dataset999_Tiny"  # the legacy model's plans name it


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deployed")
    shutil.copytree(LEGACY / "model" / "3d_fullres", root / "model")
    out = root / "tiny_onnx"
    assert main(["deploy", "-m", str(root / "model"), "-f", "0", "-o", str(out), "--torchscript", "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def archive(deployed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("zip") / "deployed.zip"
    assert main(["export-model", "-m", str(deployed), "-o", str(output), "-q"]) == 0
    return output


def _predict(model: Path, output: Path) -> np.ndarray:
    assert main(["predict", "-i", str(LEGACY / "input"), "-o", str(output), "-m", str(model), "--disable-tta",
                 "-q"]) == 0
    return read_segmentation(output / "case_000.nii.gz")[0]


def test_deployed_model_round_trip_predicts_the_same(deployed: Path, archive: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    manifest = read_manifest(archive)
    assert manifest["kind"] == "deployed" and manifest["configurations"] == ["tiny_onnx"]
    assert sorted(read_members(archive)) == sorted(f"{DATASET}/tiny_onnx/{name}" for name in (
        "deploy.json", "plans.json", "dataset.json", "fold_0/model.onnx"))
    capsys.readouterr()
    assert main(["install-model", str(archive), "--data-root", str(tmp_path / "machine"), "-q"]) == 0
    installed = tmp_path / "machine" / "results" / DATASET / "tiny_onnx"
    assert f"predict with: autounet predict -i IN -o OUT -m {installed}" in capsys.readouterr().out
    np.testing.assert_array_equal(_predict(installed, tmp_path / "installed"), _predict(deployed, tmp_path / "here"))


def test_an_altered_deployed_folder_is_not_exported(deployed: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(deployed, broken)
    graph = broken / "fold_0" / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-10])
    assert main(["export-model", "-m", str(broken), "-o", str(tmp_path / "x.zip")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "fold_0/model.onnx" in err and "SHA-256" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]
    assert main(["export-model", "-m", str(deployed), "-f", "0", "-o", str(tmp_path / "x.zip")]) == 1
    assert "exported whole" in capsys.readouterr().err


def test_an_archive_whose_graph_differs_from_deploy_json_is_refused(archive: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    members = read_members(archive)
    name = f"{DATASET}/tiny_onnx/fold_0/model.onnx"
    members[name] = members[name][:-10]  # the archive's own hashes are rewritten to match; deploy.json's not
    manifest = read_manifest(archive)
    bad = write_zip(tmp_path / "bad.zip", members, {k: v for k, v in manifest.items() if k != "files"})
    assert hashlib.sha256(members[name]).hexdigest() == read_manifest(bad)["files"][name]
    results = tmp_path / "machine" / "results"
    assert main(["install-model", str(bad), "--data-root", str(tmp_path / "machine")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"member '{name}'" in err and "deploy.json" in err
    assert list(results.iterdir()) == []
