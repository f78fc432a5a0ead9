"""The synthetic SAR glacier example: two label maps, speckle, sensor pixel sizes, determinism, clean verify."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from autounet.cli.main import main
from autounet.dataset import load_dataset_json, load_raw_dataset
from autounet.dataset._synthetic_sar import sar_case
from autounet.dataset.synthetic import SarExampleOptions, generate_sar_example
from autounet.dataset.verify import verify_dataset
from autounet.errors import DatasetError
from autounet.io import read_image

TINY = SarExampleOptions(num_cases=6, num_test_cases=2, shape=(40, 48))


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_example_verifies_and_has_both_task_maps(tmp_path: Path) -> None:
    folder = generate_sar_example(tmp_path / "raw", TINY)
    assert folder.name == "Dataset506_ExampleSAR"
    report = verify_dataset(folder)
    assert report.ok and not report.warnings, (report.problems, report.warnings)
    description = load_dataset_json(folder / "dataset.json")
    assert [(t.name, t.kind) for t in description.tasks] == [("zones", "area"), ("front", "line")]
    dataset = load_raw_dataset(folder)
    assert len(dataset.cases) == 6 and all(len(c.label_files) == 2 for c in dataset.cases)
    assert len(list((folder / "labelsTs" / "front").iterdir())) == 2
    spacings = {read_image(c.image_files)[1].spacing for c in dataset.cases}
    assert spacings <= {(7.0, 7.0), (20.0, 20.0), (40.0, 40.0)} and len(spacings) >= 2


def test_same_options_give_identical_files(tmp_path: Path) -> None:
    first = _digest(generate_sar_example(tmp_path / "a", TINY))
    second = _digest(generate_sar_example(tmp_path / "b", TINY))
    assert first == second
    other = _digest(generate_sar_example(tmp_path / "c", SarExampleOptions(num_cases=6, num_test_cases=2,
                                                                           shape=(40, 48), seed=1)))
    assert other != first


@pytest.mark.parametrize("index", range(6))
def test_case_zones_front_and_speckle(index: int) -> None:
    case = sar_case(np.random.default_rng([0, 17, index]), (40, 48))
    assert case.image.shape == case.zones.shape == case.front.shape == (40, 48)
    assert set(np.unique(case.zones)) <= {0, 1, 2, 3} and {2, 3} <= set(np.unique(case.zones))
    # The front: glacier pixels with an ocean 4-neighbour, exactly, and nothing else.
    ocean = case.zones == 3
    near_ocean = ndimage.binary_dilation(ocean, structure=ndimage.generate_binary_structure(2, 1))
    np.testing.assert_array_equal(case.front.astype(bool), (case.zones == 2) & near_ocean)
    assert case.front.sum() > 0
    # Speckle: zones differ in mean backscatter, and vary within (multiplicative noise, not a flat fill).
    image = case.image.astype(float)
    assert image[case.zones == 1].mean() > image[case.zones == 2].mean() > image[case.zones == 3].mean()
    assert image[case.zones == 3].std() > 0.2 * image[case.zones == 3].mean()
    assert case.image.dtype == np.uint8 and case.pixel_size in (7.0, 20.0, 40.0)


def test_bad_options_are_refused(tmp_path: Path) -> None:
    for options in (SarExampleOptions(num_cases=0), SarExampleOptions(shape=(16, 64)), SarExampleOptions(seed=-1)):
        with pytest.raises(DatasetError):
            generate_sar_example(tmp_path, options)


def test_cli_example_sar(tmp_path: Path) -> None:
    argv = ["example", "sar", "--num-cases", "3", "--num-test-cases", "1", "--shape", "32", "40",
            "--data-root", str(tmp_path)]
    assert main(argv) == 0
    folder = tmp_path / "raw" / "Dataset506_ExampleSAR"
    assert load_dataset_json(folder / "dataset.json").num_training == 3
    assert read_image([folder / "imagesTs" / "sar_0003_0000.mha"])[0].shape == (1, 32, 40)
    assert main(["example", "sar", "--shape", "32", "--data-root", str(tmp_path)]) != 0


def test_multitask_trains_predicts_every_map_and_evaluates_fronts_end_to_end(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = ["--data-root", str(tmp_path)]
    assert main(["example", "sar", "--num-cases", "5", "--num-test-cases", "2", "--shape", "32", "32", *root]) == 0
    assert main(["plan-and-preprocess", "-d", "506", *root]) == 0
    segs = sorted((tmp_path / "preprocessed" / "Dataset506_ExampleSAR").glob("2d_*/sar_0000_seg.npy"))
    assert len(segs) == 1
    seg = np.load(segs[0])
    assert seg.shape[0] == 2 and set(np.unique(seg[1])) <= {-1, 0, 1}
    assert main(["train", "-d", "506", "-c", "2d", "-f", "0", "--epochs", "1", "--iterations-per-epoch", "2",
                 "--validation-iterations", "1", "--num-workers", "0", *root]) == 0
    fold = next((tmp_path / "results" / "Dataset506_ExampleSAR").glob("2d*/fold_0"))
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert set(summary["tasks"]) == {"zones", "front"} and "mde" in summary["tasks"]["front"]
    assert sorted(p.name for p in (fold / "validation").iterdir() if p.is_dir()) == ["front", "zones"]
    raw = tmp_path / "raw" / "Dataset506_ExampleSAR"
    out = tmp_path / "pred"
    assert main(["predict", "-d", "506", "-c", "2d", "-f", "0", "-i", str(raw / "imagesTs"), "-o", str(out),
                 "--disable-tta", *root]) == 0
    for task in ("zones", "front"):
        predicted = sorted(p.name for p in (out / task).iterdir() if p.name.endswith(".mha"))
        assert predicted == sorted(p.name for p in (raw / "labelsTs" / task).iterdir())
    capsys.readouterr()
    assert main(["evaluate", str(raw / "labelsTs"), str(out), "-j", str(raw / "dataset.json")]) == 0
    printed = capsys.readouterr().out
    assert "zones" in printed and "front" in printed and "MDE" in printed
