"""Data-folder resolution: flag > AUTOUNET_DATA > default, with nnU-Net's variables per sub-folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autounet.paths import DEFAULT_DATA_ROOT, Paths, resolve_paths

NNUNET = {"nnUNet_raw": "/nn/raw", "nnUNet_preprocessed": "/nn/pre", "nnUNet_results": "/nn/res"}


def test_default_is_under_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    paths = resolve_paths(environ={})
    assert paths == Paths(raw=tmp_path / DEFAULT_DATA_ROOT / "raw",
                          preprocessed=tmp_path / DEFAULT_DATA_ROOT / "preprocessed",
                          results=tmp_path / DEFAULT_DATA_ROOT / "results")
    assert not (tmp_path / DEFAULT_DATA_ROOT).exists()  # resolving creates nothing


def test_autounet_data_beats_default() -> None:
    assert resolve_paths(environ={"AUTOUNET_DATA": "/data/au"}) == Paths.under("/data/au")


def test_flag_beats_every_variable() -> None:
    environ = {"AUTOUNET_DATA": "/data/au", **NNUNET}
    assert resolve_paths("/flag", environ=environ) == Paths.under("/flag")


def test_nnunet_variables_without_flag() -> None:
    assert resolve_paths(environ={"AUTOUNET_DATA": "/data/au", **NNUNET}) == Paths(
        raw=Path("/nn/raw"), preprocessed=Path("/nn/pre"), results=Path("/nn/res"))


@pytest.mark.parametrize(("variable", "field"), [
    ("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "preprocessed"), ("nnUNet_results", "results"),
])
def test_each_nnunet_variable_is_honoured_on_its_own(variable: str, field: str) -> None:
    paths = resolve_paths(environ={"AUTOUNET_DATA": "/data/au", variable: NNUNET[variable]})
    expected = Paths.under("/data/au")
    for name in ("raw", "preprocessed", "results"):
        wanted = Path(NNUNET[variable]) if name == field else getattr(expected, name)
        assert getattr(paths, name) == wanted


def test_empty_variables_are_ignored() -> None:
    environ = {"AUTOUNET_DATA": "", "nnUNet_raw": "", "nnUNet_preprocessed": "", "nnUNet_results": ""}
    assert resolve_paths(environ=environ) == resolve_paths(environ={})


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_paths("rel") == Paths.under(tmp_path / "rel")
    assert resolve_paths(environ={"nnUNet_raw": "r"}).raw == tmp_path / "r"
    assert all(p.is_absolute() for p in vars(resolve_paths(environ={})).values())


def test_home_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    assert resolve_paths(environ={"AUTOUNET_DATA": "~/data"}).raw == Path("/home/someone/data/raw")
    assert resolve_paths("~/flag").results == Path("/home/someone/flag/results")


def test_os_environ_is_read_only_when_no_dict_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOUNET_DATA", "/from/env")
    monkeypatch.delenv("nnUNet_raw", raising=False)
    assert resolve_paths().raw == Path("/from/env/raw")
    assert resolve_paths(environ={}).raw != Path("/from/env/raw")
    assert os.environ["AUTOUNET_DATA"] == "/from/env"
