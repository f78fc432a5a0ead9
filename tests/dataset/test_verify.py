"""Dataset verification against a corpus of broken datasets, each breaking one thing of a clean one."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from autounet.dataset.verify import (
    VerificationReport,
    require_valid_dataset,
    verify_command,
    verify_dataset,
)
from autounet.errors import DatasetError
from autounet.io import ImageGeometry, read_image, read_segmentation, write_image

Breaker = Callable[[Path], None]
# (path relative to the dataset folder, text the problem message must contain)
Expected = tuple[tuple[str, str], ...]


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every file and folder under ``root``."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            digest = f"link to {os.readlink(path)}"
        else:
            digest = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        state[str(path.relative_to(root))] = (digest, path.lstat().st_mtime_ns)
    return state


def assert_problems(report: VerificationReport, root: Path, expected: Expected) -> None:
    """Every expected problem is reported for its file, and nothing else is."""
    unmatched = [(p.path, p.message) for p in report.problems]
    for relative, text in expected:
        hits = [item for item in unmatched if item[0] == root / relative and text in item[1]]
        assert hits, f"no problem containing {text!r} for {relative}; got {report.problems}"
        unmatched.remove(hits[0])
    assert not unmatched, f"unexpected problems: {unmatched}"


# --- ways to break a dataset ----------------------------------------------------------------------------


def edit_json(**changes: object) -> Breaker:
    def edit(root: Path) -> None:
        data = json.loads((root / "dataset.json").read_text())
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        (root / "dataset.json").write_text(json.dumps(data))
    return edit


def write_text(relative: str, text: str) -> Breaker:
    def write(root: Path) -> None:
        (root / relative).write_text(text)
    return write


def delete(*relatives: str) -> Breaker:
    def remove(root: Path) -> None:
        for relative in relatives:
            path = root / relative
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return remove


def copy(source: str, target: str) -> Breaker:
    def duplicate(root: Path) -> None:
        shutil.copyfile(root / source, root / target)
    return duplicate


def truncate(relative: str) -> Breaker:
    def cut(root: Path) -> None:
        data = (root / relative).read_bytes()
        (root / relative).write_bytes(data[: len(data) // 2])
    return cut


def random_bytes(relative: str) -> Breaker:
    def scramble(root: Path) -> None:
        (root / relative).write_bytes(np.random.default_rng(1).bytes(2000))
    return scramble


def rewrite_label(case: str, transform: Callable[[np.ndarray], np.ndarray],
                  geometry: Callable[[ImageGeometry], ImageGeometry] = lambda g: g) -> Breaker:
    def rewrite(root: Path) -> None:
        path = root / "labelsTr" / f"{case}.nii.gz"
        seg, geom = read_segmentation(path)
        write_image(transform(seg), geometry(geom), path)
    return rewrite


def rewrite_image(relative: str, transform: Callable[[np.ndarray], np.ndarray],
                  geometry: Callable[[ImageGeometry], ImageGeometry] = lambda g: g) -> Breaker:
    def rewrite(root: Path) -> None:
        image, geom = read_image([root / relative])
        write_image(transform(image[0]), geometry(geom), root / relative)
    return rewrite


def write_4d(relative: str) -> Breaker:
    def write(root: Path) -> None:
        nib.save(nib.Nifti1Image(np.zeros((12, 12, 8, 2), np.float32), np.eye(4)), str(root / relative))
    return write


def make_2d_case(case: str, ending: str) -> Breaker:
    def flatten(root: Path) -> None:
        geometry = ImageGeometry.default(2)
        for channel in range(2):
            path = root / "imagesTr" / f"{case}_{channel:04d}{ending}"
            write_image(np.ones((12, 12), np.float32), geometry, path)
        write_image(np.ones((12, 12), np.uint8), geometry, root / "labelsTr" / f"{case}{ending}")
    return flatten


def grey_png(relative: str) -> Breaker:
    def write(root: Path) -> None:
        Image.fromarray(np.full((12, 12), 7, np.uint8)).save(root / relative)
    return write


def rgb_everywhere(root: Path) -> None:
    """Turn a 1-channel PNG dataset into an RGB one declaring channels R, G, B."""
    for path in sorted((root / "imagesTr").glob("*.png")):
        grey = np.asarray(Image.open(path))
        Image.fromarray(np.stack([grey, grey // 2, grey // 3], axis=-1)).save(path)
    edit_json(channel_names={"0": "R", "1": "G", "2": "B"})(root)


def combine(*breakers: Breaker) -> Breaker:
    def apply(root: Path) -> None:
        for breaker in breakers:
            breaker(root)
    return apply


def shifted_origin(geometry: ImageGeometry) -> ImageGeometry:
    return dataclasses.replace(geometry, origin=(10.0, 20.0, 30.0), nifti_header_b64=None)


def flipped_direction(geometry: ImageGeometry) -> ImageGeometry:
    direction = ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    return dataclasses.replace(geometry, direction=direction, nifti_header_b64=None)


def with_value(value: float, dtype: type = np.uint8) -> Callable[[np.ndarray], np.ndarray]:
    def put(seg: np.ndarray) -> np.ndarray:
        seg = seg.astype(dtype)
        seg[-1, -1, -1] = value
        return seg
    return put


def with_nan(image: np.ndarray) -> np.ndarray:
    image = image.copy()
    image[0, 0, 0] = np.nan
    return image


NII = ".nii.gz"
PNG_OPTIONS = {"ending": ".png", "shape": (12, 12), "spacing": (1.0, 1.0), "num_channels": 1}

# id, tiny_dataset options, breaker, expected problems
CORPUS: list[tuple[str, dict, Breaker, Expected]] = [
    ("json-invalid", {}, write_text("dataset.json", "{not json"), (("dataset.json", "not valid JSON"),)),
    ("json-missing-key", {}, edit_json(file_ending=None),
     (("dataset.json", "lacks the required key(s) file_ending"),)),
    ("json-bad-label-value", {}, edit_json(labels={"background": 0, "organ": "one"}),
     (("dataset.json", "label 'organ' has value 'one'"),)),
    ("json-labels-not-consecutive", {}, edit_json(labels={"background": 0, "organ": 1, "corner": 3}),
     (("dataset.json", "consecutive"),)),
    ("json-channel-index-not-a-number", {}, edit_json(channel_names={"\u00b2": "CT", "1": "MR1"}),
     (("dataset.json", "must map an index to a name"),)),
    ("json-v1-format", {}, write_text("dataset.json", json.dumps(
        {"name": "x", "modality": {"0": "CT"}, "labels": {"0": "background"}, "numTraining": 3,
         "training": []})), (("dataset.json", "nnU-Net v1"),)),
    ("json-missing", {}, delete("dataset.json"), (("dataset.json", "missing dataset.json"),)),
    ("missing-imagesTr", {}, delete("imagesTr"), (("imagesTr", "missing folder imagesTr/"),)),
    ("missing-labelsTr", {}, delete("labelsTr"), (("labelsTr", "missing folder labelsTr/"),)),
    ("missing-channel", {}, delete(f"imagesTr/case_001_0001{NII}"),
     ((f"imagesTr/case_001_0001{NII}", "missing channel 1 ('MR1') of case 'case_001'"),)),
    ("undeclared-channel", {}, copy(f"imagesTr/case_001_0001{NII}", f"imagesTr/case_001_0002{NII}"),
     ((f"imagesTr/case_001_0002{NII}", "channel 2 is not declared"),)),
    ("grey-png-where-rgb-declared", PNG_OPTIONS,
     combine(rgb_everywhere, grey_png("imagesTr/case_001_0000.png")),
     (("imagesTr/case_001_0000.png",
       "has 1 channel(s) after reading 1 file(s) but dataset.json declares 3"),)),
    ("image-without-label", {}, delete(f"labelsTr/case_001{NII}"),
     ((f"labelsTr/case_001{NII}", "case 'case_001' has images but no label file"),)),
    ("label-without-image", {}, copy(f"labelsTr/case_001{NII}", f"labelsTr/case_777{NII}"),
     ((f"labelsTr/case_777{NII}", "label without images"),)),
    ("label-named-like-channel", {}, combine(copy(f"labelsTr/case_001{NII}", f"labelsTr/case_001_0000{NII}"),
                                             delete(f"labelsTr/case_001{NII}")),
     ((f"labelsTr/case_001{NII}", "has images but no label file"),
      (f"labelsTr/case_001_0000{NII}", f"rename it to case_001{NII}"))),
    ("wrong-ending", {}, copy(f"imagesTr/case_001_0000{NII}", "imagesTr/case_001_0000.nrrd"),
     (("imagesTr/case_001_0000.nrrd", "wrong file ending '.nrrd'"),)),
    ("ending-letter-case", {}, copy(f"labelsTr/case_001{NII}", "labelsTr/case_001.NII.GZ"),
     (("labelsTr/case_001.NII.GZ", "differs in letter case"),)),
    ("unknown-file", {}, write_text("imagesTr/notes.txt", "hello"),
     (("imagesTr/notes.txt", f"not a '{NII}' file"),)),
    ("no-channel-suffix", {}, copy(f"imagesTr/case_001_0000{NII}", f"imagesTr/case_001{NII}"),
     ((f"imagesTr/case_001{NII}", "name does not follow {case}_{NNNN}"),)),
    ("truncated-image", {}, truncate(f"imagesTr/case_001_0000{NII}"),
     ((f"imagesTr/case_001_0000{NII}", "cannot read image"),)),
    ("random-bytes-label", {}, random_bytes(f"labelsTr/case_002{NII}"),
     ((f"labelsTr/case_002{NII}", "cannot read image"),)),
    ("undeclared-label-value", {}, rewrite_label("case_002", with_value(5)),
     ((f"labelsTr/case_002{NII}", "label values [5] not declared in dataset.json"),)),
    ("float-label-value", {}, rewrite_label("case_002", with_value(0.5, np.float32)),
     ((f"labelsTr/case_002{NII}", "non-integer label values (e.g. 0.5)"),)),
    ("label-shape-mismatch", {}, rewrite_label("case_000", lambda s: s[:, :, :10]),
     ((f"labelsTr/case_000{NII}", "label shape (8, 12, 10) differs from image shape (8, 12, 12)"),)),
    ("channel-shape-mismatch", {}, rewrite_image(f"imagesTr/case_000_0001{NII}", lambda a: a[:, :10, :]),
     ((f"imagesTr/case_000_0001{NII}", "channel shape (8, 10, 12) differs"),)),
    ("label-spacing-mismatch", {}, rewrite_label("case_000", lambda s: s,
                                                 lambda g: g.with_spacing((2.0, 1.0, 1.0))),
     ((f"labelsTr/case_000{NII}", "label geometry differs from case_000_0000.nii.gz: spacing"),)),
    ("label-direction-mismatch", {}, rewrite_label("case_000", lambda s: s, flipped_direction),
     ((f"labelsTr/case_000{NII}", "direction differs"),)),
    ("channel-origin-mismatch", {},
     rewrite_image(f"imagesTr/case_001_0001{NII}", lambda a: a, shifted_origin),
     ((f"imagesTr/case_001_0001{NII}", "channel geometry differs from case_001_0000.nii.gz: origin"),)),
    ("nan-in-image", {}, rewrite_image(f"imagesTr/case_002_0000{NII}", with_nan),
     ((f"imagesTr/case_002_0000{NII}", "NaN or Inf"),)),
    ("4d-image", {}, write_4d(f"imagesTr/case_002_0001{NII}"),
     ((f"imagesTr/case_002_0001{NII}", "4D image"),)),
    ("mixed-dimensionality", {"ending": ".nrrd"}, make_2d_case("case_002", ".nrrd"),
     (("imagesTr/case_002_0000.nrrd", "case 'case_002' is 2D but 2 of 3 training cases are 3D"),)),
    ("empty-dataset", {}, combine(delete("imagesTr", "labelsTr"), lambda r: (r / "imagesTr").mkdir(),
                                  lambda r: (r / "labelsTr").mkdir(), edit_json(numTraining=0)),
     (("imagesTr", "empty dataset"),)),
    ("duplicate-case-id", {}, combine(copy(f"imagesTr/case_000_0000{NII}", f"imagesTr/Case_000_0000{NII}"),
                                      copy(f"imagesTr/case_000_0001{NII}", f"imagesTr/Case_000_0001{NII}"),
                                      copy(f"labelsTr/case_000{NII}", f"labelsTr/Case_000{NII}"),
                                      edit_json(numTraining=4)),
     ((f"imagesTr/case_000_0000{NII}",
       "duplicate case id: 'case_000' and 'Case_000' differ only in letter case"),
      (f"labelsTr/case_000{NII}", "duplicate case id"))),
    ("broken-symlink", {}, lambda r: (r / "labelsTr" / f"case_003{NII}").symlink_to(r / "nowhere"),
     ((f"labelsTr/case_003{NII}", "broken symbolic link"),)),
    ("numTraining-wrong", {}, edit_json(numTraining=5),
     (("dataset.json", "numTraining is 5 but imagesTr/ holds 3 case(s)"),)),
    ("imagesTs-broken", {}, combine(lambda r: (r / "imagesTs").mkdir(),
                                    copy(f"imagesTr/case_000_0000{NII}", f"imagesTs/test_000_0000{NII}"),
                                    copy(f"imagesTr/case_000_0000{NII}", f"imagesTs/test_001_0000{NII}"),
                                    truncate(f"imagesTs/test_001_0000{NII}"),
                                    copy(f"imagesTr/case_000_0001{NII}", f"imagesTs/test_001_0001{NII}"),
                                    write_text("imagesTs/readme.md", "x")),
     ((f"imagesTs/test_000_0001{NII}", "missing channel 1 ('MR1') of case 'test_000'"),
      (f"imagesTs/test_001_0000{NII}", "cannot read image"),
      ("imagesTs/readme.md", f"not a '{NII}' file"))),
]


@pytest.fixture(params=CORPUS, ids=[entry[0] for entry in CORPUS])
def broken_dataset(request: pytest.FixtureRequest,
                   tiny_dataset: Callable[..., Path]) -> tuple[Path, Expected]:
    """A tiny dataset with one thing broken, and the problems verification must report."""
    _, options, breaker, expected = request.param
    root = tiny_dataset(**options)
    breaker(root)
    return root, expected


def test_broken_dataset_reports_exactly_its_problems(broken_dataset: tuple[Path, Expected]) -> None:
    root, expected = broken_dataset
    before = snapshot(root)
    report = verify_dataset(root)
    assert not report.ok
    assert_problems(report, root, expected)
    assert all("\n" not in str(problem) for problem in report.problems)
    assert snapshot(root) == before


@pytest.mark.parametrize("breaker", [write_text("dataset.json", "[1, 2]"), edit_json(channel_names={})])
def test_malformed_dataset_json_stops_verification(tiny_dataset: Callable[..., Path],
                                                   breaker: Breaker) -> None:
    root = tiny_dataset()
    breaker(root)
    delete(f"labelsTr/case_000{NII}")(root)  # would be a problem, but cannot be checked without dataset.json
    report = verify_dataset(root)
    assert [p.path for p in report.problems] == [root / "dataset.json"]
    assert report.summary is None


def test_clean_dataset_is_ok_with_summary(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset()
    before = snapshot(root)
    report = verify_dataset(root)
    assert report.ok and report.problems == () and report.warnings == ()
    summary = report.summary
    assert summary is not None
    assert (summary.name, summary.num_cases, summary.num_test_cases) == ("Dataset999_Tiny", 3, 0)
    assert (summary.num_channels, summary.channel_names, summary.ndim) == (2, ("CT", "MR1"), 3)
    assert summary.median_shape == summary.min_shape == summary.max_shape == (8, 12, 12)
    assert summary.median_spacing == pytest.approx((3.0, 1.0, 1.0))
    assert summary.cases_per_label == {"background": 3, "organ": 3, "corner": 3}
    assert snapshot(root) == before


@pytest.mark.parametrize("ending", [".nrrd", ".mhd", ".nhdr", ".tif"])
def test_clean_dataset_in_other_formats_is_ok(tiny_dataset: Callable[..., Path], ending: str) -> None:
    # .mhd/.nhdr keep their pixel data and 3D TIFF its spacing in companion files: not stray files.
    report = verify_dataset(tiny_dataset(ending=ending))
    assert report.ok, report.problems


def test_rgb_png_supplies_three_channels(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset(**PNG_OPTIONS)
    rgb_everywhere(root)
    report = verify_dataset(root)
    assert report.ok, report.problems
    assert report.summary is not None and report.summary.num_channels == 3


def test_test_cases_are_counted(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset()
    shutil.copytree(root / "imagesTr", root / "imagesTs")
    report = verify_dataset(root)
    assert report.ok, report.problems
    assert report.summary is not None and report.summary.num_test_cases == 3


@pytest.mark.parametrize(("options", "breaker", "relative", "text"), [
    ({}, rewrite_label("case_001", np.zeros_like), f"labelsTr/case_001{NII}", "no foreground"),
    ({}, rewrite_image(f"imagesTr/case_001_0001{NII}", np.zeros_like), f"imagesTr/case_001_0001{NII}",
     "image is constant"),
    ({"spacing": (12.0, 1.0, 1.0)}, lambda r: None, "", "very anisotropic"),
    ({}, lambda r: (r / "imagesTr" / "old").mkdir(), "imagesTr/old", "sub-folder in imagesTr/ is ignored"),
])
def test_warnings_do_not_fail(tiny_dataset: Callable[..., Path], options: dict, breaker: Breaker,
                              relative: str, text: str) -> None:
    root = tiny_dataset(**options)
    breaker(root)
    report = verify_dataset(root)
    assert report.ok, report.problems
    assert any(w.path == root / relative and text in w.message for w in report.warnings), report.warnings


def test_several_problems_are_reported_at_once(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset()
    combine(delete(f"imagesTr/case_001_0001{NII}"), rewrite_label("case_002", with_value(5)),
            edit_json(numTraining=7))(root)
    report = verify_dataset(root)
    assert_problems(report, root, ((f"imagesTr/case_001_0001{NII}", "missing channel"),
                                   (f"labelsTr/case_002{NII}", "not declared"),
                                   ("dataset.json", "numTraining is 7")))


def test_worker_processes_give_the_same_report(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset()
    combine(truncate(f"imagesTr/case_000_0000{NII}"), rewrite_label("case_002", with_value(5)))(root)
    assert verify_dataset(root, num_processes=2) == verify_dataset(root, num_processes=1)


def test_missing_folder_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    report = verify_dataset(tmp_path / "nowhere")
    assert not report.ok and "dataset folder not found" in report.problems[0].message


def test_require_valid_dataset(tiny_dataset: Callable[..., Path]) -> None:
    root = tiny_dataset()
    require_valid_dataset(root, num_processes=1)
    combine(delete(f"labelsTr/case_001{NII}"), edit_json(numTraining=2))(root)
    with pytest.raises(DatasetError) as caught:
        require_valid_dataset(root, num_processes=1)
    message = str(caught.value)
    assert "2 problems, first: " in message and "run 'autounet verify -d 999' for the full list" in message
    assert "\n" not in message


def test_verify_command() -> None:
    assert verify_command(Path("/data/raw/Dataset042_Liver")) == "autounet verify -d 42"
    assert verify_command(Path("/data/my set")) == "autounet verify -d '/data/my set'"
