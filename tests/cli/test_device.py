"""--device: auto by default (CUDA, then MPS, then CPU); bad names are usage errors; missing devices one line."""

from __future__ import annotations

import pytest
import torch

from autounet.cli.main import main
from autounet.devices import resolve_device
from autounet.errors import ConfigError


def test_auto_picks_the_best_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ConfigError, match="has 2 CUDA device"):
        resolve_device("cuda:2")


def test_missing_device_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "-d", "999", "-c", "2d", "-f", "0", "--device", "cuda", "--data-root", "/nonexistent"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device cuda:" in err and "--device cpu" in err


def test_unknown_device_name_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "-d", "999", "-c", "2d", "-f", "0", "--device", "gpu0"])
    assert exit_info.value.code == 2
    assert "unknown device 'gpu0'" in capsys.readouterr().err
