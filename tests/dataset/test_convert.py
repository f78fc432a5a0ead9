"""Converters: MSD / nnU-Net v1 task folders and 2D picture folders into nnU-Net v2 raw datasets."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from autounet.cli.main import main
from autounet.dataset import list_test_cases, load_dataset_json, load_raw_dataset
from autounet.dataset.convert import convert_images, convert_msd
from autounet.errors import DatasetError
from autounet.io import read_image, read_segmentation

SHAPE = (6, 5, 4)  # NIfTI (x, y, z)


def _affine() -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", (15.0, -25.0, 40.0), degrees=True).as_matrix() @ np.diag(
        (0.6, 0.75, 3.0))
    affine[:3, 3] = (-30.5, 12.25, 80.0)
    return affine


def _save_nifti(data: np.ndarray, path: Path, scaled: bool = False) -> None:
    image = nib.Nifti1Image(data, None)  # no affine: nibabel would overwrite the header's forms with it
    image.header.set_qform(_affine(), code=1)
    sform = _affine()
    sform[0, 1] += 0.01  # sform and qform differ: both must survive the split
    image.header.set_sform(sform, code=2)
    image.header.set_xyzt_units("mm", "sec")
    if scaled:
        image.header.set_slope_inter(0.5, -10.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)


def _legacy_json(cases: list[str], test: list[str], modality: dict[str, str]) -> dict[str, Any]:
    return {
        "name": "PROSTATE", "description": "Prostate transitional zone and peripheral zone segmentation",
        "reference": "Radboud University", "licence": "CC-BY-SA 4.0", "release": "1.0 04/05/2018",
        "tensorImageSize": "4D", "modality": modality,
        "labels": {"0": "background", "1": "PZ", "2": "TZ"},
        "numTraining": len(cases), "numTest": len(test),
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in cases],
        "test": [f"./imagesTs/{c}.nii.gz" for c in test],
    }


def make_msd_task(root: Path, name: str = "Task05_Prostate", channels: int = 2) -> Path:
    """A tiny MSD task: 4D int16 images (one with scaling), float labels, macOS junk beside them."""
    task = root / name
    rng = np.random.default_rng(0)
    cases, test = ["prostate_00", "prostate_01"], ["prostate_02"]
    for index, case in enumerate(cases + test):
        shape = (*SHAPE, channels) if channels > 1 else SHAPE
        data = rng.integers(0, 1000, size=shape).astype(np.int16)
        split = "Tr" if case in cases else "Ts"
        _save_nifti(data, task / f"images{split}" / f"{case}.nii.gz", scaled=index == 1)
        if split == "Tr":
            labels = rng.integers(0, 3, size=SHAPE).astype(np.float32)  # MSD stores some labels as float
            _save_nifti(labels, task / "labelsTr" / f"{case}.nii.gz")
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (task / folder / "._prostate_00.nii.gz").write_bytes(b"\x00\x05\x16\x07 AppleDouble junk")
    modality = {"0": "T2", "1": "ADC"} if channels == 2 else {"0": "CT"}
    (task / "dataset.json").write_text(json.dumps(_legacy_json(cases, test, modality), indent=4))
    return task


@pytest.fixture
def task(tmp_path: Path) -> Path:
    return make_msd_task(tmp_path / "downloads")


def _assert_same_header_geometry(written: nib.Nifti1Image, source: nib.Nifti1Image) -> None:
    assert np.array_equal(written.affine, source.affine)
    assert np.array_equal(written.header.get_qform(), source.header.get_qform())
    assert np.array_equal(written.header.get_sform(), source.header.get_sform())
    assert int(written.header["qform_code"]) == int(source.header["qform_code"]) == 1
    assert int(written.header["sform_code"]) == int(source.header["sform_code"]) == 2
    assert np.array_equal(written.header["pixdim"][:4], source.header["pixdim"][:4])
    assert written.header.get_xyzt_units() == source.header.get_xyzt_units()


def test_msd_channels_are_split_with_exact_geometry(task: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    folder = convert_msd(task, raw)
    assert folder == raw / "Dataset005_Prostate"
    for case in ("prostate_00", "prostate_01"):
        source = nib.load(task / "imagesTr" / f"{case}.nii.gz")
        values = np.asanyarray(source.dataobj)
        for channel in range(2):
            written = nib.load(folder / "imagesTr" / f"{case}_{channel:04d}.nii.gz")
            _assert_same_header_geometry(written, source)
            assert written.header["dim"][0] == 3 and tuple(written.header["dim"][1:5]) == (*SHAPE, 1)
            assert written.get_data_dtype() == source.get_data_dtype()
            assert np.array_equal(np.asanyarray(written.dataobj), values[..., channel])
            assert np.array_equal(written.dataobj.get_unscaled(), source.dataobj.get_unscaled()[..., channel])
            assert (written.dataobj.slope, written.dataobj.inter) == (source.dataobj.slope, source.dataobj.inter)
    image, geometry = read_image(sorted((folder / "imagesTr").glob("prostate_01_*.nii.gz")))
    assert image.shape == (2, *SHAPE[::-1])
    assert np.array_equal(image[1], np.asanyarray(nib.load(task / "imagesTr" / "prostate_01.nii.gz").dataobj)[
        ..., 1].T.astype(np.float32))


def test_msd_labels_test_cases_and_dataset_json(task: Path, tmp_path: Path) -> None:
    folder = convert_msd(task, tmp_path / "raw")
    dataset = load_raw_dataset(folder)
    assert [c.case_id for c in dataset.cases] == ["prostate_00", "prostate_01"]
    assert [c.case_id for c in list_test_cases(folder, ".nii.gz")] == ["prostate_02"]
    for case in dataset.cases:
        source = nib.load(task / "labelsTr" / f"{case.case_id}.nii.gz")
        written = nib.load(case.label_file)
        _assert_same_header_geometry(written, source)
        assert written.get_data_dtype() == np.uint8
        assert np.array_equal(np.asanyarray(written.dataobj), np.asanyarray(source.dataobj).astype(np.uint8))
    assert json.loads((folder / "dataset.json").read_text()) == {
        "channel_names": {"0": "T2", "1": "ADC"},
        "labels": {"background": 0, "PZ": 1, "TZ": 2},
        "numTraining": 2, "file_ending": ".nii.gz",
        "name": "PROSTATE", "description": "Prostate transitional zone and peripheral zone segmentation",
        "reference": "Radboud University", "licence": "CC-BY-SA 4.0", "release": "1.0 04/05/2018",
        "numTest": 1, "converted_from": "Task05_Prostate by 'autounet convert msd'",
    }
    everything = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    assert not [name for name in everything if "._" in name]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["Dataset005_Prostate"]  # no staging left


def test_msd_in_parallel_gives_the_same_files(task: Path, tmp_path: Path) -> None:
    serial = convert_msd(task, tmp_path / "a")
    parallel = convert_msd(task, tmp_path / "b", num_processes=2)
    files = sorted(p.relative_to(serial) for p in serial.rglob("*.nii.gz"))
    assert files == sorted(p.relative_to(parallel) for p in parallel.rglob("*.nii.gz"))
    for relative in files:
        a, b = nib.load(serial / relative), nib.load(parallel / relative)
        assert a.header.binaryblock == b.header.binaryblock
        assert np.array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))


def test_msd_single_channel_is_copied_byte_for_byte(tmp_path: Path) -> None:
    task = make_msd_task(tmp_path / "downloads", name="Task03_Liver", channels=1)
    folder = convert_msd(task, tmp_path / "raw", dataset_id=103)
    assert folder.name == "Dataset103_Liver"
    source = (task / "imagesTr" / "prostate_01.nii.gz").read_bytes()
    assert (folder / "imagesTr" / "prostate_01_0000.nii.gz").read_bytes() == source
    assert load_dataset_json(folder / "dataset.json").channel_names == {0: "CT"}


def test_nnunet_v1_task_with_split_channels(task: Path, tmp_path: Path) -> None:
    v1 = tmp_path / "v1" / "Task105_Prostate"
    msd_converted = convert_msd(task, tmp_path / "raw")
    for folder in ("imagesTr", "imagesTs", "labelsTr"):
        (v1 / folder).mkdir(parents=True)
        for path in (msd_converted / folder).iterdir():
            (v1 / folder / path.name).write_bytes(path.read_bytes())
    (v1 / "dataset.json").write_text((task / "dataset.json").read_text())
    folder = convert_msd(v1, tmp_path / "raw")
    assert folder.name == "Dataset105_Prostate"
    for path in (msd_converted / "imagesTr").iterdir():
        assert (folder / "imagesTr" / path.name).read_bytes() == path.read_bytes()
    assert [c.case_id for c in list_test_cases(folder, ".nii.gz")] == ["prostate_02"]


def test_msd_without_training_list_lists_the_folder(task: Path, tmp_path: Path) -> None:
    legacy = json.loads((task / "dataset.json").read_text())
    del legacy["training"], legacy["test"]
    (task / "dataset.json").write_text(json.dumps(legacy))
    dataset = load_raw_dataset(convert_msd(task, tmp_path / "raw"))
    assert [c.case_id for c in dataset.cases] == ["prostate_00", "prostate_01"]


def test_existing_dataset_needs_overwrite(task: Path, tmp_path: Path) -> None:
    folder = convert_msd(task, tmp_path / "raw")
    (folder / "marker.txt").write_text("old")
    with pytest.raises(DatasetError, match="already exists.*overwrite") as info:
        convert_msd(task, tmp_path / "raw")
    assert info.value.path == folder and (folder / "marker.txt").exists()
    assert convert_msd(task, tmp_path / "raw", overwrite=True) == folder
    assert not (folder / "marker.txt").exists() and load_raw_dataset(folder).cases
    assert sorted(p.name for p in folder.parent.iterdir()) == ["Dataset005_Prostate"]


def test_dataset_id_used_by_another_dataset(task: Path, tmp_path: Path) -> None:
    (tmp_path / "raw" / "Dataset005_Other").mkdir(parents=True)
    with pytest.raises(DatasetError, match="id 5 is already used by Dataset005_Other"):
        convert_msd(task, tmp_path / "raw")


def _break_channels(task: Path) -> Path:
    legacy = json.loads((task / "dataset.json").read_text())
    legacy["modality"]["2"] = "DWI"
    (task / "dataset.json").write_text(json.dumps(legacy))
    return task / "imagesTr"  # workers run in parallel: either image may be reported first


def _remove_label(task: Path) -> Path:
    (task / "labelsTr" / "prostate_01.nii.gz").unlink()
    return task / "labelsTr" / "prostate_01.nii.gz"


def _fractional_label(task: Path) -> Path:
    path = task / "labelsTr" / "prostate_01.nii.gz"
    _save_nifti(np.full(SHAPE, 0.5, np.float32), path)
    return path


def _v2_json(task: Path) -> Path:
    (task / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T2"}, "labels": {"background": 0},
                                                   "numTraining": 2, "file_ending": ".nii.gz"}))
    return task / "dataset.json"


def _truncate_image(task: Path) -> Path:
    path = task / "imagesTr" / "prostate_01.nii.gz"
    path.write_bytes(path.read_bytes()[:300])
    return path


def _missing_image(task: Path) -> Path:
    (task / "imagesTr" / "prostate_00.nii.gz").unlink()
    return task / "imagesTr" / "prostate_00_0000.nii.gz"


@pytest.mark.parametrize(("breaker", "problem"), [
    (_break_channels, "has 2 channel.*lists 3"), (_remove_label, "label file not found"),
    (_fractional_label, "non-integer"), (_v2_json, "already an nnU-Net v2"),
    (_truncate_image, "cannot read image"), (_missing_image, "image not found"),
])
def test_msd_errors_name_the_file_and_leave_nothing(task: Path, tmp_path: Path, breaker: Any,
                                                     problem: str) -> None:
    path = breaker(task)
    with pytest.raises(DatasetError, match=problem) as info:
        convert_msd(task, tmp_path / "raw", num_processes=2)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())


def test_task_folder_without_number_needs_an_id(task: Path, tmp_path: Path) -> None:
    plain = task.rename(task.parent / "Prostate")
    with pytest.raises(DatasetError, match="dataset id") as info:
        convert_msd(plain, tmp_path / "raw")
    assert info.value.path == plain
    assert convert_msd(plain, tmp_path / "raw", dataset_id=7).name == "Dataset007_Prostate"


def test_cli_msd(task: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        code = main(["convert", "msd", str(task), "-d", "55", "-np", "1", "--data-root", str(tmp_path / "d")])
    assert code == 0
    assert (tmp_path / "d" / "raw" / "Dataset055_Prostate" / "dataset.json").is_file()
    assert "autounet verify -d 55" in caplog.text and "Dataset055_Prostate" in caplog.text
    again = main(["convert", "msd", str(task), "-d", "55", "--data-root", str(tmp_path / "d")])
    assert again == 1


def _picture(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_picture_folders(root: Path, rgb: bool = True) -> tuple[Path, Path]:
    """Three pictures (png, bmp, tif) with 0/255 masks, and junk a file browser would leave."""
    rng = np.random.default_rng(1)
    for stem, ending in (("a", ".png"), ("b", ".bmp"), ("c", ".tif")):
        shape = (12, 10, 3) if rgb else (12, 10)
        _picture(root / "images" / f"{stem}{ending}", rng.integers(0, 256, size=shape).astype(np.uint8))
        mask = np.zeros((12, 10), np.uint8)
        mask[3:7, 2:6] = 255
        _picture(root / "labels" / f"{stem}.png", mask)
    (root / "images" / "._a.png").write_bytes(b"junk")
    (root / "labels" / ".DS_Store").write_bytes(b"junk")
    return root / "images", root / "labels"


def test_pictures_rgb_with_binary_masks(tmp_path: Path) -> None:
    images, labels = make_picture_folders(tmp_path / "pics")
    folder = convert_images(images, labels, tmp_path / "raw", 10, "Polyps")
    dataset = load_raw_dataset(folder)
    assert folder.name == "Dataset010_Polyps" and [c.case_id for c in dataset.cases] == ["a", "b", "c"]
    for case in dataset.cases:
        assert [p.name for p in case.image_files] == [f"{case.case_id}_0000.png"]
        image, _ = read_image(case.image_files)
        original = np.asarray(Image.open(next(images.glob(f"{case.case_id}.*"))))
        assert image.shape == (3, 12, 10) and np.array_equal(image, np.moveaxis(original, -1, 0))
        label, _ = read_segmentation(case.label_file)
        assert set(np.unique(label)) == {0, 1} and label[3:7, 2:6].all() and label.sum() == 16
    assert json.loads((folder / "dataset.json").read_text()) == {
        "channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "label_1": 1},
        "numTraining": 3, "file_ending": ".png", "name": "Polyps",
        "converted_from": "images/ and labels/ by 'autounet convert images'",
        "label_values_converted": {"255": 1},
    }


def test_pictures_grey_with_given_labels_and_jpeg(tmp_path: Path) -> None:
    images, labels = make_picture_folders(tmp_path / "pics", rgb=False)
    grey = np.tile(np.arange(10, dtype=np.uint8) * 20, (12, 1))
    _picture(images / "d.jpg", grey)
    mask = np.zeros((12, 10), np.uint8)
    mask[:, 5:] = 255
    _picture(labels / "d.jpg", mask)  # lossy: thresholded back to a binary mask
    given = {"background": 0, "polyp": 1}
    folder = convert_images(images, labels, tmp_path / "raw", 11, "Grey", labels=given, file_ending=".tif")
    description = load_dataset_json(folder / "dataset.json")
    assert description.channel_names == {0: "grey"} and description.labels == given
    assert description.file_ending == ".tif" and description.num_training == 4
    label, _ = read_segmentation(folder / "labelsTr" / "d.tif")
    assert np.array_equal(label, (mask > 0).astype(np.uint8))
    image, _ = read_image([folder / "imagesTr" / "d_0000.tif"])
    assert image.shape == (1, 12, 10) and np.abs(image[0] - grey).max() < 8


def test_non_consecutive_values_are_renumbered(tmp_path: Path) -> None:
    images, labels = make_picture_folders(tmp_path / "pics")
    _picture(labels / "b.png", np.full((12, 10), 7, np.uint8))
    folder = convert_images(images, labels, tmp_path / "raw", 12, "Renumbered")
    description = load_dataset_json(folder / "dataset.json")
    assert description.labels == {"background": 0, "label_1": 1, "label_2": 2}
    assert description.extra["label_values_converted"] == {"7": 1, "255": 2}
    assert np.unique(read_segmentation(folder / "labelsTr" / "b.png")[0]).tolist() == [1]
    assert np.unique(read_segmentation(folder / "labelsTr" / "a.png")[0]).tolist() == [0, 2]


def _no_label(images: Path, labels: Path) -> tuple[Path, dict[str, Any]]:
    (labels / "c.png").unlink()
    return images / "c.tif", {}


def _no_picture(images: Path, labels: Path) -> tuple[Path, dict[str, Any]]:
    _picture(labels / "e.png", np.zeros((12, 10), np.uint8))
    return labels / "e.png", {}


def _grey_among_colour(images: Path, labels: Path) -> tuple[Path, dict[str, Any]]:
    _picture(images / "b.bmp", np.zeros((12, 10), np.uint8))
    return images / "b.bmp", {}


def _wrong_shape(images: Path, labels: Path) -> tuple[Path, dict[str, Any]]:
    _picture(labels / "b.png", np.zeros((10, 12), np.uint8))
    return labels / "b.png", {}


def _undeclared_value(images: Path, labels: Path) -> tuple[Path, dict[str, Any]]:
    for path in labels.glob("[a-z].png"):
        _picture(path, (np.asarray(Image.open(path)) > 0).astype(np.uint8) * (2 if path.stem == "b" else 1))
    return labels / "b.png", {"labels": {"background": 0, "polyp": 1}}


def _colour_label(images: Path, labels: Path) -> tuple[Path, dict[str, Any]]:
    colour = np.zeros((12, 10, 3), np.uint8)
    colour[..., 0] = 255
    _picture(labels / "a.png", colour)
    return labels / "a.png", {}


def _duplicate_stem(images: Path, labels: Path) -> tuple[Path, dict[str, Any]]:
    _picture(images / "A.png", np.zeros((12, 10, 3), np.uint8))
    return images / "a.png", {}


@pytest.mark.parametrize(("breaker", "problem"), [
    (_no_label, "no label image"), (_no_picture, "no picture"), (_grey_among_colour, "channel"),
    (_wrong_shape, "shape"), (_undeclared_value, r"value\(s\) \[2\]"), (_colour_label, "colour label"),
    (_duplicate_stem, "same name"),
])
def test_picture_errors_name_the_file(tmp_path: Path, breaker: Any, problem: str) -> None:
    images, labels = make_picture_folders(tmp_path / "pics")
    path, options = breaker(images, labels)
    with pytest.raises(DatasetError, match=problem) as info:
        convert_images(images, labels, tmp_path / "raw", 13, "Broken", **options)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())


@pytest.mark.parametrize(("options", "problem"), [
    ({"labels": {"polyp": 1}}, "background"), ({"labels": {"background": 0, "polyp": 2}}, "value"),
    ({"channel_names": {0: "grey"}}, "1 channel name"), ({"file_ending": ".nii.gz"}, "2D pictures"),
    ({"name": "two words"}, "dataset name"),
])
def test_picture_option_errors(tmp_path: Path, options: dict[str, Any], problem: str) -> None:
    images, labels = make_picture_folders(tmp_path / "pics")
    with pytest.raises(DatasetError, match=problem):
        convert_images(images, labels, tmp_path / "raw", 14, **({"name": "Bad"} | options))


def test_cli_images_with_labels_json(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    images, labels = make_picture_folders(tmp_path / "pics")
    labels_json = tmp_path / "labels.json"
    labels_json.write_text(json.dumps({"labels": {"background": 0, "polyp": 1},
                                       "channel_names": {"0": "red", "1": "green", "2": "blue"}}))
    args = ["convert", "images", "--images", str(images), "--labels", str(labels), "-d", "20", "--name", "Polyps",
            "--labels-json", str(labels_json), "--data-root", str(tmp_path / "d")]
    with caplog.at_level(logging.INFO):
        assert main(args) == 0
    description = load_dataset_json(tmp_path / "d" / "raw" / "Dataset020_Polyps" / "dataset.json")
    assert description.labels == {"background": 0, "polyp": 1}
    assert description.channel_names == {0: "red", 1: "green", 2: "blue"}
    assert "autounet verify -d 20" in caplog.text
    assert main(args) == 1
    assert main([*args, "--overwrite"]) == 0
    labels_json.write_text(json.dumps({"background": "zero"}))
    assert main([*args, "--overwrite"]) == 1
