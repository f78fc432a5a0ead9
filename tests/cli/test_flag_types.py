"""A bad flag value is a usage error (exit 2, one line naming the flag), never a traceback."""

from __future__ import annotations

import pytest

from autounet.cli.main import main


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
