"""The CLI never shows a traceback without --debug; parsing the arguments does not import torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from autounet.cli import main as cli_main
from autounet.cli import verify


@pytest.mark.parametrize(("error", "expected"), [
    (RuntimeError("boom\nsecond line"), "RuntimeError: boom (unexpected"),
    (FileNotFoundError(2, "No such file or directory", "/data/x.nii.gz"),
     "FileNotFoundError: [Errno 2] No such file or directory: '/data/x.nii.gz'"),
    (MemoryError(), "MemoryError (unexpected"),
])
def test_unexpected_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                        error: BaseException, expected: str) -> None:
    def fail(*_: object) -> int:
        raise error

    monkeypatch.setattr(verify, "run", fail)
    assert cli_main.main(["verify", "-d", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("autounet verify: error: ") and expected in err and "--debug" in err
    with pytest.raises(type(error)):
        cli_main.main(["verify", "-d", "1", "--debug"])


def test_building_the_parser_imports_no_torch() -> None:
    code = ("import sys\nfrom autounet.cli.main import build_parser\nbuild_parser().format_help()\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))[:3])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


@pytest.mark.parametrize("quiet", [False, True])
def test_cli_logs_autounets_info_and_only_warnings_of_other_libraries(quiet: bool) -> None:
    # A fresh process: the CLI configures logging only where nothing else has (pytest has).
    code = (
        "import logging, sys\n"
        "from autounet.cli import main, verify\n"
        "def run(args, paths):\n"
        "    logging.getLogger('autounet.cli.verify').info('own info')\n"
        "    logging.getLogger('onnx_ir.passes').info('library info')\n"
        "    logging.getLogger('onnx_ir.passes').warning('library warning')\n"
        "    return 0\n"
        "verify.run = run\n"
        f"sys.exit(main.main(['verify', '-d', '1'] + {['-q'] if quiet else []}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = done.stderr.splitlines()
    assert "library warning" in lines and "library info" not in lines
    assert ("own info" in lines) is not quiet
