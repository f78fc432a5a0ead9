"""Multi-task prediction options end to end on the tiny SAR example: the line source (head or boundary), per-task
postprocessing decided by find-best, derived line tasks and fused labels as plan data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autounet.cli.main import main
from autounet.dataset import OutputLayout, load_dataset_json
from autounet.errors import ConfigError
from autounet.inference._task_maps import TaskOutputs
from autounet.io import read_segmentation
from autounet.postprocessing import PostprocessingPlan, TaskPostprocessing, apply_postprocessing
from autounet.postprocessing.lines import boundary_between

DATASET = "Dataset506_ExampleSAR"
DERIVED = {"derived_lines": [{"name": "glacier_rock",
                              "boundary": {"task": "zones", "inside": ["glacier"], "outside": ["rock", "background"]}}]}
FUSED = {"fused_lines": [{"line": "front", "into": "zones", "restore": "glacier", "width": 3}]}
TRAIN = ["-f", "0", "--epochs", "1", "--iterations-per-epoch", "2", "--validation-iterations", "1",
         "--num-workers", "0"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SAR example planned, with two more configurations in plans.json (a derived line, fused labels),
    each trained for two iterations on fold 0."""
    root = tmp_path_factory.mktemp("mt")
    data_root = ["--data-root", str(root)]
    assert main(["example", "sar", "--num-cases", "5", "--num-test-cases", "2", "--shape", "32", "32",
                 *data_root]) == 0
    assert main(["plan-and-preprocess", "-d", "506", *data_root]) == 0
    plans_file = root / "preprocessed" / DATASET / "plans.json"
    plans = json.loads(plans_file.read_text())
    plans["configurations"]["2d_derived"] = {"inherits_from": "2d", "label_derivation": DERIVED}
    plans["configurations"]["2d_fused"] = {"inherits_from": "2d", "label_derivation": FUSED}
    plans_file.write_text(json.dumps(plans))
    assert main(["preprocess", "-d", "506", "-c", "2d_derived", "2d_fused", *data_root]) == 0
    for configuration in ("2d", "2d_derived", "2d_fused"):
        assert main(["train", "-d", "506", "-c", configuration, *TRAIN, *data_root]) == 0
    return root


def _predict(root: Path, out: Path, *extra: str, configuration: str = "2d") -> int:
    images = root / "raw" / DATASET / "imagesTs"
    return main(["predict", "-d", "506", "-c", configuration, "-f", "0", "-i", str(images), "-o", str(out),
                 "--disable-tta", "--data-root", str(root), *extra])


def _maps(folder: Path) -> dict[str, np.ndarray]:
    return {path.name: read_segmentation(path)[0] for path in sorted(folder.glob("*.mha"))}


def test_derived_data_lies_in_folders_of_their_own(root: Path) -> None:
    folders = sorted(p.name for p in (root / "preprocessed" / DATASET).iterdir() if p.is_dir())
    assert len(folders) == 3 and sum("_labels" in name for name in folders) == 2
    maps = sorted(np.load(path).ndim for path in root.glob(f"preprocessed/{DATASET}/2d_*_labels*/sar_0000_seg.npy"))
    assert maps == [2, 3]  # fused: one 2D map; derived line: three maps stacked


def test_line_source_boundary_takes_the_front_from_the_zones(root: Path, tmp_path: Path) -> None:
    assert _predict(root, tmp_path / "boundary", "--line-source", "boundary") == 0
    zones, fronts = _maps(tmp_path / "boundary" / "zones"), _maps(tmp_path / "boundary" / "front")
    assert set(zones) == set(fronts) and len(zones) == 2
    for name, front in fronts.items():
        np.testing.assert_array_equal(front, boundary_between(zones[name], 2, 3).astype(front.dtype))
    assert _predict(root, tmp_path / "head") == 0  # the same zones; the front thinned from its own head
    for name, zone_map in _maps(tmp_path / "head" / "zones").items():
        np.testing.assert_array_equal(zone_map, zones[name])


def test_per_task_postprocessing_is_applied_to_its_task_only(root: Path, tmp_path: Path) -> None:
    assert _predict(root, tmp_path / "plain", "--no-postprocessing") == 0
    plan = {"schema_version": 1, "tasks": {"zones": {"schema_version": 1, "largest_component_labels": [1, 2, 3]}}}
    (tmp_path / "pp.json").write_text(json.dumps(plan))
    assert _predict(root, tmp_path / "post", "--postprocessing", str(tmp_path / "pp.json")) == 0
    expected = PostprocessingPlan(largest_component_labels=(1, 2, 3))
    post = _maps(tmp_path / "post" / "zones")
    for name, zone_map in _maps(tmp_path / "plain" / "zones").items():
        np.testing.assert_array_equal(post[name], apply_postprocessing(zone_map, expected))
    for name, front in _maps(tmp_path / "plain" / "front").items():
        np.testing.assert_array_equal(_maps(tmp_path / "post" / "front")[name], front)


def test_postprocessing_that_does_not_fit_the_tasks_is_refused(root: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "single.json").write_text(json.dumps({"schema_version": 1, "largest_component_foreground": True}))
    assert _predict(root, tmp_path / "a", "--postprocessing", str(tmp_path / "single.json")) != 0
    assert "names each task" in capsys.readouterr().err
    (tmp_path / "unknown.json").write_text(json.dumps({"schema_version": 1, "tasks": {"rocks": {}}}))
    assert _predict(root, tmp_path / "b", "--postprocessing", str(tmp_path / "unknown.json")) != 0
    assert "rocks" in capsys.readouterr().err


def test_find_best_decides_postprocessing_per_task_and_predict_uses_it(root: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["find-best", "-d", "506", "-f", "0", "--data-root", str(root)]) == 0
    printed = capsys.readouterr().out
    assert "postprocessing of zones" in printed and "2d_fused" in printed  # fused: no zones/ validation maps
    saved = json.loads((root / "results" / DATASET / "find_best" / "postprocessing.json").read_text())
    assert set(saved["tasks"]) == {"zones"}
    choice = json.loads((root / "results" / DATASET / "find_best" / "choice.json").read_text())
    assert choice["configurations"][0] in ("2d", "2d_derived")
    assert _predict(root, tmp_path / "chosen", configuration=choice["configurations"][0]) == 0
    assert (tmp_path / "chosen" / "zones").is_dir()


def test_derived_line_is_trained_validated_and_predicted(root: Path, tmp_path: Path) -> None:
    fold = root / "results" / DATASET / "2d_derived" / "fold_0"
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert set(summary["tasks"]) == {"zones", "front", "glacier_rock"} and "mde" in summary["tasks"]["glacier_rock"]
    assert _predict(root, tmp_path / "out", "--line-source", "boundary", configuration="2d_derived") == 0
    zones = _maps(tmp_path / "out" / "zones")
    for name, line in _maps(tmp_path / "out" / "glacier_rock").items():
        np.testing.assert_array_equal(line, boundary_between(zones[name], 2, (1, 0)).astype(line.dtype))


def test_fused_labels_train_as_one_map_and_predict_both(root: Path, tmp_path: Path) -> None:
    fold = root / "results" / DATASET / "2d_fused" / "fold_0"
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert set(summary["mean"]) == {"1", "2", "3", "4"}  # one map, the front a zone class of its own (4)
    fused = [np.load(path) for path in root.glob(f"preprocessed/{DATASET}/2d_*_labels*/sar_0000_seg.npy")]
    assert any(f.ndim == 2 and 4 in np.unique(f) for f in fused)
    assert _predict(root, tmp_path / "out", configuration="2d_fused") == 0
    zones, fronts = _maps(tmp_path / "out" / "zones"), _maps(tmp_path / "out" / "front")
    assert set(zones) == set(fronts) and len(zones) == 2
    for name in zones:
        assert set(np.unique(zones[name])) <= {0, 1, 2, 3} and set(np.unique(fronts[name])) <= {0, 1}


def test_boundary_line_source_needs_declared_boundaries(root: Path) -> None:
    description = load_dataset_json(root / "raw" / DATASET / "dataset.json")
    layout = OutputLayout.from_description(description)
    assert TaskOutputs(description, None, layout, "boundary").line_source == "boundary"
    bare = type(description)(**{**description.__dict__, "declared_tasks": tuple(
        t if t.kind == "area" else type(t)(t.name, t.labels, t.kind) for t in description.tasks)})
    with pytest.raises(ConfigError, match="task 'front' has none"):
        TaskOutputs(bare, None, layout, "boundary")
    with pytest.raises(ConfigError, match="unknown"):
        TaskOutputs(description, None, layout, "skeleton")
    with pytest.raises(ConfigError, match="rocks"):
        TaskOutputs(description, None, layout, "head", TaskPostprocessing(tasks={"rocks": PostprocessingPlan()}))
