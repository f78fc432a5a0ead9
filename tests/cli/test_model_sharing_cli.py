"""``autounet export-model`` and ``autounet install-model`` through ``main``."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from autounet.cli.main import main
from tests.sharing._model import CONFIGURATION, DATASET, build_results, serve_folder


@pytest.fixture(scope="module")
def source_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("source")
    build_results(root)
    return root


def test_export_then_install_prints_the_predict_command(source_root: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "model.zip"
    assert main(["export-model", "-d", "999", "-c", CONFIGURATION, "-f", "0", "-o", str(archive),
                 "--data-root", str(source_root), "-q"]) == 0
    out = capsys.readouterr().out
    assert f"{DATASET} {CONFIGURATION}: folds 0" in out and "install with: autounet install-model" in out
    target = tmp_path / "target"
    assert main(["install-model", str(archive), "--data-root", str(target), "-q"]) == 0
    out = capsys.readouterr().out
    folder = target / "results" / DATASET / CONFIGURATION
    assert f"installed: {folder}" in out
    assert f"predict with: autounet predict -i IN -o OUT -d {DATASET} -c {CONFIGURATION} --data-root {target}" in out
    assert (folder / "fold_0" / "checkpoint_final.pt").is_file() and not (folder / "fold_1").exists()
    assert main(["install-model", str(archive), "--data-root", str(target), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("autounet install-model: error: ") and "pass --force" in err and "\n" not in err
    assert main(["install-model", str(archive), "--force", "--data-root", str(target), "-q"]) == 0


def test_export_of_an_unknown_dataset_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-model", "-d", "123", "-c", "2d", "-o", str(tmp_path / "m.zip"),
                 "--data-root", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "no trained model for dataset '123'" in err and "\n" not in err


def test_install_of_a_zip_with_dotdot_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("../evil", b"x")
    assert main(["install-model", str(archive), "--data-root", str(tmp_path / "root")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"autounet install-model: error: {archive}: member '../evil' escapes the archive ('..' component)"
    assert not (tmp_path / "evil").exists()


def test_install_from_url_and_a_404(source_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    served = tmp_path / "served"
    assert main(["export-model", "-d", DATASET, "-c", CONFIGURATION, "-o", str(served / "model.zip"),
                 "--data-root", str(source_root), "-q"]) == 0
    with serve_folder(served) as base:
        assert main(["install-model", f"{base}/model.zip", "--data-root", str(tmp_path / "a"), "-q"]) == 0
        assert (tmp_path / "a" / "results" / DATASET / CONFIGURATION / "fold_1").is_dir()
        capsys.readouterr()
        assert main(["install-model", f"{base}/nothing.zip", "--data-root", str(tmp_path / "b"), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"autounet install-model: error: {base}/nothing.zip: download failed: HTTP 404 File not found"
    assert not any((tmp_path / "b" / "results").iterdir())
    shutil.rmtree(served)
