"""The CLI never shows a traceback without --debug: subcommands given files they must not trust (box files,
instance maps and their JSON, nnDetection descriptions, CaFFe names, deploy manifests, dataset.json) end in
one line naming the file and the problem, exit 1, and leave the inputs as they were."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from autounet.cli.main import main
from autounet.inference.original_geometry import save_probabilities
from autounet.io import ImageGeometry
from autounet.io.images import write_segmentation

# A JSON integer beyond Python's int conversion limit (4300 digits): json.loads raises ValueError on it.
LONG_INTEGER = "9" * 5000


def _message_lines(err: str) -> list[str]:
    """The lines of stderr without progress bars (which a failing step leaves unfinished)."""
    return [line for line in re.sub(r"[^\r\n]*?%\|[^\r\n]*?\]", "", err).splitlines() if line.strip()]


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _box_case(root: Path, boxes_text: str, instances: np.ndarray | None = None,
              instances_json: str = '{"instances": {"1": 0}}') -> tuple[list[str], Path]:
    """A reference folder (instance map + JSON) and a prediction folder with one box file."""
    reference, prediction = root / "labelsTs", root / "pred"
    if instances is None:
        instances = np.zeros((6, 8, 8), dtype=np.uint8)
        instances[1:4, 2:6, 2:6] = 1
    write_segmentation(instances, ImageGeometry.default(3, (1.0, 1.0, 1.0)), reference / "c1.nii.gz")
    (reference / "c1.json").write_text(instances_json)
    prediction.mkdir()
    box_file = prediction / "c1_boxes.json"
    box_file.write_text(boxes_text)
    return ["evaluate", str(reference), str(prediction), "--boxes", "-o", str(root / "scores")], box_file


def _boxes(*boxes: str) -> str:
    return '{"schema_version": 1, "boxes": [' + ", ".join(boxes) + "]}"


BOX = '{"voxel_box": [1, 2, 2, 4, 6, 6], "score": 0.9, "class": 0}'


def box_class_beyond_int64(root: Path) -> tuple[list[str], Path, str]:
    argv, path = _box_case(root, _boxes('{"voxel_box": [1, 2, 2, 4, 6, 6], "score": 0.9, "class": 1e300}'))
    return argv, path, "boxes[0].class' must be <= 65535"


def box_class_infinite(root: Path) -> tuple[list[str], Path, str]:
    argv, path = _box_case(root, _boxes('{"voxel_box": [1, 2, 2, 4, 6, 6], "score": 0.9, "class": Infinity}'))
    return argv, path, "boxes[0].class' must be an integer"


def box_inverted(root: Path) -> tuple[list[str], Path, str]:
    argv, path = _box_case(root, _boxes(BOX, '{"voxel_box": [4, 6, 6, 1, 2, 2], "score": 0.5, "class": 0}'))
    return argv, path, "box 1 ends before it starts"


def box_mixed_dimensionality(root: Path) -> tuple[list[str], Path, str]:
    argv, path = _box_case(root, _boxes(BOX, '{"voxel_box": [1, 2, 4, 6], "score": 0.5, "class": 0}'))
    return argv, path, "4 (2D) or 6 (3D) numbers, the same count"


def box_file_long_integer(root: Path) -> tuple[list[str], Path, str]:
    argv, path = _box_case(root, _boxes('{"voxel_box": [1, 2, 2, 4, 6, 6], "score": 0.9, "class": '
                                        + LONG_INTEGER + "}"))
    return argv, path, "not usable JSON"


def reference_not_an_instance_map(root: Path) -> tuple[list[str], Path, str]:
    instances = np.zeros((6, 8, 8), dtype=np.int32)
    instances[1:4, 2:6, 2:6] = 2**21  # find_objects would build a list of two million entries
    argv, _ = _box_case(root, _boxes(BOX), instances=instances)
    return argv, root / "labelsTs" / "c1.nii.gz", "is it an instance map?"


def reference_negative_instance(root: Path) -> tuple[list[str], Path, str]:
    instances = np.zeros((6, 8, 8), dtype=np.int16)
    instances[1:4, 2:6, 2:6] = -3
    argv, _ = _box_case(root, _boxes(BOX), instances=instances)
    return argv, root / "labelsTs" / "c1.nii.gz", "holds the value -3"


def instance_class_infinite(root: Path) -> tuple[list[str], Path, str]:
    argv, _ = _box_case(root, _boxes(BOX), instances_json='{"instances": {"1": Infinity}}')
    return argv, root / "labelsTs" / "c1.json", "instance 1 has class inf"


def _nndet_task(root: Path, yaml_bytes: bytes) -> tuple[list[str], Path]:
    task = root / "Task001_Toy"
    (task / "raw_splitted" / "imagesTr").mkdir(parents=True)
    path = task / "dataset.yaml"
    path.write_bytes(yaml_bytes)
    return ["convert", "nndet", str(task), "--data-root", str(root / "data")], path


def nndet_yaml_bad_escape(root: Path) -> tuple[list[str], Path, str]:
    argv, path = _nndet_task(root, b'name: "a\\qb"\ndim: 3\nlabels:\n  "0": lesion\nmodalities:\n  "0": CT\n')
    return argv, path, "line 1: string"


def nndet_yaml_long_integer(root: Path) -> tuple[list[str], Path, str]:
    argv, path = _nndet_task(root, f"dim: {LONG_INTEGER}\n".encode())
    return argv, path, "line 1: integer of 5000 characters"


def nndet_yaml_deep_nesting(root: Path) -> tuple[list[str], Path, str]:
    text = "".join(" " * depth + f"k{depth}:\n" for depth in range(1200)) + " " * 1200 + "v: 1\n"
    argv, path = _nndet_task(root, text.encode())
    return argv, path, "nested more than 32 levels deep"


def nndet_yaml_not_text(root: Path) -> tuple[list[str], Path, str]:
    argv, path = _nndet_task(root, b"dim: 3\n\xff\xfe\x00binary")
    return argv, path, "cannot read it as UTF-8 text"


def caffe_absurd_resolution(root: Path) -> tuple[list[str], Path, str]:
    source = root / "caffe"
    name = "Mapple_2008-10-13_ERS_" + "9" * 200 + "_2"
    for folder, suffix in (("sar_images", ""), ("zones", "_zones"), ("fronts", "_front")):
        (source / folder / "train").mkdir(parents=True)
        (source / folder / "train" / f"{name}{suffix}.png").write_bytes(b"")
    return (["convert", "caffe", str(source), "--data-root", str(root / "data")],
            source / "sar_images" / "train" / f"{name}.png", "must be positive and at most 10000 m")


def deploy_manifest_absurd_batch(root: Path) -> tuple[list[str], Path, str]:
    folder = root / "deployed"
    folder.mkdir()
    manifest = {"schema_version": 2, "configuration": "3d_fullres", "folds": ["0"], "precision": "fp32",
                "in_channels": 1, "num_outputs": 3, "batch_size": 10**12}
    (folder / "deploy.json").write_text(json.dumps(manifest))
    (root / "in").mkdir()
    return (["predict", "-i", str(root / "in"), "-o", str(root / "out"), "-m", str(folder), "--device", "cpu"],
            folder / "deploy.json", "batch_size must lie in 0..4096")


def deploy_manifest_bad_mirror_axes(root: Path) -> tuple[list[str], Path, str]:
    argv, path, _ = deploy_manifest_absurd_batch(root)
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "batch_size": 0, "mirror_axes": [0, 7]}))
    return argv, path, "mirror_axes must be distinct axes 0..2"


def dataset_json_long_integer(root: Path) -> tuple[list[str], Path, str]:
    dataset = root / "data" / "raw" / "Dataset001_Toy"
    (dataset / "imagesTr").mkdir(parents=True)
    path = dataset / "dataset.json"
    path.write_text('{"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1}, "numTraining": '
                    + LONG_INTEGER + ', "file_ending": ".nii.gz"}')
    return ["fingerprint", "-d", "1", "--data-root", str(root / "data")], path, "not usable JSON"


def dataset_json_long_key(root: Path) -> tuple[list[str], Path, str]:
    argv, path, _ = dataset_json_long_integer(root)
    path.write_text(json.dumps({"channel_names": {LONG_INTEGER: "CT"}, "labels": {"background": 0, "a": 1},
                                "numTraining": 1, "file_ending": ".nii.gz"}))
    return argv, path, "an object key of 5000 characters"


def _segmentation_folder(root: Path) -> Path:
    """A prediction folder with the label map seg-to-boxes takes the geometry from."""
    folder = root / "pred"
    write_segmentation(np.zeros((4, 6, 6), dtype=np.uint8), ImageGeometry.default(3, (1.0, 1.0, 1.0)),
                       folder / "c1.nii.gz")
    return folder


def probabilities_forged_header(root: Path) -> tuple[list[str], Path, str]:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (4, 100000, 100000, 100000)})
    folder = _segmentation_folder(root)
    path = folder / "c1.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:  # 16 PB declared, 64 bytes held
        archive.writestr("probabilities.npy", header.getvalue() + bytes(64))
    return ["seg-to-boxes", str(folder)], path, "declares shape [4, 100000, 100000, 100000]"


def probabilities_nan(root: Path) -> tuple[list[str], Path, str]:
    folder = _segmentation_folder(root)
    probabilities = np.full((2, 4, 6, 6), 0.5, dtype=np.float32)
    probabilities[1, 0, 0, 0] = np.nan
    save_probabilities(folder / "c1.npz", probabilities)
    return ["seg-to-boxes", str(folder)], folder / "c1.npz", "NaN or infinite"


CASES: list[Callable[[Path], tuple[list[str], Path, str]]] = [
    box_class_beyond_int64, box_class_infinite, box_inverted, box_mixed_dimensionality, box_file_long_integer,
    reference_not_an_instance_map, reference_negative_instance, instance_class_infinite,
    nndet_yaml_bad_escape, nndet_yaml_long_integer, nndet_yaml_deep_nesting, nndet_yaml_not_text,
    caffe_absurd_resolution, deploy_manifest_absurd_batch, deploy_manifest_bad_mirror_axes,
    dataset_json_long_integer, dataset_json_long_key, probabilities_forged_header, probabilities_nan,
]


@pytest.mark.parametrize("build", CASES, ids=[case.__name__ for case in CASES])
def test_untrusted_input_is_one_line_without_traceback(build: Callable[[Path], tuple[list[str], Path, str]],
                                                      tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv, path, expected = build(tmp_path)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    assert main([*argv, "-q"]) == 1
    err = capsys.readouterr().err
    lines = _message_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "(unexpected;" not in err, err  # a check at the right depth, not the last resort
    assert str(path) in err and expected in err, err
    after = _snapshot(tmp_path)
    assert {name: after.get(name) for name in before} == before  # nothing of the input changed or went away


GARBAGE = b"\x89PNG\r\n\x1a\n\x00\xff garbage, not what the name says \xfe\x00" * 8


@pytest.fixture()
def garbage_root(tmp_path: Path) -> Path:
    """A data root whose every file is garbage under the right name: dataset.json, an image, plans, a
    fingerprint, a checkpoint, an archive, a deploy manifest, box and probability files."""
    root = tmp_path / "data"
    dataset = root / "raw" / "Dataset001_Junk"
    for name in ("dataset.json", "imagesTr/a_0000.nii.gz", "labelsTr/a.nii.gz", "imagesTs/b_0000.nii.gz"):
        (dataset / name).parent.mkdir(parents=True, exist_ok=True)
        (dataset / name).write_bytes(GARBAGE)
    preprocessed = root / "preprocessed" / "Dataset001_Junk"
    model = root / "results" / "Dataset001_Junk" / "default__plans__3d_fullres"
    for name in (preprocessed / "plans.json", preprocessed / "fingerprint.json", preprocessed / "splits.json",
                 model / "plans.json", model / "dataset.json", model / "fold_0" / "checkpoint_final.pt",
                 model / "fold_0" / "checkpoint_latest.pt", tmp_path / "model.zip",
                 tmp_path / "deployed" / "deploy.json", tmp_path / "pred" / "c1_boxes.json",
                 tmp_path / "pred" / "c1.npz", tmp_path / "pred" / "c1.nii.gz", tmp_path / "ref" / "c1.nii.gz",
                 tmp_path / "ref" / "c1.json", tmp_path / "msd" / "dataset.json",
                 tmp_path / "nndet" / "dataset.json", tmp_path / "recipe.json"):
        name.parent.mkdir(parents=True, exist_ok=True)
        name.write_bytes(GARBAGE)
    return tmp_path


# One selection of subcommands over garbage inputs: whatever breaks, the CLI says so in one line.
GARBAGE_COMMANDS: list[list[str]] = [
    ["verify", "-d", "1"],
    ["fingerprint", "-d", "1"],
    ["plan", "-d", "1"],
    ["plan-and-preprocess", "-d", "1"],
    ["preprocess", "-d", "1"],
    ["train", "-d", "1", "-c", "3d_fullres", "-f", "0", "--continue", "--device", "cpu"],
    ["train", "-d", "1", "-c", "3d_fullres", "-f", "0", "--recipe", "{tmp}/recipe.json", "--device", "cpu"],
    ["predict", "-i", "{tmp}/data/raw/Dataset001_Junk/imagesTs", "-o", "{tmp}/out", "-d", "1", "-c", "3d_fullres",
     "--device", "cpu"],
    ["predict", "-i", "{tmp}/ref", "-o", "{tmp}/out", "-m", "{tmp}/deployed", "--device", "cpu"],
    ["evaluate", "{tmp}/ref", "{tmp}/pred"],
    ["evaluate", "{tmp}/ref", "{tmp}/pred", "--boxes"],
    ["ensemble", "-i", "{tmp}/pred", "{tmp}/pred", "-o", "{tmp}/out"],
    ["seg-to-boxes", "{tmp}/pred"],
    ["find-best", "-d", "1"],
    ["export-model", "-d", "1", "-c", "3d_fullres", "-o", "{tmp}/export.zip"],
    ["install-model", "{tmp}/model.zip"],
    ["deploy", "-d", "1", "-c", "3d_fullres", "-o", "{tmp}/deployed_out"],
    ["plan", "--fingerprint", "{tmp}/data/preprocessed/Dataset001_Junk/fingerprint.json", "--dataset-json",
     "{tmp}/msd/dataset.json", "--out", "{tmp}/plans.json"],
    ["convert", "msd", "{tmp}/msd"],
    ["convert", "nndet", "{tmp}/nndet"],
]


@pytest.mark.parametrize("command", GARBAGE_COMMANDS, ids=[" ".join(c[:2]) for c in GARBAGE_COMMANDS])
def test_subcommands_on_garbage_fail_in_one_line(garbage_root: Path, command: list[str],
                                                 capsys: pytest.CaptureFixture) -> None:
    argv = [part.replace("{tmp}", str(garbage_root)) for part in command]
    before = _snapshot(garbage_root)
    capsys.readouterr()
    assert main([*argv, "--data-root", str(garbage_root / "data"), "-q"]) == 1
    err = capsys.readouterr().err
    lines = _message_lines(err)
    assert "Traceback" not in err and lines, err
    if argv[0] != "verify":  # verify lists every problem it found, then a summary line
        assert len(lines) == 1 and lines[0].startswith(f"autounet {argv[0]}: error: "), err
    assert "(unexpected;" not in err, err
    after = _snapshot(garbage_root)
    assert {name: after.get(name) for name in before} == before
