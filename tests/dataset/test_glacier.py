"""CaFFe and glacier-fork converters: tiny fake benchmark folders written in tmp_path."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from autounet.cli.main import main
from autounet.dataset import load_dataset_json, load_raw_dataset
from autounet.dataset.glacier import caffe_pixel_size, convert_caffe, convert_glacier_stacked
from autounet.dataset.verify import verify_dataset
from autounet.errors import DatasetError, ImageIOError
from autounet.io import read_image, read_segmentation

NAMES = {"train": ["Mapple_2008-10-13_ERS_20_2", "Crane_2011-06-02_TSX_7_1"], "test": ["COL_2016-01-02_S1_40_3"]}


def _maps(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(1, 256, size=(16, 16), dtype=np.uint8)
    zones = np.full((16, 16), 64, np.uint8)
    zones[4:12, :8], zones[4:12, 8:], zones[:2, :2] = 127, 254, 0
    front = np.zeros((16, 16), np.uint8)
    front[4:12, 7] = 255
    return image, zones, front


def _png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_caffe(root: Path) -> Path:
    for split, names in NAMES.items():
        for seed, name in enumerate(names):
            image, zones, front = _maps(seed)
            _png(image, root / "sar_images" / split / f"{name}.png")
            _png(zones, root / "zones" / split / f"{name}_zones.png")
            _png(front, root / "fronts" / split / f"{name}_front.png")
    return root


def test_pixel_size_from_the_name() -> None:
    assert caffe_pixel_size("Mapple_2008-10-13_ERS_20_2") == 20.0
    assert caffe_pixel_size("DBE_1995-10-05_ERS_20_2_extra") == 20.0
    assert caffe_pixel_size("SI_2017-03-01_TDX_6.5_1") == 6.5
    for bad in ("Mapple", "Mapple_20081013_ERS_20_2", "Mapple_2008-10-13_ERS_twenty_2", "Mapple_2008-10-13_ERS_0_2"):
        with pytest.raises(DatasetError):
            caffe_pixel_size(bad)


def test_caffe_converts_with_codes_spacing_and_splits(tmp_path: Path) -> None:
    folder = convert_caffe(make_caffe(tmp_path / "data_raw"), tmp_path / "raw")
    assert folder.name == "Dataset507_CaFFe"
    description = load_dataset_json(folder / "dataset.json")
    assert [(t.name, t.kind) for t in description.tasks] == [("zones", "area"), ("front", "line")]
    assert description.num_training == 2 and description.extra["numTest"] == 1
    case = load_raw_dataset(folder).case("Crane_2011-06-02_TSX_7_1")
    image, geometry = read_image(case.image_files)
    zones, zone_geometry = read_segmentation(case.label_files[0])
    front, _ = read_segmentation(case.label_files[1])
    expected_image, expected_zones, expected_front = _maps(1)
    assert geometry.ndim == 2 and geometry.spacing == (7.0, 7.0) and zone_geometry.spacing == (7.0, 7.0)
    np.testing.assert_array_equal(image[0], expected_image)
    np.testing.assert_array_equal(zones, np.vectorize({0: 0, 64: 1, 127: 2, 254: 3}.get)(expected_zones))
    np.testing.assert_array_equal(front, expected_front // 255)
    test_image, test_geometry = read_image([folder / "imagesTs" / "COL_2016-01-02_S1_40_3_0000.mha"])
    assert test_geometry.spacing == (40.0, 40.0)
    assert (folder / "labelsTs/zones/COL_2016-01-02_S1_40_3.mha").is_file()
    assert (folder / "labelsTs/front/COL_2016-01-02_S1_40_3.mha").is_file()
    report = verify_dataset(folder)
    assert report.ok, report.problems


def _breaks(root: Path, what: str) -> Path:
    """Break one thing of a fake CaFFe folder; return the file the error must name."""
    name = NAMES["train"][0]
    if what == "garbled name":
        path = root / "sar_images/train/picture.png"
        _png(_maps(0)[0], path)
        _png(_maps(0)[1], root / "zones/train/picture_zones.png")
        _png(_maps(0)[2], root / "fronts/train/picture_front.png")
        return path
    if what == "missing front":
        path = root / "fronts/train" / f"{name}_front.png"
        path.unlink()
        return path
    if what == "stray zones":
        path = root / "zones/test/Other_2010-01-01_ERS_20_1_zones.png"
        _png(_maps(0)[1], path)
        return path
    if what == "zone value":
        path = root / "zones/train" / f"{name}_zones.png"
        zones = _maps(0)[1]
        zones[0, 0] = 200
        _png(zones, path)
        return path
    if what == "front value":
        path = root / "fronts/train" / f"{name}_front.png"
        _png(np.full((16, 16), 1, np.uint8), path)
        return path
    if what == "shape":
        path = root / "zones/train" / f"{name}_zones.png"
        _png(_maps(0)[1][:8], path)
        return path
    if what == "colour":
        path = root / "sar_images/train" / f"{name}.png"
        _png(np.zeros((16, 16, 3), np.uint8), path)
        return path
    if what == "odd file":
        path = root / "fronts/train/notes.txt"
        path.write_text("x")
        return path
    path = root / "zones/train"
    for item in path.iterdir():
        item.unlink()
    path.rmdir()
    return path


@pytest.mark.parametrize("what", ["garbled name", "missing front", "stray zones", "zone value", "front value",
                                  "shape", "colour", "odd file", "missing folder"])
def test_caffe_errors_name_the_file(tmp_path: Path, what: str) -> None:
    source = make_caffe(tmp_path / "data_raw")
    path = _breaks(source, what)
    with pytest.raises((DatasetError, ImageIOError)) as info:
        convert_caffe(source, tmp_path / "raw")
    assert info.value.path == path and "\n" not in str(info.value)
    assert not (tmp_path / "raw" / "Dataset507_CaFFe").exists()


def test_cli_convert_caffe(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = make_caffe(tmp_path / "data_raw")
    with caplog.at_level(logging.INFO):
        assert main(["convert", "caffe", str(source), "-d", "42", "--data-root", str(tmp_path / "data")]) == 0
    assert (tmp_path / "data/raw/Dataset042_CaFFe/labelsTr/front").is_dir()
    assert "front (line): background=0, front=1" in caplog.text


# --- the glacier fork's stacked task folders ----------------------------------------------------------------


def _nifti(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([1.0, 1.0, 999.0, 1.0])), path)


def make_stacked(root: Path) -> Path:
    """The fork's layout: one-slice images (X, Y, 1), labels (X, Y, 2) with front then zones."""
    for split, names in NAMES.items():
        short = "Tr" if split == "train" else "Ts"
        for seed, name in enumerate(names):
            image, zones, front = _maps(seed)
            coded = np.vectorize({0: 0, 64: 1, 127: 2, 254: 3}.get)(zones)
            _nifti(image.T[..., None].astype(np.float32), root / f"images{short}" / f"{name}_0000.nii.gz")
            stacked = np.stack([(front // 255).T, coded.T], axis=-1).astype(np.uint32)
            _nifti(stacked, root / f"labels{short}" / f"{name}.nii.gz")
    labels = {"label0": {"0": "background", "1": "front"},
              "label1": {"0": "background", "1": "stone", "2": "glacier", "3": "ocean"}}
    (root / "dataset.json").write_text(json.dumps({"name": "Task503_Glacier_mtl", "modality": {"0": "SAR"},
                                                   "labels": labels}))
    return root


def test_stacked_fork_layout_is_split_into_task_maps(tmp_path: Path) -> None:
    folder = convert_glacier_stacked(make_stacked(tmp_path / "Task503_Glacier_mtl"), tmp_path / "raw")
    assert folder.name == "Dataset503_Glacier_mtl"
    description = load_dataset_json(folder / "dataset.json")
    assert [(t.name, t.kind) for t in description.tasks] == [("front", "line"), ("zones", "area")]
    assert description.tasks[1].labels == {"background": 0, "rock": 1, "glacier": 2, "ocean": 3}
    case = load_raw_dataset(folder).case("Mapple_2008-10-13_ERS_20_2")
    image, geometry = read_image(case.image_files)
    front, _ = read_segmentation(case.label_files[0])
    zones, _ = read_segmentation(case.label_files[1])
    expected_image, expected_zones, expected_front = _maps(0)
    assert geometry.spacing == (20.0, 20.0)
    np.testing.assert_array_equal(image[0], expected_image)
    np.testing.assert_array_equal(front, expected_front // 255)
    np.testing.assert_array_equal(zones, np.vectorize({0: 0, 64: 1, 127: 2, 254: 3}.get)(expected_zones))
    assert (folder / "labelsTs/zones/COL_2016-01-02_S1_40_3.mha").is_file()
    assert verify_dataset(folder).ok


def test_stacked_layout_errors(tmp_path: Path) -> None:
    root = make_stacked(tmp_path / "Task503_Glacier_mtl")
    label = root / "labelsTr" / f"{NAMES['train'][1]}.nii.gz"
    _nifti(np.zeros((16, 16, 3), np.uint32), label)
    with pytest.raises(DatasetError, match="does not hold 2 stacked maps") as info:
        convert_glacier_stacked(root, tmp_path / "raw")
    assert info.value.path == label
    _nifti(np.full((16, 16, 2), 7, np.uint32), label)
    with pytest.raises(DatasetError, match="map 'front' holds undeclared values"):
        convert_glacier_stacked(root, tmp_path / "raw")
    (root / "dataset.json").write_text(json.dumps({"modality": {"0": "SAR"}, "labels": {"0": "background", "1": "x"}}))
    with pytest.raises(DatasetError, match="not the glacier fork's stacked layout"):
        convert_glacier_stacked(root, tmp_path / "raw")


@pytest.mark.parametrize("resolution", ["9" * 400, "20000"])
def test_caffe_pixel_size_is_finite_and_bounded(resolution: str) -> None:
    # Hundreds of digits parse as infinity; no sensor has pixels of kilometres.
    with pytest.raises(DatasetError, match="at most 10000 m"):
        caffe_pixel_size(f"Mapple_2008-10-13_ERS_{resolution}_2")
