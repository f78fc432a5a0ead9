"""Bad flags, devices and unexpected failures: a usage error or one line on stderr, never a traceback."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from autounet.cli import evaluate as evaluate_cli
from autounet.cli.main import main
from autounet.io import ImageGeometry, write_image, write_segmentation


@pytest.mark.parametrize(("argv", "flag"), [
    (["predict", "-i", "in", "-o", "out", "-d", "1", "-c", "2d", "--step-size", "0"], "--step-size"),
    (["predict", "-i", "in", "-o", "out", "-d", "1", "-c", "2d", "--step-size", "1.5"], "--step-size"),
    (["predict", "-i", "in", "-o", "out", "-d", "1", "-c", "2d", "--batch-size", "0"], "--batch-size"),
    (["predict", "-i", "in", "-o", "out", "-d", "1", "-c", "2d", "--device", "tpu"], "--device"),
    (["train", "-d", "1", "-c", "2d", "-f", "0", "--epochs", "-1"], "--epochs"),
    (["train", "-d", "1", "-c", "2d", "-f", "0", "--num-workers", "x"], "--num-workers"),
    (["verify", "-d", "1", "-np", "0"], "-np"),
    (["example", "--num-cases", "0"], "--num-cases"),
    (["plan", "-d", "1", "--gpu-memory", "nan"], "--gpu-memory"),
])
def test_bad_flag_is_a_usage_error(argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert flag in error and "Traceback" not in error


def test_output_that_is_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "taken.txt"
    existing.write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "-i", str(tmp_path), "-o", str(existing / "sub"), "-d", "1", "-c", "2d"])
    assert exit_info.value.code == 2
    assert "is a file" in capsys.readouterr().err
    assert existing.read_text() == "mine"


def test_cuda_without_cuda_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["train", "-d", "1", "-c", "2d", "-f", "0", "--device", "cuda", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "--device cuda" in err[0] and "Traceback" not in err[0]


def test_unexpected_exception_is_one_line_with_debug_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*_: object) -> int:
        raise OSError(5, "Input/output error", str(tmp_path / "case.nii.gz"))
    # register() binds its module's run at parse-building time, so replace it before main builds the parser.
    monkeypatch.setattr(evaluate_cli, "run", broken)
    code = main(["evaluate", str(tmp_path), str(tmp_path), "--data-root", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("autounet evaluate: error: OSError") and "unexpected" in err[0]
    assert "case.nii.gz" in err[0] and "--debug" in err[0]
    with pytest.raises(OSError):
        main(["evaluate", str(tmp_path), str(tmp_path), "--debug"])


def _evaluation_folders(tmp_path: Path) -> tuple[Path, Path]:
    geometry = ImageGeometry.default(3, (1.0, 1.0, 1.0))
    reference, prediction = tmp_path / "ref", tmp_path / "pred"
    seg = np.zeros((4, 6, 6), dtype=np.uint8)
    seg[1:3, 2:5, 2:5] = 1
    write_segmentation(seg, geometry, reference / "case.nii.gz")
    write_segmentation(seg, geometry, prediction / "case.nii.gz")
    return reference, prediction


def test_metrics_csv_holds_plain_numbers(tmp_path: Path) -> None:
    reference, prediction = _evaluation_folders(tmp_path)
    assert main(["evaluate", str(reference), str(prediction), "--data-root", str(tmp_path)]) == 0
    rows = list(csv.DictReader((prediction / "metrics.csv").open()))
    assert rows and "np." not in (prediction / "metrics.csv").read_text()
    assert float(rows[0]["dice"]) == 1.0 and int(rows[0]["tp"]) > 0


def test_prediction_holding_nan_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reference, prediction = _evaluation_folders(tmp_path)
    broken = np.zeros((1, 4, 6, 6), dtype=np.float32)
    broken[0, 0, 0, 0] = np.nan
    write_image(broken, ImageGeometry.default(3, (1.0, 1.0, 1.0)), prediction / "case.nii.gz")
    before = (prediction / "case.nii.gz").read_bytes()
    code = main(["evaluate", str(reference), str(prediction), "--data-root", str(tmp_path), "-np", "1"])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "autounet evaluate:" in line]
    assert code == 1 and len(err) == 1 and "case.nii.gz" in err[0] and "NaN" in err[0]
    assert "Traceback" not in err[0]
    assert (prediction / "case.nii.gz").read_bytes() == before
