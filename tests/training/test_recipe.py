"""Recipes as data: named files with inheritance, built-ins, identity, and runs of two recipes side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autounet.errors import ConfigError
from autounet.io.serialization import from_dict, load_dataclass, to_dict
from autounet.paths import run_folder_name, sibling_run_folder
from autounet.training.recipe import TrainingRecipe, load_recipe


def test_recipe_file_inherits_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "base.json").write_text(json.dumps({"inherits_from": "no_mirroring", "epochs": 250,
                                                    "loss_weights": {"dice": 2.0}}))
    (tmp_path / "child.json").write_text(json.dumps({"schema_version": 2, "inherits_from": "base.json",
                                                     "seed": 7}))
    recipe = load_recipe(tmp_path / "child.json")
    assert recipe.name == "child" and recipe.seed == 7 and recipe.epochs == 250
    assert recipe.loss_weights == {"dice": 2.0}
    assert recipe.augmentation_overrides == {"mirror_axes": []}
    assert load_recipe("default") == TrainingRecipe()


@pytest.mark.parametrize(("content", "message"), [
    ({"epochs": "many"}, "epochs"),
    ({"epoch": 3}, "unknown key"),
    ({"inherits_from": "loop.json"}, "cycle"),
    ({"inherits_from": "defualt"}, "did you mean 'default'"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"name": "a/b"}, "recipe name"),
    # Numbers a file may hold but no run means: each one line, before anything is trained.
    ({"initial_lr": float("nan")}, r"initial_lr must be a finite number > 0, got nan"),
    ({"initial_lr": float("inf")}, r"initial_lr must be a finite number > 0, got inf"),
    ({"initial_lr": 10**400}, r"initial_lr': a number beyond a float's range"),
    ({"momentum": 5.0}, r"momentum must be a finite number in \[0, 1\)"),
    ({"grad_clip_norm": -1.0}, "grad_clip_norm must be a finite number > 0"),
    ({"seed": 10**30}, "seed must lie in 0..4294967295"),
    ({"line_width": 10**9}, "line_width must be at most 256"),
    ({"epochs": 10**30}, "epochs must be at most 2147483647"),
])
def test_bad_recipe_files_are_one_line_errors(tmp_path: Path, content: dict, message: str) -> None:
    path = tmp_path / "loop.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError, match=message):
        load_recipe(path)


def test_fields_added_later_keep_old_fingerprints() -> None:
    # A recipe.json written by version 1 (before objective, network, loss weights and overrides existed).
    version_1 = {key: value for key, value in to_dict(TrainingRecipe(epochs=3)).items()
                 if key not in ("objective", "network", "loss_weights", "augmentation_overrides")}
    old = from_dict(TrainingRecipe, {**version_1, "schema_version": 1})
    assert old.fingerprint() == TrainingRecipe(epochs=3).fingerprint()
    assert TrainingRecipe(loss_weights={"ce": 0.5}).fingerprint() != TrainingRecipe().fingerprint()


def test_run_folders_of_recipes_and_plans_live_side_by_side(tmp_path: Path) -> None:
    assert run_folder_name("3d_fullres") == "3d_fullres"
    assert run_folder_name("3d_fullres", "fast") == "3d_fullres__fast__plans"
    assert run_folder_name("2d", plans="resenc_m") == "2d__default__resenc_m"
    cascade = tmp_path / run_folder_name("3d_cascade_fullres", "fast")
    assert sibling_run_folder(cascade, "3d_cascade_fullres", "3d_lowres") == tmp_path / "3d_lowres__fast__plans"
    assert sibling_run_folder(tmp_path / "3d_cascade_fullres", "3d_cascade_fullres", "3d_lowres") == \
        tmp_path / "3d_lowres"


def test_two_recipes_train_the_same_fold_side_by_side(tmp_path: Path) -> None:
    from autounet.cli.main import main
    from autounet.io.checkpoints import load_checkpoint
    from tests.conftest import write_tiny_dataset

    write_tiny_dataset(tmp_path / "raw", num_cases=5, num_channels=1, shape=(8, 16, 16))
    common = ["--data-root", str(tmp_path), "-q"]
    assert main(["plan-and-preprocess", "-d", "999", "-np", "1", *common]) == 0
    train = ["train", "-d", "999", "-c", "3d_fullres", "-f", "0", "--epochs", "1", "--iterations-per-epoch", "1",
             "--num-workers", "0", "--no-validation", *common]
    recipe_file = tmp_path / "short.json"
    recipe_file.write_text(json.dumps({"inherits_from": "no_mirroring", "loss_weights": {"ce": 0.5}}))
    assert main(train) == 0
    assert main([*train, "--recipe", str(recipe_file)]) == 0
    results = tmp_path / "results" / "Dataset999_Tiny"
    default = load_checkpoint(results / "3d_fullres" / "fold_0" / "checkpoint_final.pt")["metadata"]
    short = load_checkpoint(results / "3d_fullres__short__plans" / "fold_0" / "checkpoint_final.pt")["metadata"]
    assert default["recipe_name"] == "default" and default["mirror_axes"] == [0, 1, 2]
    assert short["recipe_name"] == "short" and short["mirror_axes"] == []
    saved = load_dataclass(TrainingRecipe, results / "3d_fullres__short__plans" / "fold_0" / "recipe.json")
    assert saved.loss_weights == {"ce": 0.5} and saved.epochs == 1
    assert short["recipe_hash"] == saved.fingerprint() != default["recipe_hash"]
    assert short["configuration"] == "3d_fullres"


def test_recipe_with_an_unknown_network_suggests_one(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from autounet.cli.main import main
    from tests.conftest import write_tiny_dataset

    write_tiny_dataset(tmp_path / "raw", num_cases=5, num_channels=1, shape=(8, 16, 16))
    common = ["--data-root", str(tmp_path), "-q"]
    assert main(["plan-and-preprocess", "-d", "999", "-np", "1", "-c", "2d", *common]) == 0
    recipe = tmp_path / "other_net.json"
    recipe.write_text(json.dumps({"network": "unte"}))
    assert main(["train", "-d", "999", "-c", "2d", "-f", "0", "--recipe", str(recipe), *common]) == 1
    assert "did you mean 'unet'" in capsys.readouterr().err
