"""A bad flag value is a usage error (exit 2, one line naming the flag), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from autounet.cli._common import dataset_spec, output_folder
from autounet.cli.main import build_parser, main
from tests.cli._parser_walk import typed_options


@pytest.mark.parametrize(("argv", "flag"), [
    (["train", "-d", "1", "-c", "2d", "-f", "0", "--epochs", "0"], "--epochs"),
    (["train", "-d", "1", "-c", "2d", "-f", "0", "--iterations-per-epoch", "-3"], "--iterations-per-epoch"),
    (["train", "-d", "1", "-c", "2d", "-f", "0", "--num-workers", "two"], "--num-workers"),
    (["train", "-d", "1", "-c", "2d", "-f", "0", "--checkpoint-every", "0"], "--checkpoint-every"),
    (["plan", "-d", "1", "--gpu-memory", "nan"], "--gpu-memory"),
    (["plan-and-preprocess", "-d", "1", "-np", "0"], "-np"),
    (["install-model", "m.zip", "--max-size-gib", "inf"], "--max-size-gib"),
    (["example", "--num-cases", "0"], "--num-cases"),
    (["example", "--dataset-id", "1000"], "--dataset-id"),
    (["find-best", "-d", "1", "-f", "-1"], "-f"),
    (["evaluate", "a", "b", "--tolerance", "-1"], "--tolerance"),
])
def test_bad_values_are_usage_errors(argv: list[str], flag: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"argument {flag}" in err


@pytest.mark.parametrize(("argv", "flag"), [
    (["predict", "-i", "in", "-o", "out", "-m", "m", "--step-size", "0"], "--step-size"),
    (["predict", "-i", "in", "-o", "out", "-m", "m", "--step-size", "1.5"], "--step-size"),
    (["predict", "-i", "in", "-o", "out", "-m", "m", "--batch-size", "0"], "--batch-size"),
    (["predict", "-i", "in", "-o", "out", "-m", "m", "--device", "tpu"], "--device"),
])
def test_bad_predict_values_are_usage_errors(argv: list[str], flag: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and f"argument {flag}" in capsys.readouterr().err


def test_output_that_is_a_file_is_a_usage_error(tmp_path, capsys: pytest.CaptureFixture) -> None:
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    for output in (existing, existing / "below"):
        with pytest.raises(SystemExit) as exit_info:
            main(["predict", "-i", str(tmp_path), "-o", str(output), "-m", str(tmp_path)])
        assert exit_info.value.code == 2 and "is a file, not a folder" in capsys.readouterr().err
    assert existing.read_text() == "mine"


UNCHECKED_TYPES = (Path, str, output_folder, dataset_spec)
ABSURD = ["nan", "inf", "-inf", "1e30", str(10**30), "-1e30"]
PARSER = build_parser()
TYPED_OPTIONS = typed_options(PARSER, lambda action: action.type is not None and action.type not in UNCHECKED_TYPES)


def test_the_sweep_sees_the_numeric_flags() -> None:
    flags = {(" ".join(path), flag) for path, flag in TYPED_OPTIONS}
    assert {("install-model", "--max-size-gib"), ("predict", "--step-size"), ("plan", "--gpu-memory"),
            ("predict", "--threads"), ("train", "--fold"), ("example", "--shape"),
            ("deploy", "--max-mean-drop")} <= flags


@pytest.mark.parametrize(("path", "flag"), TYPED_OPTIONS, ids=[" ".join((*p, f)) for p, f in TYPED_OPTIONS])
def test_every_typed_flag_refuses_absurd_values(path: tuple[str, ...], flag: str,
                                                capsys: pytest.CaptureFixture) -> None:
    # NaN, infinities and values no user means (1e30) are usage errors in every subcommand, as a class.
    # (``main`` parses with this same parser; building it once keeps the sweep fast.)
    for value in ABSURD:
        with pytest.raises(SystemExit) as exit_info:
            PARSER.parse_args([*path, f"{flag}={value}"])
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert exit_info.value.code == 2, (flag, value)
        assert "Traceback" not in err and "error: argument " in last and flag in last and value in last, (flag, value)


@pytest.mark.parametrize("argv", [
    ["install-model", "m.zip", "--max-size-gib", "1e30"],
    ["predict", "-i", "in", "-o", "out", "-m", "m", "--step-size", "nan"],
    ["predict", "-i", "in", "-o", "out", "-m", "m", "--threads", "100000"],
    ["predict", "-i", "in", "-o", "out", "-m", "m", "--batch-size", "1000000"],
    ["predict", "-i", "in", "-o", "out", "-m", "m", "-f", "zero"],
    ["train", "-d", "1", "-c", "2d", "-f", "x", "--num-workers", "1"],
    ["train", "-d", "1", "-c", "2d", "-f", "0", "--num-workers", "100000"],
    ["plan", "-d", "1", "--gpu-memory", "inf"],
    ["verify", "-d", "1", "-np", "100000"],
    ["example", "--shape", "100000", "100000"],
    ["example", "--num-cases", "10000000"],
    ["deploy", "-d", "1", "-c", "3d_fullres", "--calibration-patches", "100000"],
    ["deploy", "-d", "1", "-c", "3d_fullres", "--max-mean-drop", "101"],
    ["evaluate", "a", "b", "--tolerance", "1e300"],
    ["export-model", "-d", "1", "-c", "2d", "-f", "-1"],
])
def test_absurd_sizes_and_counts_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err and "error: argument" in err
