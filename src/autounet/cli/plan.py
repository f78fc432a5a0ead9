"""``autounet plan``: fingerprint and plan a dataset, or plan from a fingerprint file alone."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from autounet.cli._common import add_processes_argument, dataset_spec, memory_gib
from autounet.dataset.description import load_dataset_json
from autounet.dataset.raw import find_raw_dataset
from autounet.errors import ConfigError
from autounet.fingerprint.extract import load_fingerprint
from autounet.paths import Paths
from autounet.planning.plans import describe_plans, save_plans
from autounet.planning.presets import PRESETS

__all__ = ["add_planning_arguments", "register", "run"]

logger = logging.getLogger(__name__)


def add_planning_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``plan`` and ``plan-and-preprocess``."""
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS),
                        help="network family and memory calibration (default: plain U-Net; resenc_m/l/xl: "
                             "residual encoder, like nnU-Net's ResEnc presets)")
    parser.add_argument("--gpu-memory", type=memory_gib, default=None, metavar="GIB", dest="gpu_memory",
                        help="GPU memory budget in GiB (default: the preset's, 8 for 'default')")
    parser.add_argument("--no-verify", action="store_true", help="skip the dataset integrity checks")
    parser.add_argument("--overwrite-fingerprint", action="store_true",
                        help="re-extract the fingerprint even if one exists")
    add_processes_argument(parser)


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``plan`` subcommand."""
    parser = subparsers.add_parser(
        "plan", parents=[parent], help="fingerprint a dataset and plan its configurations",
        description="Verify the dataset, extract its fingerprint (reused if present) and write plans.json to "
                    "preprocessed/<Dataset>/. With --fingerprint, --dataset-json and --out, plan from those "
                    "files alone (an nnU-Net v2 dataset_fingerprint.json works too), reading no image.")
    parser.add_argument("-d", "--dataset", type=dataset_spec, metavar="ID",
                        help="dataset id, folder name or short name")
    parser.add_argument("--fingerprint", type=Path, metavar="FILE", help="plan from this fingerprint file")
    parser.add_argument("--dataset-json", type=Path, metavar="FILE", help="dataset.json for --fingerprint")
    parser.add_argument("--out", type=Path, metavar="FILE", help="plans file to write with --fingerprint")
    parser.add_argument("--name", default=None, help="dataset name recorded in plans from --fingerprint")
    add_planning_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, paths: Paths) -> int:
    """Plan a dataset (``-d``) or a fingerprint file (``--fingerprint``)."""
    # Imported here, not at the top: building the parser (`autounet -h`) must not import torch (seconds).
    from autounet.planning.api import plan_dataset

    if args.fingerprint is not None:
        return _plan_from_files(args)
    if args.dataset is None:
        raise ConfigError("give -d/--dataset, or --fingerprint with --dataset-json and --out")
    root = find_raw_dataset(paths.raw, args.dataset)
    _, path = plan_dataset(root, paths.preprocessed, args.preset, args.gpu_memory, args.num_processes,
                           verify=not args.no_verify, overwrite_fingerprint=args.overwrite_fingerprint)
    print(f"plans: {path}")
    return 0


def _plan_from_files(args: argparse.Namespace) -> int:
    from autounet.planning.planner import plan_experiment  # not at the top: see run()

    if args.dataset_json is None or args.out is None:
        raise ConfigError("--fingerprint needs --dataset-json FILE and --out FILE")
    fingerprint = load_fingerprint(args.fingerprint)
    description = load_dataset_json(args.dataset_json)
    name = args.name or description.extra.get("name") or args.fingerprint.parent.name
    plans = plan_experiment(fingerprint, description, str(name), args.preset, args.gpu_memory)
    save_plans(args.out, plans)
    print(describe_plans(plans))
    print(f"plans: {args.out}")
    return 0
