"""``choice.json`` keeps the chosen postprocessing relative to its results folder; older absolute paths still
resolve, in place or below a moved folder; predict finds the choice for the configuration it chose."""

from __future__ import annotations

from pathlib import Path

import pytest

from autounet.ensembling import CHOICE_FILE, FIND_BEST_FOLDER, FindBestChoice, chosen_postprocessing
from autounet.errors import ConfigError
from autounet.io.serialization import save_dataclass

DATASET = "Dataset501_Fake"


def _choice(postprocessing_file: str, configurations: tuple[str, ...] = ("3d_fullres",)) -> FindBestChoice:
    return FindBestChoice(dataset=DATASET, configurations=configurations, folds=(0,),
                          ensemble=len(configurations) > 1, postprocessing_file=postprocessing_file, cv_dice=0.9,
                          cv_dice_postprocessed=0.91)


@pytest.fixture
def dataset_results(tmp_path: Path) -> Path:
    folder = tmp_path / "here" / "results" / DATASET
    (folder / FIND_BEST_FOLDER).mkdir(parents=True)
    (folder / FIND_BEST_FOLDER / "postprocessing.json").write_text('{"schema_version": 1}')
    return folder


def test_relative_and_absolute_paths_resolve(dataset_results: Path, tmp_path: Path) -> None:
    expected = (dataset_results / FIND_BEST_FOLDER / "postprocessing.json").absolute()
    assert _choice("find_best/postprocessing.json").postprocessing_path(dataset_results) == expected
    assert _choice(str(expected)).postprocessing_path(dataset_results) == expected  # older files, same place
    for elsewhere in (f"/old/machine/results/{DATASET}/find_best/postprocessing.json",
                      f"C:\\Users\\me\\results\\{DATASET}\\find_best\\postprocessing.json"):
        assert _choice(elsewhere).postprocessing_path(dataset_results) == expected  # copied or moved here


@pytest.mark.parametrize(("recorded", "problem"), [
    ("/old/machine/somewhere/postprocessing.json", "does not lie inside"),
    ("../other/postprocessing.json", "does not lie inside"),
    ("find_best/missing.json", "is missing"),
    (f"/old/results/{DATASET}/find_best/missing.json", "is missing"),
])
def test_unresolvable_paths_are_one_line(dataset_results: Path, recorded: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        _choice(recorded).postprocessing_path(dataset_results)
    message = str(info.value)
    assert "\n" not in message and problem in message
    assert message.startswith(str(dataset_results / FIND_BEST_FOLDER / CHOICE_FILE))


def test_predict_uses_the_choice_for_the_chosen_configuration_only(dataset_results: Path) -> None:
    model = dataset_results / "3d_fullres"
    assert chosen_postprocessing(model) is None  # no choice.json yet
    save_dataclass(dataset_results / FIND_BEST_FOLDER / CHOICE_FILE, _choice("find_best/postprocessing.json"))
    assert chosen_postprocessing(model) == (dataset_results / FIND_BEST_FOLDER / "postprocessing.json").absolute()
    assert chosen_postprocessing(dataset_results / "2d") is None
    save_dataclass(dataset_results / FIND_BEST_FOLDER / CHOICE_FILE,
                   _choice("find_best/postprocessing.json", ("2d", "3d_fullres")))
    assert chosen_postprocessing(model) is None  # an ensemble's postprocessing is not for one member


def test_an_existing_absolute_path_can_be_ignored(dataset_results: Path, tmp_path: Path) -> None:
    other = tmp_path / "other" / "results" / DATASET / FIND_BEST_FOLDER / "postprocessing.json"
    other.parent.mkdir(parents=True)
    other.write_text('{"schema_version": 1}')
    choice = _choice(str(other))
    assert choice.postprocessing_path(dataset_results) == other
    expected = (dataset_results / FIND_BEST_FOLDER / "postprocessing.json").absolute()
    assert choice.postprocessing_path(dataset_results, use_absolute=False) == expected
