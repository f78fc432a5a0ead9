"""Synthetic example datasets: raw layout, readability, determinism, per-kind properties, safe writing."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from autounet.dataset import list_test_cases, load_raw_dataset, synthetic
from autounet.dataset.synthetic import (
    EXAMPLE_IDS,
    EXAMPLE_KINDS,
    EXAMPLE_NAMES,
    ExampleKind,
    ExampleOptions,
    example_info,
    generate_example,
)
from autounet.errors import DatasetError
from autounet.io import read_image, read_segmentation

TINY_SHAPES: dict[ExampleKind, tuple[int, ...]] = {
    "mr": (12, 24, 24), "ct": (12, 24, 24), "multichannel": (12, 24, 24), "png2d": (32, 40),
}
NUM_CASES, NUM_TEST = 4, 1


def tiny(kind: ExampleKind, **changes: object) -> ExampleOptions:
    values: dict[str, object] = {"num_cases": NUM_CASES, "num_test_cases": NUM_TEST,
                                 "shape": TINY_SHAPES[kind]}
    values.update(changes)
    return ExampleOptions(**values)  # type: ignore[arg-type]


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[ExampleKind, Path]:
    raw = tmp_path_factory.mktemp("raw")
    return {kind: generate_example(kind, raw, tiny(kind)) for kind in EXAMPLE_KINDS}


@pytest.mark.parametrize("kind", EXAMPLE_KINDS)
def test_raw_layout_and_dataset_json(generated: dict[ExampleKind, Path], kind: ExampleKind) -> None:
    folder = generated[kind]
    assert folder.name == f"Dataset{EXAMPLE_IDS[kind]:03d}_{EXAMPLE_NAMES[kind]}"
    data = json.loads((folder / "dataset.json").read_text())
    for key in ("channel_names", "labels", "numTraining", "file_ending", "name", "description"):
        assert key in data
    assert data["numTraining"] == NUM_CASES
    ending = data["file_ending"]
    values = sorted(data["labels"].values())
    assert values == list(range(len(values)))
    train_ids = sorted(p.name[: -len(ending)] for p in (folder / "labelsTr").iterdir())
    test_ids = sorted(p.name[: -len(ending)] for p in (folder / "labelsTs").iterdir())
    assert len(train_ids) == NUM_CASES and len(test_ids) == NUM_TEST
    assert not set(train_ids) & set(test_ids)
    for split, ids in (("Tr", train_ids), ("Ts", test_ids)):
        for case_id in ids:
            for channel in range(len(data["channel_names"])):
                assert (folder / f"images{split}" / f"{case_id}_{channel:04d}{ending}").is_file()
    leftovers = [p.name for p in folder.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers


def test_kinds_use_their_formats(generated: dict[ExampleKind, Path]) -> None:
    endings = {kind: json.loads((folder / "dataset.json").read_text())["file_ending"]
               for kind, folder in generated.items()}
    assert endings == {"mr": ".nii.gz", "ct": ".nii.gz", "multichannel": ".mha", "png2d": ".png"}
    channels = {kind: json.loads((folder / "dataset.json").read_text())["channel_names"]
                for kind, folder in generated.items()}
    assert channels["mr"] == {"0": "T1"} and channels["ct"] == {"0": "CT"}
    assert channels["multichannel"] == {"0": "T1", "1": "T2"} and channels["png2d"] == {"0": "grey"}


@pytest.mark.parametrize("kind", EXAMPLE_KINDS)
def test_loadable_and_readable(generated: dict[ExampleKind, Path], kind: ExampleKind) -> None:
    dataset = load_raw_dataset(generated[kind])
    description = dataset.description
    assert len(dataset.cases) == NUM_CASES
    assert len(list_test_cases(dataset.root, description.file_ending)) == NUM_TEST
    for case in dataset.cases:
        image, geometry = read_image(case.image_files)
        assert case.label_file is not None
        labels, label_geometry = read_segmentation(case.label_file)
        assert image.shape == (description.num_channels, *labels.shape)
        assert geometry.ndim == len(TINY_SHAPES[kind])
        assert geometry.mismatch(label_geometry) is None
        assert set(np.unique(labels).tolist()) <= description.allowed_label_values


@pytest.mark.parametrize("kind", EXAMPLE_KINDS)
def test_every_foreground_label_in_most_cases(generated: dict[ExampleKind, Path], kind: ExampleKind) -> None:
    dataset = load_raw_dataset(generated[kind])
    present = {label: 0 for label in dataset.description.foreground_labels}
    for case in dataset.cases:
        assert case.label_file is not None
        values = set(np.unique(read_segmentation(case.label_file)[0]).tolist())
        for label in present:
            present[label] += label in values
    assert all(count >= math.ceil(0.75 * NUM_CASES) for count in present.values()), present


@pytest.mark.parametrize("kind", EXAMPLE_KINDS)
def test_same_seed_gives_identical_bytes(tmp_path: Path, kind: ExampleKind) -> None:
    first = generate_example(kind, tmp_path / "a", tiny(kind, num_cases=2))
    second = generate_example(kind, tmp_path / "b", tiny(kind, num_cases=2))
    assert file_hashes(first) == file_hashes(second)


def test_different_seeds_differ(tmp_path: Path) -> None:
    first = file_hashes(generate_example("mr", tmp_path / "a", tiny("mr", num_cases=2, num_test_cases=0)))
    second = file_hashes(generate_example("mr", tmp_path / "b", tiny("mr", num_cases=2, num_test_cases=0,
                                                                     seed=1)))
    assert first.keys() == second.keys()
    assert all(first[name] != second[name] for name in first if name != "dataset.json")


def test_case_does_not_depend_on_case_count(tmp_path: Path) -> None:
    few = file_hashes(generate_example("ct", tmp_path / "a", tiny("ct", num_cases=1, num_test_cases=0)))
    many = file_hashes(generate_example("ct", tmp_path / "b", tiny("ct", num_cases=3, num_test_cases=0)))
    assert few["imagesTr/ct_000_0000.nii.gz"] == many["imagesTr/ct_000_0000.nii.gz"]
    assert few["labelsTr/ct_000.nii.gz"] == many["labelsTr/ct_000.nii.gz"]


def test_mr_is_anisotropic_with_varying_in_plane_spacing(generated: dict[ExampleKind, Path]) -> None:
    dataset = load_raw_dataset(generated["mr"])
    spacings = [read_image(case.image_files)[1].spacing for case in dataset.cases]
    for spacing in spacings:
        assert spacing[0] == pytest.approx(3.0)
        assert spacing[1] == pytest.approx(spacing[2])
        assert 0.7 < spacing[1] < 0.9
        assert spacing[0] / spacing[1] > 3.0
    assert len({round(s[1], 4) for s in spacings}) > 1
    geometry = read_image(dataset.cases[0].image_files)[1]
    assert geometry.world_frame == "RAS" and any(abs(v) > 1.0 for v in geometry.origin)


def test_mr_has_exact_zero_air_border(generated: dict[ExampleKind, Path]) -> None:
    for case in load_raw_dataset(generated["mr"]).cases:
        image = read_image(case.image_files)[0][0]
        for axis in range(3):
            assert not image.take([0, -1], axis=axis).any()
        nonzero = np.argwhere(image != 0)
        assert nonzero.size and (nonzero.min(axis=0) > 0).all()
        assert (nonzero.max(axis=0) < np.asarray(image.shape) - 1).all()
        assert case.label_file is not None
        labels = read_segmentation(case.label_file)[0]
        assert (image[labels > 0] > 0).mean() > 0.99


def test_ct_is_int16_hounsfield(generated: dict[ExampleKind, Path]) -> None:
    for case in load_raw_dataset(generated["ct"]).cases:
        assert nib.load(str(case.image_files[0])).get_data_dtype() == np.int16
        image = read_image(case.image_files)[0][0]
        assert case.label_file is not None
        labels = read_segmentation(case.label_file)[0]
        assert image.min() >= -1024 and image.max() <= 3071
        assert np.percentile(image, 1) < -900  # air around the body
        assert 30 < np.median(image[labels == 1]) < 110
        assert 180 < np.median(image[labels == 2]) < 420


def test_multichannel_channels_differ(generated: dict[ExampleKind, Path]) -> None:
    for case in load_raw_dataset(generated["multichannel"]).cases:
        image = read_image(case.image_files)[0]
        assert image.shape[0] == 2
        assert case.label_file is not None
        labels = read_segmentation(case.label_file)[0]
        gland, lesion = labels == 1, labels == 2
        if gland.any() and lesion.any():
            # Lesion is dark on T2 only: the second channel carries information the first lacks.
            t1_ratio = image[0][lesion].mean() / image[0][gland].mean()
            t2_ratio = image[1][lesion].mean() / image[1][gland].mean()
            assert t2_ratio < t1_ratio


def test_png2d_shapes_and_modes(generated: dict[ExampleKind, Path]) -> None:
    for case in load_raw_dataset(generated["png2d"]).cases:
        with Image.open(case.image_files[0]) as picture:
            assert picture.mode == "L" and picture.size == (40, 32)
        assert case.label_file is not None
        with Image.open(case.label_file) as label:
            assert label.mode == "L" and label.size == (40, 32)
        image, geometry = read_image(case.image_files)
        assert image.shape == (1, 32, 40) and geometry.spacing == (1.0, 1.0)


def test_existing_dataset_is_protected(tmp_path: Path) -> None:
    options = tiny("png2d", num_cases=1, num_test_cases=0)
    folder = generate_example("png2d", tmp_path, options)
    before = file_hashes(folder)
    assert generate_example("png2d", tmp_path, options) == folder  # the same example: kept as it is
    with pytest.raises(DatasetError, match="--overwrite"):
        generate_example("png2d", tmp_path, tiny("png2d", num_cases=1, num_test_cases=0, seed=3))
    assert file_hashes(folder) == before
    generate_example("png2d", tmp_path, tiny("png2d", num_cases=1, num_test_cases=0, seed=3), overwrite=True)
    assert file_hashes(folder) != before
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]


def test_interrupted_generation_leaves_no_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = tiny("png2d", num_cases=2, num_test_cases=0)
    folder = generate_example("png2d", tmp_path, options)
    before = file_hashes(folder)
    calls = []

    def failing_write(*args: object) -> None:
        calls.append(args)
        if len(calls) % 2 == 0:  # the second case of every generation
            raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "_write_case", failing_write)
    with pytest.raises(KeyboardInterrupt):
        generate_example("png2d", tmp_path, options, overwrite=True)
    assert file_hashes(folder) == before
    with pytest.raises(KeyboardInterrupt):
        generate_example("png2d", tmp_path / "fresh", options)
    assert not any((tmp_path / "fresh").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder.name, "fresh"])


def test_non_dataset_folder_is_not_replaced(tmp_path: Path) -> None:
    keep = tmp_path / "Dataset504_ExamplePNG" / "notes.txt"
    keep.parent.mkdir()
    keep.write_text("mine")
    with pytest.raises(DatasetError, match="--overwrite"):
        generate_example("png2d", tmp_path, tiny("png2d", num_cases=1))
    assert keep.read_text() == "mine"


def test_dataset_id_clash_and_override(tmp_path: Path) -> None:
    (tmp_path / "Dataset501_Brains").mkdir()
    with pytest.raises(DatasetError, match="already used"):
        generate_example("mr", tmp_path, tiny("mr", num_cases=1))
    folder = generate_example("mr", tmp_path, tiny("mr", num_cases=1, num_test_cases=0, dataset_id=42))
    assert folder == tmp_path / "Dataset042_ExampleMR"
    assert not (folder / "imagesTs").exists()


@pytest.mark.parametrize("changes", [
    {"shape": (24, 24)}, {"shape": (4, 24, 24)}, {"shape": (12, 12, 24)}, {"num_cases": 0},
    {"num_test_cases": -1}, {"seed": -1}, {"dataset_id": 1000},
])
def test_invalid_options_are_refused(tmp_path: Path, changes: dict[str, object]) -> None:
    with pytest.raises(DatasetError):
        generate_example("mr", tmp_path, tiny("mr", **changes))
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_example_info_defaults() -> None:
    info = example_info("mr")
    assert info.folder_name == "Dataset501_ExampleMR" and info.shape == (40, 80, 80)
    assert info.spacing == (3.0, 0.8, 0.8) and info.labels["background"] == 0
    assert example_info("png2d").shape == (128, 128)


def test_a_shape_beyond_the_voxel_bound_is_refused_before_anything_is_generated() -> None:
    # 2048^3 voxels per case (each generated as several float arrays) is a typo, not a request.
    with pytest.raises(DatasetError, match="more than 134217728 voxels"):
        example_info("mr", ExampleOptions(shape=(2048, 2048, 2048)))
