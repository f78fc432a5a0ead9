"""Typed dataclass <-> JSON conversion, validation errors, and the JSON file helpers."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

import numpy as np
import pytest

from autounet.errors import ConfigError
from autounet.io import (
    ImageGeometry,
    atomic_write,
    from_dict,
    load_dataclass,
    read_json,
    save_dataclass,
    to_dict,
    write_json,
)


@dataclass(frozen=True)
class Stage:
    name: str
    kernel: tuple[int, ...]
    stride: tuple[int, int, int]


@dataclass(frozen=True)
class Config:
    SCHEMA_VERSION: ClassVar[int] = 2

    schema_version: int
    stages: list[Stage]
    label_names: dict[int, str]
    norm: Literal["zscore", "ct", "none"]
    spacing_mm: tuple[float, ...]
    note: Optional[str]  # noqa: UP045 - the typing.Optional spelling must work too
    order: int | None = None
    weights: dict[str, list[float]] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def _config() -> Config:
    stages = [Stage("enc0", (3, 3, 3), (1, 1, 1)), Stage("enc1", (1, 3, 3), (1, 2, 2))]
    return Config(schema_version=2, stages=stages, label_names={0: "background", 1: "liver", 12: "tumour"},
                  norm="ct", spacing_mm=(2.5, 0.7, 0.7), note=None, order=3, weights={"dice": [1.0, 0.5]},
                  extra={"free": [1, "two"]})


def _data() -> dict[str, Any]:
    return to_dict(_config())


def test_to_dict_is_plain_json() -> None:
    data = _data()
    assert data["stages"][1] == {"name": "enc1", "kernel": [1, 3, 3], "stride": [1, 2, 2]}
    assert data["label_names"] == {"0": "background", "1": "liver", "12": "tumour"}
    assert json.loads(json.dumps(data)) == data


def test_from_dict_round_trip_restores_types() -> None:
    config = from_dict(Config, json.loads(json.dumps(_data())))
    assert config == _config()
    assert isinstance(config.stages[0].kernel, tuple) and isinstance(config.stages, list)
    assert list(config.label_names) == [0, 1, 12]


def test_int_is_accepted_for_float_and_made_float() -> None:
    data = _data() | {"spacing_mm": [3, 1, 1]}
    config = from_dict(Config, data)
    assert config.spacing_mm == (3.0, 1.0, 1.0) and all(type(v) is float for v in config.spacing_mm)


def test_defaults_fill_missing_optional_keys() -> None:
    data = _data()
    for key in ("order", "weights", "extra"):
        del data[key]
    config = from_dict(Config, data)
    assert config.order is None and config.weights == {} and config.extra == {}


def test_numpy_values_are_converted() -> None:
    stage = Stage("s", tuple(np.array([3, 3], dtype=np.int64)), (np.int32(1), 1, 1))  # type: ignore[arg-type]
    assert json.dumps(to_dict(stage)) == '{"name": "s", "kernel": [3, 3], "stride": [1, 1, 1]}'
    assert to_dict({"a": np.arange(3), "b": np.float32(0.5)}) == {"a": [0, 1, 2], "b": 0.5}


def test_save_and_load_dataclass(tmp_path: Path) -> None:
    save_dataclass(tmp_path / "sub" / "config.json", _config())
    assert load_dataclass(Config, tmp_path / "sub" / "config.json") == _config()
    text = (tmp_path / "sub" / "config.json").read_text()
    assert text.startswith("{\n  ") and text.endswith("}\n")  # indented, for people editing it


def test_image_geometry_round_trip(tmp_path: Path) -> None:
    geometry = ImageGeometry(spacing=(3.0, 0.5, 0.5), origin=(1.0, -2.0, 3.5),
                             direction=((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)), world_frame="LPS")
    save_dataclass(tmp_path / "geometry.json", geometry)
    assert load_dataclass(ImageGeometry, tmp_path / "geometry.json") == geometry


BAD_VALUES = [
    ("stages", {"name": "x"}, "Config.stages", "expected a list"),
    ("stages", [{"name": "a", "kernel": [3], "stride": [1, 1]}], "Config.stages[0].stride",
     "expected 3 items"),
    ("stages", [{"name": "a", "kernel": [3.5], "stride": [1, 1, 1]}], "Config.stages[0].kernel[0]",
     "expected an integer"),
    ("stages", [{"name": 1, "kernel": [3], "stride": [1, 1, 1]}], "Config.stages[0].name",
     "expected a string"),
    ("label_names", {"one": "liver"}, "Config.label_names", "must be an integer"),
    ("label_names", {"1": 5}, "Config.label_names.1", "expected a string"),
    ("norm", "ZSCORE", "Config.norm", "must be one of"),
    ("spacing_mm", [1.0, "2"], "Config.spacing_mm[1]", "expected a number"),
    ("spacing_mm", [True, 1.0], "Config.spacing_mm[0]", "expected a number"),
    ("order", "3", "Config.order", "does not match"),
    ("order", True, "Config.order", "does not match"),
    ("note", 3, "Config.note", "does not match"),
    ("weights", {"dice": 1.0}, "Config.weights.dice", "expected a list"),
]


@pytest.mark.parametrize(("key", "value", "where", "problem"), BAD_VALUES)
def test_wrong_type_names_file_and_field(tmp_path: Path, key: str, value: Any, where: str,
                                         problem: str) -> None:
    path = tmp_path / "config.json"
    write_json(path, _data() | {key: value})
    with pytest.raises(ConfigError, match=problem) as info:
        load_dataclass(Config, path)
    assert info.value.path == path
    assert f"field '{where}'" in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    data = _data()
    data["stages"][0]["kernal"] = [3]
    write_json(path, data)
    with pytest.raises(ConfigError, match=r"field 'Config\.stages\[0\]\.kernal': unknown key") as info:
        load_dataclass(Config, path)
    assert info.value.path == path


def test_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    data = _data()
    del data["norm"]
    write_json(path, data)
    with pytest.raises(ConfigError, match=r"field 'Config\.norm': missing") as info:
        load_dataclass(Config, path)
    assert info.value.path == path


def test_newer_schema_version_says_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    # A newer file usually has new keys too; the version is what the user needs to hear about.
    write_json(path, _data() | {"schema_version": 3, "new_field": 1})
    expected = r"field 'Config\.schema_version': version 3 is newer.*upgrade"
    with pytest.raises(ConfigError, match=expected) as info:
        load_dataclass(Config, path)
    assert info.value.path == path


@pytest.mark.parametrize("version", [None, "2", 2.0, True])
def test_schema_version_must_be_an_integer(version: Any) -> None:
    data = _data()
    data["schema_version"] = version
    with pytest.raises(ConfigError, match="schema_version"):
        from_dict(Config, data)


def test_older_schema_version_is_accepted() -> None:
    assert from_dict(Config, _data() | {"schema_version": 1}).schema_version == 1


def test_literal_is_strict_about_types() -> None:
    @dataclass(frozen=True)
    class Choice:
        value: Literal[1, 2]

    assert from_dict(Choice, {"value": 2}).value == 2
    for wrong in (True, 1.0, "1"):
        with pytest.raises(ConfigError, match="must be one of"):
            from_dict(Choice, {"value": wrong})


def test_not_an_object_and_no_source() -> None:
    with pytest.raises(ConfigError, match="expected an object") as info:
        from_dict(Config, [1, 2])
    assert info.value.path is None and str(info.value).startswith("field 'Config'")


def test_post_init_errors_become_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "geometry.json"
    write_json(path, {"spacing": [1.0, -1.0], "origin": [0.0, 0.0], "direction": [[1.0, 0.0], [0.0, 1.0]]})
    with pytest.raises(ConfigError, match="spacing must be positive") as info:
        load_dataclass(ImageGeometry, path)
    assert info.value.path == path


def test_read_json_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found") as info:
        read_json(tmp_path / "absent.json")
    assert info.value.path == tmp_path / "absent.json"


def test_read_json_invalid(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "a": 1,\n}\n')
    with pytest.raises(ConfigError, match="not valid JSON: .* line 3 column 1") as info:
        read_json(path)
    assert info.value.path == path and "\n" not in str(info.value)


def test_read_json_not_utf8_and_directory(tmp_path: Path) -> None:
    (tmp_path / "latin.json").write_bytes(b'{"name": "\xe9"}')
    with pytest.raises(ConfigError, match="cannot read file"):
        read_json(tmp_path / "latin.json")
    with pytest.raises(ConfigError, match="cannot read file"):
        read_json(tmp_path)


def test_write_json_refuses_nan_and_leaves_old_file(tmp_path: Path) -> None:
    path = tmp_path / "values.json"
    write_json(path, {"a": 1})
    with pytest.raises(ValueError):
        write_json(path, {"a": float("nan")})
    assert read_json(path) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["values.json"]


def test_atomic_write_binary_and_failure(tmp_path: Path) -> None:
    path = tmp_path / "new" / "blob.bin"
    with atomic_write(path, "wb") as handle:
        handle.write(b"\x00\x01")
        assert not path.exists()  # nothing under the final name until the block succeeds
    assert path.read_bytes() == b"\x00\x01"
    with pytest.raises(RuntimeError), atomic_write(path, "wb") as handle:
        handle.write(b"half")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in path.parent.iterdir()) == ["blob.bin"]


def test_atomic_write_respects_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_json(tmp_path / "shared.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 70 + "1" + "}" * 70])
def test_pathologically_nested_json_is_one_error(tmp_path: Path, text: str) -> None:
    from autounet.io.jsonio import read_json

    path = tmp_path / "plans.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match="nested too deeply"):
        read_json(path)


def test_oversized_json_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autounet.io import jsonio

    path = tmp_path / "dataset.json"
    path.write_text('{"labels": {}}' + " " * 2000)
    monkeypatch.setattr(jsonio, "MAX_JSON_BYTES", 1000)
    with pytest.raises(ConfigError, match="not reading it"):
        jsonio.read_json(path)
