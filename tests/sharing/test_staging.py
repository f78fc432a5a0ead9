"""Nothing of the user's is overwritten, and an interrupted export or install leaves nothing to trip over."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autounet.cli.main import main
from autounet.errors import CheckpointError
from autounet.sharing import export as export_module
from autounet.sharing import export_model, install_model
from autounet.sharing import install as install_module
from autounet.sharing._staging import STAGING_PREFIX, _host, is_staging_name, remove_stale_staging, staging_folder
from tests.sharing._model import CONFIGURATION, DATASET, build_results, read_manifest


@pytest.fixture(scope="module")
def dataset_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_results(tmp_path_factory.mktemp("staging"))


@pytest.fixture(scope="module")
def exported(dataset_results: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("zip") / "model.zip"
    export_model(dataset_results, [CONFIGURATION], output, folds=[0])
    return output


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _stale_folder(parent: Path) -> Path:
    """A staging folder as a ``kill -9`` leaves it: owned by a dead process, holding a partial file."""
    folder = parent / f"{STAGING_PREFIX}{_host()}-{_dead_pid()}-0badc0de"
    (folder / "model" / DATASET / CONFIGURATION).mkdir(parents=True)
    (folder / "archive.zip").write_bytes(b"PK\x03\x04 half written")
    return folder


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert all(needle in err for needle in needles), err
    return err


def test_export_onto_an_existing_file_or_folder_or_below_a_file_is_one_line(
        dataset_results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(dataset_results.parent.parent)
    mine = tmp_path / "mine.zip"
    mine.write_bytes(b"the user's own file")
    folder = tmp_path / "folder"
    (folder / "x").mkdir(parents=True)
    for output, needle in ((mine, "exists already; choose another name, or pass --force"),
                           (folder, "is a folder"), (mine / "model.zip", "is a file, not a folder")):
        assert main(["export-model", "-d", DATASET, "-c", CONFIGURATION, "-o", str(output), "--data-root", root,
                     "-q"]) == 1
        _one_line_error(capsys, str(output), needle)
    assert mine.read_bytes() == b"the user's own file" and sorted(p.name for p in folder.iterdir()) == ["x"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "mine.zip"]  # no staging folder left
    assert main(["export-model", "-d", DATASET, "-c", CONFIGURATION, "-f", "0", "-o", str(mine), "--force",
                 "--data-root", root, "-q"]) == 0
    assert read_manifest(mine)["dataset_name"] == DATASET


def test_export_publishes_nothing_when_interrupted(dataset_results: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    slim = export_module._slim_checkpoint

    def interrupted(path: Path, scratch: Path) -> Path:
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of the second checkpoint
        return slim(path, scratch)

    monkeypatch.setattr(export_module, "_slim_checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_model(dataset_results, [CONFIGURATION], tmp_path / "model.zip")
    assert len(calls) == 2 and list(tmp_path.iterdir()) == []


def test_export_after_a_kill_removes_the_stale_staging_folder(dataset_results: Path, tmp_path: Path) -> None:
    stale = _stale_folder(tmp_path)
    alive = tmp_path / f"{STAGING_PREFIX}{_host()}-{os.getpid()}-12345678"  # a running export of this process
    alive.mkdir()
    manifest = export_model(dataset_results, [CONFIGURATION], tmp_path / "model.zip", folds=[0])
    assert not stale.exists() and alive.is_dir()
    assert read_manifest(tmp_path / "model.zip")["files"] == manifest.files
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.zip", alive.name])


def test_install_after_a_kill_removes_the_stale_staging_folder(exported: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    stale = _stale_folder(results)
    installed = install_model(exported, results, show_progress=False)
    assert not stale.exists()
    assert sorted(p.name for p in results.iterdir()) == [DATASET]
    assert (installed.folders[0] / "fold_0" / "checkpoint_final.pt").is_file()


def test_install_leaves_nothing_when_interrupted(exported: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    extract = install_module.extract_verified

    def interrupted(*args: object) -> None:
        extract(*args)  # type: ignore[arg-type]
        raise KeyboardInterrupt  # between extracting and moving into place

    monkeypatch.setattr(install_module, "extract_verified", interrupted)
    with pytest.raises(KeyboardInterrupt):
        install_model(exported, results, show_progress=False)
    assert list(results.iterdir()) == []


def test_install_rolls_back_when_a_move_fails(exported: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    replace = os.replace

    def failing(source: Path, target: Path) -> None:
        if Path(target).name == "find_best":  # the second folder moved into place
            raise OSError(28, "No space left on device")
        replace(source, target)

    monkeypatch.setattr(install_module.os, "replace", failing)
    with pytest.raises(OSError):
        install_model(exported, results, show_progress=False)
    assert list(results.iterdir()) == []  # the first folder moved back out, staging removed


def test_stale_rules(tmp_path: Path) -> None:
    dead = _stale_folder(tmp_path)
    other_host = tmp_path / f"{STAGING_PREFIX}elsewhere-{os.getpid()}-abcdef01"
    old_other_host = tmp_path / f"{STAGING_PREFIX}elsewhere-1-abcdef02"
    old_install, new_install = tmp_path / ".autounet-install-ab_cd123", tmp_path / ".autounet-install-ab_cd124"
    for folder in (other_host, old_other_host, old_install, new_install):
        folder.mkdir()
    two_days_ago = time.time() - 2 * 86400
    for folder in (old_other_host, old_install):
        os.utime(folder, (two_days_ago, two_days_ago))
    not_ours = tmp_path / ".autounet-staging-notes"  # the user's, not a staging name: never touched
    not_ours.mkdir()
    assert sorted(remove_stale_staging(tmp_path)) == sorted([dead, old_other_host, old_install])
    assert other_host.is_dir() and not_ours.is_dir() and new_install.is_dir()
    assert is_staging_name(other_host.name) and not is_staging_name(not_ours.name)
    with staging_folder(tmp_path / "new") as folder:
        assert is_staging_name(folder.name) and folder.is_dir()
    assert list((tmp_path / "new").iterdir()) == []


def test_export_api_refuses_an_existing_output(dataset_results: Path, tmp_path: Path) -> None:
    output = tmp_path / "model.zip"
    output.write_bytes(b"mine")
    with pytest.raises(CheckpointError, match="exists already"):
        export_model(dataset_results, [CONFIGURATION], output)
    assert output.read_bytes() == b"mine"


def test_export_of_one_model_folder_with_m(dataset_results: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "model.zip"
    assert main(["export-model", "-m", str(dataset_results / CONFIGURATION), "-f", "0", "-o", str(output),
                 "-q"]) == 0
    manifest = read_manifest(output)
    assert manifest["dataset_name"] == DATASET and manifest["configurations"] == [CONFIGURATION]
    assert manifest["kind"] == "trained" and f"{DATASET}/find_best/choice.json" in manifest["files"]
    assert main(["export-model", "-m", str(dataset_results / CONFIGURATION), "-d", DATASET, "-o",
                 str(tmp_path / "other.zip")]) == 1
    _one_line_error(capsys, "give either -m/--model-folder or -d/--dataset")
    assert main(["export-model", "-o", str(tmp_path / "other.zip")]) == 1
    _one_line_error(capsys, "give -d/--dataset and -c/--configurations, or -m/--model-folder")
