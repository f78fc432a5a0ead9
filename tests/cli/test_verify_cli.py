"""``autounet verify``: exit codes, one line per problem on stderr, summary on stdout, dataset untouched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from autounet.cli.main import main

NII = ".nii.gz"


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every file and folder under ``root``."""
    return {str(p.relative_to(root)): ("dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest(),
                                       p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _truncate(root: Path) -> None:
    path = root / "imagesTr" / f"case_001_0000{NII}"
    path.write_bytes(path.read_bytes()[:200])


def _break_json(root: Path) -> None:
    (root / "dataset.json").write_text('{"labels": {"background": 0}')


def _two_problems(root: Path) -> None:
    (root / "labelsTr" / f"case_002{NII}").unlink()
    (root / "imagesTr" / f"case_000_0001{NII}").unlink()


# breaker, problems expected as (path relative to the dataset, text in the line)
BROKEN = [
    pytest.param(_truncate, [(f"imagesTr/case_001_0000{NII}", "cannot read image")], id="truncated"),
    pytest.param(_break_json, [("dataset.json", "not valid JSON")], id="malformed-json"),
    pytest.param(_two_problems, [(f"labelsTr/case_002{NII}", "no label file"),
                                 (f"imagesTr/case_000_0001{NII}", "missing channel 1")], id="two-problems"),
]


@pytest.mark.parametrize(("breaker", "expected"), BROKEN)
def test_broken_dataset_exits_1_with_one_line_per_problem(
        tiny_dataset: Callable[..., Path], capsys: pytest.CaptureFixture[str],
        breaker: Callable[[Path], None], expected: list[tuple[str, str]]) -> None:
    root = tiny_dataset()
    breaker(root)
    before = snapshot(root)
    code = main(["verify", "-d", "999", "--data-root", str(root.parents[1]), "-np", "1"])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.err.strip().splitlines()
    for relative, text in expected:
        assert any(line.startswith(f"{root / relative}: ") and text in line for line in lines), lines
    assert lines[-1] == (f"{len(expected)} problem(s) found in Dataset999_Tiny; fix them and run "
                         "'autounet verify -d 999' again")
    assert captured.out == ""
    assert snapshot(root) == before


def test_clean_dataset_exits_0_with_summary(tiny_dataset: Callable[..., Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = tiny_dataset()
    before = snapshot(root)
    assert main(["verify", "-d", "Dataset999_Tiny", "--data-root", str(root.parents[1]), "-np", "2"]) == 0
    out = capsys.readouterr().out
    assert "Dataset999_Tiny: no problems found" in out
    assert "3 training, 0 test" in out
    assert "2 (0: CT, 1: MR1)" in out
    assert "3D, file ending .nii.gz" in out
    assert "median 8 x 12 x 12" in out and "median 3 x 1 x 1 mm" in out
    assert "organ=1 (in 3/3 cases)" in out
    assert snapshot(root) == before


def test_dataset_given_as_folder_path(tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = tiny_dataset()
    assert main(["verify", "-d", str(root), "--data-root", str(tmp_path / "elsewhere")]) == 0


def test_unknown_dataset_is_one_line_error(tiny_dataset: Callable[..., Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    root = tiny_dataset()
    assert main(["verify", "-d", "123", "--data-root", str(root.parents[1])]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("autounet verify: error: ") and "no dataset '123'" in err[0]


@pytest.mark.parametrize("breaker", [_truncate, _break_json], ids=["truncated", "malformed-json"])
def test_subprocess_prints_no_traceback(tiny_dataset: Callable[..., Path],
                                        breaker: Callable[[Path], None]) -> None:
    root = tiny_dataset()
    breaker(root)
    before = snapshot(root)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-m", "autounet", "verify", "-d", "999", "--data-root",
                             str(root.parents[1]), "-np", "2"], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("1 problem(s) found in Dataset999_Tiny")
    assert snapshot(root) == before

