from __future__ import annotations

import json
from pathlib import Path

import pytest

from autounet.errors import ConfigError, DatasetError
from autounet.training import Fold, fold_cases, load_or_create_splits, make_splits

CASES = ["liver_10", "case_2", "BraTS_001", "x", "liver_0", "abc", "z", "liver_1", "Abc", "case_10", "y", "liver_2"]

# Computed once with nnunetv2.utilities.crossval_split.generate_crossval_split (sklearn KFold, n_splits=5,
# shuffle=True, random_state=12345) on sorted(CASES).
EXPECTED = [
    {"train": ["BraTS_001", "abc", "case_2", "liver_0", "liver_1", "liver_10", "x", "y", "z"],
     "val": ["Abc", "case_10", "liver_2"]},
    {"train": ["Abc", "BraTS_001", "abc", "case_10", "case_2", "liver_0", "liver_1", "liver_2", "x"],
     "val": ["liver_10", "y", "z"]},
    {"train": ["Abc", "BraTS_001", "abc", "case_10", "case_2", "liver_0", "liver_10", "liver_2", "y", "z"],
     "val": ["liver_1", "x"]},
    {"train": ["Abc", "abc", "case_10", "liver_0", "liver_1", "liver_10", "liver_2", "x", "y", "z"],
     "val": ["BraTS_001", "case_2"]},
    {"train": ["Abc", "BraTS_001", "case_10", "case_2", "liver_1", "liver_10", "liver_2", "x", "y", "z"],
     "val": ["abc", "liver_0"]},
]
# Same source, case_0..case_6: validation sets only.
EXPECTED_VAL_7 = [["case_3", "case_6"], ["case_0", "case_4"], ["case_1"], ["case_5"], ["case_2"]]


def as_json(folds: list[Fold]) -> list[dict[str, list[str]]]:
    return [{"train": list(f.train), "val": list(f.val)} for f in folds]


def test_default_split_equals_nnunet() -> None:
    assert as_json(make_splits(CASES)) == EXPECTED
    assert [list(f.val) for f in make_splits([f"case_{i}" for i in range(7)])] == EXPECTED_VAL_7


def test_split_ignores_input_order_and_covers_every_case_once() -> None:
    folds = make_splits(list(reversed(CASES)))
    assert as_json(folds) == EXPECTED
    assert sorted(c for f in folds for c in f.val) == sorted(CASES)
    assert all(set(f.train) | set(f.val) == set(CASES) for f in folds)


def test_too_few_cases_or_duplicates() -> None:
    with pytest.raises(DatasetError, match="at least 5"):
        make_splits(["a", "b", "c"])
    with pytest.raises(ValueError, match="unique"):
        make_splits(["a", "a", "b", "c", "d", "e"])
    with pytest.raises(ValueError):
        make_splits(CASES, num_folds=1)


def test_split_file_is_created_in_nnunet_layout(tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    folds = load_or_create_splits(path, CASES)
    assert json.loads(path.read_text()) == EXPECTED
    assert load_or_create_splits(path, CASES) == folds


def test_too_few_cases_names_the_split_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="splits.json"):
        load_or_create_splits(tmp_path / "splits.json", ["a", "b"])


def test_edited_split_file_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    path.write_text(json.dumps([{"train": ["a", "b"], "val": ["c"]}, {"train": ["c"], "val": ["a"]}]))
    folds = load_or_create_splits(path, ["a", "b", "c", "d"])
    assert folds == [Fold(train=("a", "b"), val=("c",)), Fold(train=("c",), val=("a",))]
    assert json.loads(path.read_text())[1] == {"train": ["c"], "val": ["a"]}  # untouched


def test_nnunet_split_file_is_accepted(tmp_path: Path) -> None:
    # nnU-Net writes splits_final.json with sort_keys=True and indent=4.
    path = tmp_path / "splits_final.json"
    path.write_text(json.dumps(EXPECTED[:3], sort_keys=True, indent=4))
    folds = load_or_create_splits(path, CASES)
    assert as_json(folds) == EXPECTED[:3]


@pytest.mark.parametrize(("content", "message"), [
    ([{"train": ["a", "q"], "val": ["c"]}], "fold 0: 'train' names 1 case.*q"),
    ([{"train": ["a"], "val": ["b"]}, {"train": ["a", "b"], "val": ["b"]}], "fold 1: 1 case.*both.*b"),
    ([{"train": ["a"], "val": []}], "'val' is empty"),
    ([{"train": ["a", "a"], "val": ["b"]}], "more than once"),
    ([{"train": ["a"], "val": ["b"], "test": ["c"]}], "exactly the keys"),
    ([{"train": "a", "val": ["b"]}], "list of case ids"),
    ({"train": ["a"], "val": ["b"]}, "non-empty list"),
    ([], "non-empty list"),
])
def test_invalid_split_files(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "splits.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError, match=message) as info:
        load_or_create_splits(path, ["a", "b", "c"])
    assert info.value.path == path


def test_broken_json_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    path.write_text("[{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_or_create_splits(path, CASES)


def test_fold_cases() -> None:
    folds = make_splits(CASES)
    assert fold_cases(folds, 3, CASES) == folds[3]
    everything = fold_cases(folds, "all", CASES)
    assert everything.train == everything.val == tuple(sorted(CASES))


def test_missing_fold_is_an_error_not_a_random_split(tmp_path: Path) -> None:
    folds = make_splits(CASES)
    with pytest.raises(ConfigError, match=r"splits.json has 5 folds \(0-4\); fold 7 does not exist"):
        fold_cases(folds, 7, CASES, source=tmp_path / "splits.json")
    with pytest.raises(ConfigError, match="fold -1 does not exist"):
        fold_cases(folds, -1, CASES)
