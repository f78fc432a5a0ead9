"""An error raised while a progress bar is on screen is printed on a line of its own, not appended to the bar."""

from __future__ import annotations

import argparse
import re

import pytest
from tqdm import tqdm

from autounet.cli import main as cli_main
from autounet.cli import verify
from autounet.errors import DatasetError
from autounet.paths import Paths
from autounet.progress import close_progress_bars, progress


@pytest.mark.parametrize(("error", "code", "message"), [
    (DatasetError("broken case"), 1, "autounet verify: error: broken case"),
    (RuntimeError("boom"), 1, "autounet verify: error: RuntimeError: boom (unexpected;"),
    (KeyboardInterrupt(), 130, "autounet verify: interrupted;"),
])
@pytest.mark.parametrize("nested", [False, True], ids=["one-bar", "inner-bar"])
def test_error_starts_a_line_of_its_own(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                        error: BaseException, code: int, message: str, nested: bool) -> None:
    def fail_midway(_args: argparse.Namespace, _paths: Paths) -> int:
        # Bars held in variables (as the trainer and predictor hold theirs) stay open while the traceback
        # keeps this frame alive, that is, until after main has printed the message.
        cases = progress(range(5), "Verifying")
        for index in cases:
            windows = progress(range(3), "Reading", leave=False) if nested else iter([0])
            for inner in windows:
                if index == 2 and inner == 0:
                    raise error
        return 0

    monkeypatch.setattr(verify, "run", fail_midway)
    assert cli_main.main(["verify", "-d", "1"]) == code
    err = capsys.readouterr().err
    assert "Verifying:" in err and message in err, err  # the bar was on screen when the error came
    # The message begins a line (after a newline or at the very start), and is the last line.
    assert re.search(r"(?:\A|\n)" + re.escape(message), err), repr(err)
    assert err.endswith("\n") and message in err.rsplit("\n", 2)[-2], repr(err)
    assert not list(getattr(tqdm, "_instances", ())), "a bar is left open"


def test_closing_without_bars_writes_nothing(capsys: pytest.CaptureFixture) -> None:
    close_progress_bars()
    assert capsys.readouterr().err == ""
