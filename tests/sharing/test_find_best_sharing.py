"""find-best -> export-model -> install-model on another machine -> predict applies the postprocessing
find-best chose, exactly as predicting from the original results folder does."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from autounet.cli.main import main
from autounet.ensembling import find_best
from autounet.io import read_segmentation, write_segmentation
from autounet.sharing import export_model
from tests.sharing._model import (
    CONFIGURATION,
    DATASET,
    build_results,
    read_manifest,
    read_members,
    write_choice,
    write_zip,
)


@pytest.fixture(scope="module")
def source_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder whose 3d_fullres won find-best with 'keep the largest component of label 2'."""
    root = tmp_path_factory.mktemp("source")
    torch.manual_seed(0)
    dataset_results = build_results(root)
    (dataset_results / CONFIGURATION / "postprocessing.json").unlink()  # the folder's own would win
    raw = root / "raw" / DATASET
    validation = dataset_results / CONFIGURATION / "fold_0" / "validation"
    for label_file in sorted((raw / "labelsTr").glob("*.nii.gz")):
        seg, geometry = read_segmentation(label_file)
        seg[-1, -1, -1] = 2  # a false-positive voxel far from the corner blob: keeping its largest part helps
        write_segmentation(seg, geometry, validation / label_file.name)
    (validation / "summary.json").write_text("{}")
    result = find_best(dataset_results, raw, folds=(0,))
    assert result.choice.configurations == (CONFIGURATION,) and not result.postprocessing.is_identity
    return root


def _predict(root: Path, output: Path, *model: str) -> dict[str, np.ndarray]:
    images = root / "raw" / DATASET / "imagesTr"
    assert main(["predict", "-i", str(images), "-o", str(output), *model, "-f", "0", "--disable-tta", "-q"]) == 0
    return {path.name: read_segmentation(path)[0] for path in sorted(output.glob("*.nii.gz"))}


def test_installed_model_applies_find_bests_postprocessing(source_root: Path, tmp_path: Path) -> None:
    source = ["-d", DATASET, "-c", CONFIGURATION, "--data-root", str(source_root)]
    original = _predict(source_root, tmp_path / "original", *source)
    plain = _predict(source_root, tmp_path / "plain", *source, "--no-postprocessing")
    assert len(original) == 2 and any(not np.array_equal(original[k], plain[k]) for k in original)

    archive = tmp_path / "model.zip"
    assert main(["export-model", *source, "-o", str(archive), "-q"]) == 0
    with zipfile.ZipFile(archive) as handle:
        choice = json.loads(handle.read(f"{DATASET}/find_best/choice.json"))
    assert choice["postprocessing_file"] == "find_best/postprocessing.json"
    assert main(["install-model", str(archive), "--data-root", str(tmp_path / "machine_a"), "-q"]) == 0
    shutil.move(tmp_path / "machine_a", tmp_path / "machine_b")  # another place, as on another machine
    model_folder = tmp_path / "machine_b" / "results" / DATASET / CONFIGURATION
    installed = _predict(source_root, tmp_path / "installed", "-m", str(model_folder))
    assert installed.keys() == original.keys()
    assert all(np.array_equal(installed[k], original[k]) for k in original)


def test_export_rewrites_an_old_absolute_choice(source_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(source_root / "results" / DATASET, copy / DATASET)
    # As written by an older autounet on the machine the folder came from.
    write_choice(copy / DATASET, f"/home/someone/results/{DATASET}/find_best/postprocessing.json")
    manifest = export_model(copy / DATASET, [CONFIGURATION], tmp_path / "model.zip", folds=[0])
    with zipfile.ZipFile(tmp_path / "model.zip") as handle:
        choice = json.loads(handle.read(f"{DATASET}/find_best/choice.json"))
        chosen = handle.read(f"{DATASET}/find_best/postprocessing.json")
    assert choice["postprocessing_file"] == "find_best/postprocessing.json"
    assert chosen == (source_root / "results" / DATASET / "find_best" / "postprocessing.json").read_bytes()
    assert f"{DATASET}/find_best/choice.json" in manifest.files


def test_an_archive_must_bring_the_postprocessing_it_chose(source_root: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.zip"
    export_model(source_root / "results" / DATASET, [CONFIGURATION], good, folds=[0])
    members = read_members(good)
    del members[f"{DATASET}/find_best/postprocessing.json"]
    choice = json.loads(members[f"{DATASET}/find_best/choice.json"])
    # An absolute path that exists on this machine, but outside the archive.
    choice["postprocessing_file"] = str(source_root / "results" / DATASET / "find_best" / "postprocessing.json")
    members[f"{DATASET}/find_best/choice.json"] = json.dumps(choice).encode()
    bad = write_zip(tmp_path / "bad.zip", members, {k: v for k, v in read_manifest(good).items() if k != "files"})
    assert main(["install-model", str(bad), "--data-root", str(tmp_path / "machine")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"member '{DATASET}/find_best/choice.json'" in err and "is missing" in err
    assert list((tmp_path / "machine" / "results").iterdir()) == []


def test_deploy_carries_find_bests_postprocessing(source_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    source = ["-d", DATASET, "-c", CONFIGURATION, "--data-root", str(source_root)]
    original = _predict(source_root, tmp_path / "original", *source)
    deployed = tmp_path / "deployed"
    assert main(["deploy", *source, "-f", "0", "-o", str(deployed), "--torchscript", "--no-accuracy-check",
                 "-q"]) == 0
    chosen = source_root / "results" / DATASET / "find_best" / "postprocessing.json"
    assert (deployed / "postprocessing.json").read_bytes() == chosen.read_bytes()
    through_onnx = _predict(source_root, tmp_path / "through_onnx", "-m", str(deployed))
    assert through_onnx.keys() == original.keys()
    assert all(np.array_equal(through_onnx[k], original[k]) for k in original)
