"""Training end to end on a tiny dataset: outputs, exact resume after kill -9, error paths."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from autounet.cli.main import main
from autounet.io.checkpoints import load_checkpoint
from tests.conftest import write_tiny_dataset

TRAIN = ["train", "-d", "999", "-c", "3d_fullres", "-f", "0", "--iterations-per-epoch", "2",
         "--validation-iterations", "1", "--num-workers", "1", "-q"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    write_tiny_dataset(root / "raw", num_cases=5, num_channels=1, shape=(8, 20, 20))
    assert main(["plan-and-preprocess", "-d", "999", "-np", "1", "--data-root", str(root), "-q"]) == 0
    return root


def _fold(root: Path, name: str = "3d_fullres") -> Path:
    return root / "results" / "Dataset999_Tiny" / name / "fold_0"


def test_training_writes_everything(data_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(data_root), str(root)], check=True)
    assert main([*TRAIN, "--epochs", "2", "--data-root", str(root), "--save-probabilities"]) == 0
    fold = _fold(root)
    for name in ("checkpoint_final.pt", "checkpoint_latest.pt", "checkpoint_best.pt", "metrics.json",
                 "progress.png", "training.log", "recipe.json", "validation/summary.json"):
        assert (fold / name).is_file(), name
    assert (fold.parent / "plans.json").is_file() and (fold.parent / "dataset.json").is_file()
    metrics = json.loads((fold / "metrics.json").read_text())
    assert len(metrics["train_loss"]) == 2 and all(isinstance(v, float) for v in metrics["train_loss"])
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    val_cases = json.loads((root / "preprocessed" / "Dataset999_Tiny" / "splits.json").read_text())[0]["val"]
    assert sorted(row["case"] for row in summary["per_case"]) == sorted(val_cases)
    assert set(summary["mean"]) == {"1", "2"}
    for case in val_cases:
        assert (fold / "validation" / f"{case}.nii.gz").is_file() and (fold / "validation" / f"{case}.npz").is_file()
    state = load_checkpoint(fold / "checkpoint_final.pt")
    assert state["epoch"] == 2 and "optimizer" not in state
    # Starting the same fold again must not overwrite it silently.
    assert main([*TRAIN, "--epochs", "2", "--data-root", str(root)]) == 1


def test_missing_fold_is_an_error(data_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([*TRAIN[:6], "7", *TRAIN[7:], "--epochs", "1", "--data-root", str(data_root)]) == 1
    assert "fold 7 does not exist" in capsys.readouterr().err


def test_continue_without_checkpoint_starts_from_scratch(data_root: Path, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    # nnU-Net's behaviour: scripts that always pass --continue work after a kill before the first checkpoint.
    root = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(data_root), str(root)], check=True)
    with caplog.at_level("WARNING", logger="autounet"):
        assert main([*TRAIN, "--epochs", "1", "--no-validation", "--continue", "--data-root", str(root)]) == 0
    assert sum("starting this fold from scratch" in r.getMessage() for r in caplog.records) == 1
    assert load_checkpoint(_fold(root) / "checkpoint_final.pt")["epoch"] == 1


def _run_cli(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "autounet", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def test_kill_9_then_continue_gives_identical_weights(data_root: Path, tmp_path: Path) -> None:
    uninterrupted, interrupted = tmp_path / "a", tmp_path / "b"
    for copy in (uninterrupted, interrupted):
        subprocess.run(["cp", "-r", str(data_root), str(copy)], check=True)
    args = [*TRAIN, "--epochs", "5", "--checkpoint-every", "1", "--no-validation"]
    reference = _run_cli([*args, "--data-root", str(uninterrupted)])
    victim = _run_cli([*args, "--data-root", str(interrupted)])
    latest = _fold(interrupted) / "checkpoint_latest.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:
        if latest.is_file() and load_checkpoint(latest)["epoch"] >= 2:
            break
        time.sleep(0.05)
    assert victim.poll() is None, "training finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert reference.wait() == 0, reference.stderr.read().decode() if reference.stderr else ""
    resumed = _run_cli([*args, "--continue", "--data-root", str(interrupted)])
    assert resumed.wait() == 0, resumed.stderr.read().decode() if resumed.stderr else ""
    a = load_checkpoint(_fold(uninterrupted) / "checkpoint_final.pt")["network"]
    b = load_checkpoint(_fold(interrupted) / "checkpoint_final.pt")["network"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    history_a = json.loads((_fold(uninterrupted) / "metrics.json").read_text())
    history_b = json.loads((_fold(interrupted) / "metrics.json").read_text())
    assert history_a["train_loss"] == history_b["train_loss"]


def _tamper_truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _tamper_state(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def tamper(path: Path) -> None:
        state = torch.load(path, weights_only=True)
        change(state)
        torch.save(state, path)
    return tamper


def _first_weight(state: dict) -> str:
    return next(iter(state["network"]))


@pytest.mark.parametrize(("tamper", "expected"), [
    (_tamper_truncated, "cannot read checkpoint"),
    (_tamper_state(lambda s: s["network"].__setitem__(_first_weight(s), [1, 2])), "holds a list, not a tensor"),
    (_tamper_state(lambda s: s["network"][_first_weight(s)].fill_(float("nan"))), "NaN or infinite"),
    (_tamper_state(lambda s: s["network"].__setitem__(_first_weight(s), torch.zeros(3))), "do not fit this network"),
    (_tamper_state(lambda s: s.pop("optimizer")), "holds no 'optimizer'"),
    (_tamper_state(lambda s: s.__setitem__("epoch", "two")), "'epoch' 'two'"),
    (_tamper_state(lambda s: s.__setitem__("optimizer", {"state": {}, "param_groups": []})), "another kind of run"),
])
def test_continue_from_a_tampered_checkpoint_is_one_line(data_root: Path, trained_once: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture,
                                                          tamper: Callable[[Path], None], expected: str) -> None:
    root = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(trained_once), str(root)], check=True)
    latest = _fold(root) / "checkpoint_latest.pt"
    tamper(latest)
    before = latest.read_bytes()
    capsys.readouterr()
    assert main([*TRAIN, "--epochs", "1", "--no-validation", "--continue", "--data-root", str(root)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "(unexpected;" not in err, err
    assert str(latest) in err and expected in err, err
    assert latest.read_bytes() == before
    assert not (_fold(root) / "checkpoint_final.pt").exists() or load_checkpoint(
        _fold(root) / "checkpoint_final.pt")["epoch"] == 1


@pytest.fixture(scope="module")
def trained_once(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained") / "root"
    subprocess.run(["cp", "-r", str(data_root), str(root)], check=True)
    assert main([*TRAIN, "--epochs", "1", "--no-validation", "--data-root", str(root)]) == 0
    return root


def test_float32_cpu_training_with_the_faster_parts_end_to_end(data_root: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    # As on an AVX2-only CPU: float32, group-norm instance norms and stacked 3D weight gradients; the checkpoint
    # must load into the network prediction builds, and the loss must stay finite.
    from autounet.networks import build_network, inference_state_dict
    from autounet.planning.plans import load_plans

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    root = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(data_root), str(root)], check=True)
    with caplog.at_level("INFO", logger="autounet"):
        assert main([*TRAIN, "--epochs", "2", "--no-amp", "--data-root", str(root)]) == 0
    lines = [r.getMessage() for r in caplog.records if "float32 on the CPU" in r.getMessage()]
    assert len(lines) == 1
    norms, convolutions = (int(word) for word in lines[0].split() if word.isdigit())
    assert norms > 0 and convolutions > 0
    fold = _fold(root)
    metrics = json.loads((fold / "metrics.json").read_text())
    assert all(v == v and abs(v) < 1e6 for v in metrics["train_loss"])  # finite
    plan = load_plans(fold.parent / "plans.json").configuration("3d_fullres")
    network = build_network(plan.network, 1, 3, deep_supervision=False)
    state = load_checkpoint(fold / "checkpoint_final.pt")["network"]
    network.load_state_dict(inference_state_dict(state), strict=True)
