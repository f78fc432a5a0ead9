"""``autounet verify``: check a raw dataset and list every problem, one line each."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from autounet.cli._common import add_dataset_argument, add_processes_argument
from autounet.dataset.raw import find_raw_dataset
from autounet.dataset.verify import DatasetSummary, VerificationReport, verify_command, verify_dataset
from autounet.paths import Paths

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``verify`` subcommand.

    Args:
        subparsers: The ``autounet`` subcommand collection.
        parent: Parser with the common options, accepted after the subcommand too.
    """
    parser = subparsers.add_parser(
        "verify", parents=[parent], help="check a raw dataset and list every problem",
        description="Check a raw dataset (dataset.json, file names, channels, labels, shapes, geometry) and "
                    "list every problem at once. Exit code 0 when it is usable, 1 otherwise. The dataset "
                    "folder is only read, never changed.")
    add_dataset_argument(parser)
    add_processes_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, paths: Paths) -> int:
    """Verify the dataset named by ``args.dataset``.

    Problems and warnings go to stderr, one line each; the summary of a clean dataset goes to stdout.

    Args:
        args: Parsed arguments with ``dataset`` and ``num_processes``.
        paths: The resolved data folders.

    Returns:
        0 if the dataset has no problems, 1 otherwise.

    Raises:
        DatasetError: The dataset cannot be found.
    """
    root = find_raw_dataset(paths.raw, args.dataset)
    report = verify_dataset(root, num_processes=args.num_processes)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for problem in report.problems:
        print(str(problem), file=sys.stderr)
    if not report.ok:
        count = len(report.problems)
        print(f"{count} problem(s) found in {root.name}; fix them and run '{_command(root, paths)}' again",
              file=sys.stderr)
        return 1
    print(_format_summary(report))
    return 0


def _command(root: Path, paths: Paths) -> str:
    # By id only where 'autounet verify -d ID' finds it again: in the raw folder of these paths.
    if root.parent.resolve() == paths.raw.resolve():
        return verify_command(root)
    return f"autounet verify -d {shlex.quote(str(root))}"


def _format_summary(report: VerificationReport) -> str:
    summary = report.summary
    if summary is None:  # a clean dataset always has readable cases; stay safe anyway
        return f"{report.dataset.name}: no problems found"
    warnings = f", {len(report.warnings)} warning(s)" if report.warnings else ""
    lines = [
        f"{summary.name}: no problems found{warnings}",
        f"  cases:    {summary.num_cases} training, {summary.num_test_cases} test",
        f"  channels: {summary.num_channels} ("
        + ", ".join(f"{i}: {name}" for i, name in enumerate(summary.channel_names)) + ")",
        f"  images:   {summary.ndim}D, file ending {summary.file_ending}",
        f"  shape:    median {_axes(summary.median_shape)} (min {_axes(summary.min_shape)}, "
        f"max {_axes(summary.max_shape)}) voxels",
        f"  spacing:  median {_axes(summary.median_spacing)} mm",
        f"  labels:   {_labels(summary)}",
    ]
    return "\n".join(lines)


def _axes(values: tuple[float, ...]) -> str:
    return " x ".join(f"{v:.4g}" for v in values)


def _labels(summary: DatasetSummary) -> str:
    parts = []
    for name, value in summary.labels.items():
        text = f"{name}={list(value) if isinstance(value, tuple) else value}"
        if name.rsplit("/", 1)[-1] != "background":  # "task/background" for multi-task datasets
            text += f" (in {summary.cases_per_label.get(name, 0)}/{summary.num_cases} cases)"
        parts.append(text)
    return ", ".join(parts)
