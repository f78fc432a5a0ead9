"""``autounet plan-and-preprocess``: verify, fingerprint, plan and preprocess in one resumable command."""

from __future__ import annotations

import argparse
import logging

from autounet.cli._common import add_dataset_argument
from autounet.cli.plan import add_planning_arguments
from autounet.cli.preprocess import add_configurations_argument, preprocess_configurations
from autounet.dataset.raw import find_raw_dataset, load_raw_dataset
from autounet.paths import Paths

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
    add_configurations_argument(parser)
    add_planning_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, paths: Paths) -> int:
    """Plan, then preprocess the planned configurations."""
    # Imported here, not at the top: building the parser (`autounet -h`) must not import torch (seconds).
    from autounet.planning.api import plan_dataset

    root = find_raw_dataset(paths.raw, args.dataset)
    plans, plans_path = plan_dataset(root, paths.preprocessed, args.preset, args.gpu_memory, args.num_processes,
                                     verify=not args.no_verify, overwrite_fingerprint=args.overwrite_fingerprint)
    preprocess_configurations(load_raw_dataset(root), plans, args.configurations, plans_path.parent,
                              args.num_processes)
    print(f"plans: {plans_path}")
    return 0
