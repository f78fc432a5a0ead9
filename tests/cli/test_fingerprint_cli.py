"""``autounet fingerprint``: writes, reuses, overwrites (parser built here until the command is wired)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from autounet.cli import fingerprint as fingerprint_cli
from autounet.cli._common import common_parent
from autounet.errors import DatasetError
from autounet.fingerprint import load_fingerprint
from autounet.paths import Paths


def _parse(argv: list[str]) -> argparse.Namespace:
    parent = common_parent()
    parser = argparse.ArgumentParser(parents=[parent])
    fingerprint_cli.register(parser.add_subparsers(dest="command", required=True), parent)
    return parser.parse_args(argv)


def test_writes_then_reuses_then_overwrites(tiny_dataset: Callable[..., Path], tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    root = tiny_dataset(num_cases=2)
    paths = Paths.under(tmp_path)
    args = _parse(["fingerprint", "-d", "999", "-np", "1"])
    assert args.handler(args, paths) == 0
    path = paths.preprocessed / root.name / "fingerprint.json"
    fingerprint = load_fingerprint(path)
    assert fingerprint.case_ids == ("case_000", "case_001") and fingerprint.num_channels == 2
    stamp = path.stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        assert fingerprint_cli.run(args, paths) == 0
    assert "reusing" in caplog.text and path.stat().st_mtime_ns == stamp
    overwrite = _parse(["fingerprint", "-d", "Tiny", "-np", "1", "--overwrite"])
    assert fingerprint_cli.run(overwrite, paths) == 0
    assert path.stat().st_mtime_ns != stamp and load_fingerprint(path) == fingerprint


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no dataset '5'"):
        fingerprint_cli.run(_parse(["fingerprint", "-d", "5"]), Paths.under(tmp_path))
