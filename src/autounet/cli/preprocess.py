"""``autounet preprocess``: crop, normalise and resample every training case for planned configurations."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from autounet.cli._common import add_dataset_argument, add_processes_argument
from autounet.dataset.raw import RawDataset, find_raw_dataset, load_raw_dataset
from autounet.errors import ConfigError
from autounet.paths import Paths
from autounet.planning.plans import Plans, load_plans
from autounet.preprocessing.dataset import default_configurations, preprocess_dataset

__all__ = ["add_configurations_argument", "preprocess_configurations", "register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``preprocess`` subcommand.

    Args:
        subparsers: The ``autounet`` subcommand collection.
        parent: Parser with the common options, accepted after the subcommand too.
    """
    parser = subparsers.add_parser(
        "preprocess", parents=[parent], help="preprocess the training cases for planned configurations",
        description="Crop every training case to its non-zero region, normalise and resample it as the plans "
                    "say, and store it under preprocessed/<Dataset>/<data identifier>/. Finished cases are "
                    "skipped, so an interrupted run resumes where it stopped.")
    add_dataset_argument(parser)
    add_configurations_argument(parser)
    parser.add_argument("--plans", default="plans", metavar="NAME",
                        help="plans file preprocessed/<Dataset>/NAME.json (default: %(default)s)")
    add_processes_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, paths: Paths) -> int:
    """Preprocess ``args.dataset`` for the requested configurations.

    Args:
        args: Parsed arguments with ``dataset``, ``configurations``, ``plans`` and ``num_processes``.
        paths: The resolved data folders.

    Returns:
        0 on success.

    Raises:
        DatasetError: The dataset cannot be found or a case cannot be read.
        ConfigError: Missing or malformed plans, or an unknown configuration.
    """
    dataset = load_raw_dataset(find_raw_dataset(paths.raw, args.dataset))
    output = paths.preprocessed / dataset.name
    plans_file = output / f"{args.plans}.json"
    if not plans_file.is_file():
        raise ConfigError(f"no plans here; run 'autounet plan -d {args.dataset}' first", plans_file)
    plans = load_plans(plans_file)
    preprocess_configurations(dataset, plans, args.configurations, output, args.num_processes)
    return 0


def add_configurations_argument(parser: argparse.ArgumentParser) -> None:
    """``-c/--configurations``, shared with ``plan-and-preprocess``."""
    parser.add_argument("-c", "--configurations", nargs="+", default=None, metavar="NAME",
                        help="configurations to preprocess (default: all planned ones; cascade stages that "
                             "share another configuration's data are covered by it)")


def preprocess_configurations(dataset: RawDataset, plans: Plans, names: Sequence[str] | None, output: Path,
                              num_processes: int) -> None:
    """Preprocess the named configurations (all by default) and log what was done.

    Raises:
        ConfigError: A misspelt configuration name, before any work is done.
    """
    names = tuple(names) if names else default_configurations(plans)
    for name in names:
        plans.configuration(name)
    report = preprocess_dataset(dataset, plans, names, output, num_processes)
    # Counts are per case and data folder: two folders of ten cases make twenty.
    logger.info("%d case(s) preprocessed, %d already done, over %d data folder(s): %s", report.done,
                report.skipped, len(set(report.folders.values())),
                ", ".join(f"{name} -> {folder.name}" for name, folder in report.folders.items()))
