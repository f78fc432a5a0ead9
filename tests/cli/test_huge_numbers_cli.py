"""Numbers of thousands of digits, dataset ids out of range and over-long dataset names are usage errors:
exit 2, one error line naming the flag, the value cut short, never a traceback or the last-resort handler."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from autounet.cli._common import output_folder
from autounet.cli.main import build_parser, main
from tests.cli._parser_walk import typed_options

# Beyond Python's int() limit of 4300 digits, where int() itself raises ValueError.
HUGE = "9" * 5000


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip() and not line.startswith(("usage:", " "))]


@pytest.mark.parametrize(("argv", "flag", "expected"), [
    (["verify", "-d", HUGE], "-d/--dataset", "dataset ids run from 0 to 999"),
    (["verify", "-d", "1000"], "-d/--dataset", "dataset ids run from 0 to 999 (DatasetNNN_Name), got '1000'"),
    (["verify", "-d", "x" * 300], "-d/--dataset", "too long for a dataset name or folder"),
    (["plan", "-d", "0" * 40 + "1"], "-d/--dataset", "dataset ids run from 0 to 999"),
    (["verify", "-d", "\u00b2"], "-d/--dataset", "written with the digits 0-9, got '\u00b2'"),
    (["verify", "-d", "\u0665\u0660\u0661"], "-d/--dataset", "written with the digits 0-9"),
    (["verify", "-d", "Brain\nDataset"], "-d/--dataset", "control characters, got 'Brain\\nDataset'"),
    (["verify", "-d", ""], "-d/--dataset", "cannot be empty"),
    (["example", "--seed", "1\n2"], "--seed", "not an integer: '1\\n2'"),
    (["predict", "-i", "in", "-o", "out", "-d", HUGE, "-c", "2d"], "-d/--dataset", "dataset ids run"),
    (["export-model", "-d", HUGE, "-c", "2d", "-o", "m.zip"], "-d/--dataset", "dataset ids run"),
    (["convert", "images", "a", "b", "--name", "X", "-d", HUGE], "-d/--dataset-id",
     "a number of 5000 digits is out of range"),
    (["convert", "images", "a", "b", "--name", "X", "-d", "0"], "-d/--dataset-id", "dataset ids run from 1 to 999"),
    (["example", "--dataset-id", "-" + HUGE], "--dataset-id", "a number of 5000 digits is out of range"),
    (["example", "--seed", HUGE], "--seed", "a number of 5000 digits is out of range"),
    (["verify", "-d", "1", "-np", HUGE], "-np/--num-processes", "out of range"),
    (["train", "-d", "1", "-c", "2d", "-f", HUGE], "-f/--fold", "out of range"),
    (["train", "-d", "1", "-c", "2d", "-f", "0", "--epochs", "1_" * 20], "--epochs", "not an integer"),
    (["predict", "-i", "in", "-o", "out", "-m", "m", "--device", "cuda:" + HUGE], "--device", "out of range"),
    (["predict", "-i", "in", "-o", "out", "-m", "m", "--step-size", HUGE], "--step-size", "(5000 characters)"),
])
def test_huge_and_out_of_range_values_are_usage_errors(argv: list[str], flag: str, expected: str,
                                                       capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    lines = _error_lines(err)
    assert exit_info.value.code == 2 and "Traceback" not in err and "unexpected" not in err, err[:500]
    assert len(lines) == 1 and f"error: argument {flag}: " in lines[0] and expected in lines[0], lines
    assert len(lines[0]) < 250, lines[0]  # the value is cut short, not echoed in full


PARSER = build_parser()


def test_every_typed_flag_refuses_a_number_of_thousands_of_digits(capsys: pytest.CaptureFixture) -> None:
    options = typed_options(PARSER, lambda action: action.type not in (None, Path, str, output_folder))
    assert {(("verify",), "--dataset"), (("convert", "images"), "--dataset-id"), (("train",), "--fold"),
            (("predict",), "--device"), (("example",), "--seed")} <= set(options)
    for path, flag in options:
        for value in (HUGE, "-" + HUGE):
            with pytest.raises(SystemExit) as exit_info:
                PARSER.parse_args([*path, f"{flag}={value}"])
            err = capsys.readouterr().err
            last = err.strip().splitlines()[-1]
            assert exit_info.value.code == 2 and "Traceback" not in err, (path, flag, err[-300:])
            assert "error: argument " in last and flag in last and len(last) < 250, (path, flag, last)


def test_verify_with_a_huge_dataset_id_in_a_real_process(tmp_path: Path) -> None:
    # The shell case of the issue: `autounet verify -d $(python -c 'print("9"*5000)')`.
    result = subprocess.run([sys.executable, "-m", "autounet.cli.main", "verify", "-d", HUGE,
                             "--data-root", str(tmp_path)], capture_output=True, text=True, timeout=120)
    lines = _error_lines(result.stderr)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-500:]
    assert lines == ["autounet verify: error: argument -d/--dataset: dataset ids run from 0 to 999 "
                     "(DatasetNNN_Name), got '99999999999999999999...99999999' (5000 characters)"]
    assert list(tmp_path.iterdir()) == []  # nothing written
