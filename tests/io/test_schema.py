"""io.schema: declared shapes of foreign JSON, every misfit one ConfigError naming the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autounet.errors import ConfigError
from autounet.io.schema import Fields, ListOf, MapOf, Number, OneOf, check_json

SIZE = OneOf((Number(integer=True, minimum=1), ListOf(Number(integer=True, minimum=1), min_length=1)),
             "a positive integer or a list of them")
SPEC = Fields(required={"name": str, "sizes": ListOf(Number(integer=True, minimum=1, maximum=100), min_length=2,
                                                    max_length=3),
                        "spacing": ListOf(Number(positive=True))},
              optional={"flag": bool, "kernel": SIZE, "stats": MapOf(Number(), min_length=1)})
GOOD: dict[str, Any] = {"name": "a", "sizes": [2, 3], "spacing": [0.5, 1], "flag": None, "kernel": [3, 3],
                        "stats": {"mean": 1.5}, "other": object()}


def test_a_fitting_value_passes() -> None:
    check_json(GOOD, SPEC, Path("x.json"), "")
    check_json({**GOOD, "kernel": 3}, SPEC, Path("x.json"), "")


@pytest.mark.parametrize(("change", "field", "problem"), [
    ({"name": None}, "name", "must be a string, got None"),
    ({"sizes": [2]}, "sizes", "at least 2 and at most 3 item(s), got 1"),
    ({"sizes": [2, 101]}, "sizes[1]", "must be <= 100, got 101"),
    ({"sizes": [2, 2.5]}, "sizes[1]", "must be an integer, got 2.5"),
    ({"sizes": [2, True]}, "sizes[1]", "must be an integer, got True"),
    ({"sizes": [2, 10**400]}, "sizes[1]", "must be <= 100, got 1000"),  # beyond a float's range: no overflow
    ({"spacing": [float("nan")]}, "spacing[0]", "must be a finite number, got nan"),
    ({"spacing": [0.0]}, "spacing[0]", "must be > 0, got 0.0"),
    ({"spacing": {"0": 1.0}}, "spacing", "must be a list"),
    ({"flag": 1}, "flag", "must be true or false, got 1"),
    ({"kernel": [3, "3"]}, "kernel", "must be a positive integer or a list of them"),
    ({"stats": {}}, "stats", "at least 1 entry"),
    ({"stats": {"mean": "x"}}, "stats.mean", "must be a finite number, got 'x'"),
])
def test_a_misfit_names_file_and_field(change: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_json({**GOOD, **change}, SPEC, Path("x.json"), "")
    assert info.value.path == Path("x.json")
    assert info.value.problem.startswith(f"field '{field}' ") and problem in info.value.problem


def test_missing_key_and_prefix() -> None:
    data = {key: value for key, value in GOOD.items() if key != "spacing"}
    with pytest.raises(ConfigError, match=r"field 'configurations\.2d\.spacing' is missing"):
        check_json(data, SPEC, "plans.json", "configurations.2d")
    with pytest.raises(ConfigError, match="field 'configurations.2d' must be an object, got \\[\\]"):
        check_json([], SPEC, "plans.json", "configurations.2d")
