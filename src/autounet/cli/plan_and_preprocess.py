"""``autounet plan-and-preprocess``: verify, fingerprint, plan and preprocess in one resumable command."""

from __future__ import annotations

import argparse
import logging

from autounet.cli._common import add_dataset_argument
from autounet.cli.plan import add_planning_arguments
from autounet.dataset.raw import find_raw_dataset, load_raw_dataset
from autounet.paths import Paths
from autounet.planning.api import plan_dataset
from autounet.preprocessing.dataset import default_configurations, preprocess_dataset

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``plan-and-preprocess`` subcommand."""
    parser = subparsers.add_parser(
        "plan-and-preprocess", parents=[parent], help="verify, fingerprint, plan and preprocess a dataset",
        description="The whole first half of the pipeline: integrity checks, fingerprint (reused if present), "
                    "plans, and preprocessed data for every planned configuration. Finished cases are "
                    "skipped, so rerunning after an interruption resumes.")
    add_dataset_argument(parser)
    parser.add_argument("-c", "--configurations", nargs="+", default=None, metavar="NAME",
                        help="configurations to preprocess (default: all planned ones)")
    add_planning_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, paths: Paths) -> int:
    """Plan, then preprocess the planned configurations."""
    root = find_raw_dataset(paths.raw, args.dataset)
    plans, plans_path = plan_dataset(root, paths.preprocessed, args.preset, args.gpu_memory, args.num_processes,
                                     verify=not args.no_verify, overwrite_fingerprint=args.overwrite_fingerprint)
    names = tuple(args.configurations) if args.configurations else default_configurations(plans)
    for name in names:
        plans.configuration(name)  # fail on a misspelt name before any work
    dataset = load_raw_dataset(root)
    report = preprocess_dataset(dataset, plans, names, plans_path.parent, args.num_processes)
    logger.info("%d case(s) preprocessed, %d already done: %s", report.done, report.skipped,
                ", ".join(f"{name} -> {folder.name}" for name, folder in report.folders.items()))
    print(f"plans: {plans_path}")
    return 0
