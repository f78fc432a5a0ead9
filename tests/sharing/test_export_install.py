"""export_model -> install_model round trips, and every way a malicious or broken archive is refused."""

from __future__ import annotations

import shutil
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from autounet.errors import CheckpointError
from autounet.inference import PredictionSettings, Predictor
from autounet.io.checkpoints import CHECKPOINT_FORMAT, load_checkpoint
from autounet.sharing import MANIFEST_NAME, export_model, install_model
from tests.sharing._model import (
    CONFIGURATION,
    DATASET,
    build_results,
    read_manifest,
    read_members,
    serve_folder,
    write_zip,
)


@pytest.fixture(scope="module")
def dataset_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_results(tmp_path_factory.mktemp("sharing"))


@pytest.fixture(scope="module")
def exported(dataset_results: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("zip") / "model.zip"
    export_model(dataset_results, [CONFIGURATION], output)
    return output


def _nothing_installed(results: Path) -> bool:
    """No model folder and no staging folder left behind."""
    return not results.exists() or not any(results.iterdir())


def test_export_writes_slim_checkpoints_and_a_manifest(exported: Path, dataset_results: Path) -> None:
    manifest = read_manifest(exported)
    assert manifest["format"] == "autounet-model" and manifest["dataset_name"] == DATASET
    assert manifest["configurations"] == [CONFIGURATION] and manifest["folds"] == {CONFIGURATION: ["0", "1"]}
    assert sorted(manifest["files"]) == sorted([
        f"{DATASET}/{CONFIGURATION}/plans.json", f"{DATASET}/{CONFIGURATION}/dataset.json",
        f"{DATASET}/{CONFIGURATION}/postprocessing.json", f"{DATASET}/find_best/choice.json",
        f"{DATASET}/find_best/postprocessing.json",
        *(f"{DATASET}/{CONFIGURATION}/fold_{fold}/checkpoint_final.pt" for fold in (0, 1)),
    ])
    with zipfile.ZipFile(exported) as archive:
        assert archive.namelist()[-1] == MANIFEST_NAME
        assert all(not info.filename.startswith("/") for info in archive.infolist())


def test_round_trip_installs_a_model_the_predictor_loads(exported: Path, dataset_results: Path,
                                                         tmp_path: Path) -> None:
    results = tmp_path / "results"
    installed = install_model(exported, results, show_progress=False)
    folder = results / DATASET / CONFIGURATION
    assert installed.folders == (folder, results / DATASET / "find_best")
    assert sorted(p.name for p in results.iterdir()) == [DATASET]  # the staging folder is gone
    state = load_checkpoint(folder / "fold_1" / "checkpoint_final.pt")
    assert set(state) == {"format", "network", "metadata"} and state["format"] == CHECKPOINT_FORMAT
    original = load_checkpoint(dataset_results / CONFIGURATION / "fold_1" / "checkpoint_final.pt")
    assert all(torch.equal(state["network"][k], v) for k, v in original["network"].items())
    assert (folder / "postprocessing.json").is_file() and (results / DATASET / "find_best" / "choice.json").is_file()
    predictor = Predictor.from_model_folder(folder, folds=(0, 1),
                                            settings=PredictionSettings(use_mirroring=False, show_progress=False))
    assert len(predictor.model.networks) == 2 and predictor.model.num_outputs == 3


def test_cascade_export_brings_its_previous_stage(dataset_results: Path, tmp_path: Path) -> None:
    manifest = export_model(dataset_results, ["3d_cascade_fullres"], tmp_path / "cascade.zip", folds=[0])
    assert manifest.configurations == ("3d_cascade_fullres", "3d_lowres")
    assert f"{DATASET}/3d_lowres/fold_0/checkpoint_final.pt" in manifest.files


def test_runs_of_another_recipe_export_with_their_own_previous_stage(dataset_results: Path, tmp_path: Path) -> None:
    results = tmp_path / DATASET
    for name in ("3d_cascade_fullres", "3d_lowres"):
        shutil.copytree(dataset_results / name, results / f"{name}__fast__plans")
    manifest = export_model(results, ["3d_cascade_fullres__fast__plans"], tmp_path / "fast.zip", folds=[0])
    assert manifest.configurations == ("3d_cascade_fullres__fast__plans", "3d_lowres__fast__plans")


def test_export_of_a_missing_fold_names_the_checkpoint(dataset_results: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="fold_3/checkpoint_final.pt: checkpoint not found"):
        export_model(dataset_results, [CONFIGURATION], tmp_path / "m.zip", folds=[3])
    assert not (tmp_path / "m.zip").exists()


def test_existing_model_needs_force_and_a_failed_forced_install_keeps_it(exported: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    install_model(exported, results, show_progress=False)
    marker = results / DATASET / CONFIGURATION / "mine.txt"
    marker.write_text("keep")
    with pytest.raises(CheckpointError, match="exists already; pass --force"):
        install_model(exported, results, show_progress=False)
    members = read_members(exported)
    members[f"{DATASET}/{CONFIGURATION}/plans.json"] = b"{}"
    altered = write_zip(tmp_path / "altered.zip", members, _manifest_fields(exported), listed=read_members(exported))
    with pytest.raises(CheckpointError, match="does not match its SHA-256"):
        install_model(altered, results, force=True, show_progress=False)
    assert marker.read_text() == "keep"
    install_model(exported, results, force=True, show_progress=False)
    assert not marker.exists() and sorted(p.name for p in results.iterdir()) == [DATASET]


def _manifest_fields(archive: Path) -> dict:
    return {k: v for k, v in read_manifest(archive).items() if k != "files"}


class _Custom:
    """Not an allowed type for ``torch.load(weights_only=True)``."""


def _pickle_checkpoint(exported: Path, tmp_path: Path) -> dict[str, bytes]:
    members = read_members(exported)
    evil = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "network": {}, "metadata": _Custom()}, evil)
    members[f"{DATASET}/{CONFIGURATION}/fold_0/checkpoint_final.pt"] = evil.read_bytes()
    return members


@pytest.mark.parametrize(("case", "message"), [
    ("absolute", "member '/etc/evil' is an absolute path"),
    ("dotdot", "member '../evil' escapes the archive"),
    ("nested_dotdot", f"member '{DATASET}/../../evil' escapes the archive"),
    ("drive", "member 'C:/evil' starts with a drive letter"),
    ("backslash", "contains a backslash"),
    ("symlink", "is a symbolic link"),
    ("duplicate", "appears twice"),
    ("bad_hash", "does not match its SHA-256"),
    ("unlisted", "is not listed in autounet_model.json"),
    ("missing", "is listed in autounet_model.json but missing"),
    ("no_manifest", "has no autounet_model.json"),
    ("pickle", "fold_0/checkpoint_final.pt': cannot read checkpoint (UnpicklingError)"),
    ("file_and_folder", "plans.json/x' cannot be extracted"),
    ("bomb", "refusing it as a possible zip bomb"),
    ("not_zip", "not a zip archive"),
])
def test_malicious_or_broken_archives_are_refused(exported: Path, tmp_path: Path, case: str, message: str) -> None:
    members, fields = read_members(exported), _manifest_fields(exported)
    listed: dict[str, bytes] | None = None
    symlinks: tuple[str, ...] = ()
    max_bytes = 1 << 30
    extra = {"absolute": "/etc/evil", "dotdot": "../evil", "nested_dotdot": f"{DATASET}/../../evil",
             "drive": "C:/evil", "backslash": "..\\evil", "symlink": f"{DATASET}/{CONFIGURATION}/link"}
    if case in extra:
        members = {extra[case]: b"/etc/passwd", **members}
        symlinks = (extra[case],) if case == "symlink" else ()
    elif case == "bad_hash":
        listed = dict(members)
        members[f"{DATASET}/{CONFIGURATION}/dataset.json"] = b'{"evil": true}'
    elif case == "unlisted":
        listed = dict(members)
        members[f"{DATASET}/{CONFIGURATION}/extra.json"] = b"{}"
    elif case == "missing":
        listed = dict(members)
        del members[f"{DATASET}/find_best/choice.json"]
    elif case == "file_and_folder":
        members[f"{DATASET}/{CONFIGURATION}/plans.json/x"] = b"{}"
    elif case == "pickle":
        members = _pickle_checkpoint(exported, tmp_path)
    elif case == "bomb":
        max_bytes = 1000
    archive = tmp_path / "bad.zip"
    if case == "not_zip":
        archive.write_bytes(b"PK\x03\x04 not really")
    elif case == "duplicate":
        shutil.copyfile(exported, archive)
        with warnings.catch_warnings(), zipfile.ZipFile(archive, "a") as handle:
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate we write on purpose
            handle.writestr(f"{DATASET}/{CONFIGURATION}/plans.json", b"{}")
    else:
        write_zip(archive, members, None if case == "no_manifest" else fields, listed=listed, symlinks=symlinks)
    results = tmp_path / "results"
    with pytest.raises(CheckpointError) as info:
        install_model(archive, results, max_bytes=max_bytes, show_progress=False)
    assert message in str(info.value) and str(info.value).startswith(str(archive))
    assert "\n" not in str(info.value)
    assert _nothing_installed(results)
    assert not (tmp_path / "etc").exists() and not (tmp_path / "evil").exists()


def test_install_from_url_and_404(exported: Path, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    shutil.copyfile(exported, served / "model.zip")
    results = tmp_path / "results"
    with serve_folder(served) as base:
        installed = install_model(f"{base}/model.zip", results, show_progress=False)
        assert installed.folders[0] == results / DATASET / CONFIGURATION
        assert sorted(p.name for p in results.iterdir()) == [DATASET]
        with pytest.raises(CheckpointError, match=r"/missing.zip: download failed: HTTP 404") as info:
            install_model(f"{base}/missing.zip", tmp_path / "other", show_progress=False)
        assert str(info.value).startswith(f"{base}/missing.zip")
        with pytest.raises(CheckpointError, match="more than the limit"):
            install_model(f"{base}/model.zip", tmp_path / "other", max_bytes=100, show_progress=False)
    assert _nothing_installed(tmp_path / "other")


def test_other_url_schemes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="only http:// and https://"):
        install_model("file:///etc/passwd", tmp_path / "results", show_progress=False)
