"""``autounet preprocess``: plans lookup, default configurations, summary (parser built here until wired)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from autounet.cli import preprocess as preprocess_cli
from autounet.cli._common import common_parent
from autounet.errors import ConfigError
from autounet.networks.spec import UNetSpec
from autounet.paths import Paths
from autounet.planning.plans import ChannelNormalization, ConfigurationPlan, Plans, save_plans
from autounet.preprocessing import load_case


def _parse(argv: list[str]) -> argparse.Namespace:
    parent = common_parent()
    parser = argparse.ArgumentParser(parents=[parent])
    preprocess_cli.register(parser.add_subparsers(dest="command", required=True), parent)
    return parser.parse_args(argv)


def _configuration(name: str, spacing: tuple[float, ...]) -> ConfigurationPlan:
    ndim = len(spacing)
    network = UNetSpec(ndim=ndim, encoder="plain", features_per_stage=(8, 16), kernel_sizes=((3,) * ndim,) * 2,
                       strides=((1,) * ndim, (2,) * ndim), blocks_per_stage=(1, 1), convs_per_decoder_stage=(1,))
    return ConfigurationPlan(name=name, ndim=ndim, spacing=spacing, median_shape=(8,) * ndim,
                             patch_size=(8,) * ndim, batch_size=2, network=network,
                             normalization=(ChannelNormalization("zscore"),) * 2)


def _write_plans(folder: Path, name: str = "plans") -> None:
    plans = Plans(schema_version=1, dataset_name=folder.name, planner="test", gpu_memory_gib=8.0,
                  axis_order=(0, 1, 2), original_median_spacing=(3.0, 1.0, 1.0), original_median_shape=(8, 12, 12),
                  configurations={"2d": _configuration("2d", (1.0, 1.2)),
                                  "3d_fullres": _configuration("3d_fullres", (2.0, 1.0, 1.0))})
    save_plans(folder / f"{name}.json", plans)


def test_preprocesses_all_configurations_by_default(tiny_dataset: Callable[..., Path], tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    root = tiny_dataset(num_cases=2)
    paths = Paths.under(tmp_path)
    _write_plans(paths.preprocessed / root.name)
    args = _parse(["preprocess", "-d", "999", "-np", "1"])
    with caplog.at_level(logging.INFO):
        assert args.handler(args, paths) == 0
    assert "4 case(s) preprocessed, 0 already done, over 2 data folder(s)" in caplog.text
    folders = sorted(p for p in (paths.preprocessed / root.name).iterdir() if p.is_dir())
    assert [p.name[:3] for p in folders] == ["2d_", "3d_"]
    data, seg, _ = load_case(folders[1], "case_000")
    assert data.shape[1:] == seg.shape == (12, 12, 12)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert preprocess_cli.run(_parse(["preprocess", "-d", "999", "-c", "2d", "-np", "1"]), paths) == 0
    assert "0 case(s) preprocessed, 2 already done, over 1 data folder(s)" in caplog.text


def test_named_plans_and_configuration(tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    root = tiny_dataset(num_cases=1)
    paths = Paths.under(tmp_path)
    _write_plans(paths.preprocessed / root.name, name="plans_custom")
    args = _parse(["preprocess", "-d", "Tiny", "--plans", "plans_custom", "-c", "3d_fullres", "-np", "1"])
    assert preprocess_cli.run(args, paths) == 0
    assert len([p for p in (paths.preprocessed / root.name).iterdir() if p.is_dir()]) == 1
    with pytest.raises(ConfigError, match="no configuration '3d_lowres'"):
        preprocess_cli.run(_parse(["preprocess", "-d", "Tiny", "--plans", "plans_custom", "-c", "3d_lowres"]),
                           paths)


def test_missing_plans_tell_what_to_run(tiny_dataset: Callable[..., Path], tmp_path: Path) -> None:
    tiny_dataset(num_cases=1)
    with pytest.raises(ConfigError, match="run 'autounet plan -d 999' first") as info:
        preprocess_cli.run(_parse(["preprocess", "-d", "999"]), Paths.under(tmp_path))
    assert "plans.json" in str(info.value)
