"""``autounet fingerprint``: extract a dataset's fingerprint (spacings, shapes, intensity statistics)."""

from __future__ import annotations

import argparse
import logging

from autounet.cli._common import add_dataset_argument, add_processes_argument
from autounet.dataset.raw import find_raw_dataset, load_raw_dataset
from autounet.fingerprint.extract import FINGERPRINT_FILENAME, ensure_fingerprint
from autounet.paths import Paths

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``fingerprint`` subcommand.

    Args:
        subparsers: The ``autounet`` subcommand collection.
        parent: Parser with the common options, accepted after the subcommand too.
    """
    parser = subparsers.add_parser(
        "fingerprint", parents=[parent], help="extract a dataset's fingerprint",
        description=f"Read every training case once and write preprocessed/<Dataset>/{FINGERPRINT_FILENAME}: "
                    "spacings, shapes before and after cropping to the non-zero region, and foreground "
                    "intensity statistics per channel. An existing file is reused unless --overwrite is given.")
    add_dataset_argument(parser)
    add_processes_argument(parser)
    parser.add_argument("--overwrite", action="store_true", help="extract again even if the file exists")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, paths: Paths) -> int:
    """Extract (or reuse) the fingerprint of ``args.dataset``.

    Args:
        args: Parsed arguments with ``dataset``, ``num_processes`` and ``overwrite``.
        paths: The resolved data folders.

    Returns:
        0 on success.

    Raises:
        DatasetError: The dataset cannot be found or read.
    """
    dataset = load_raw_dataset(find_raw_dataset(paths.raw, args.dataset))
    output = paths.preprocessed / dataset.name
    fingerprint = ensure_fingerprint(dataset, output, args.num_processes, overwrite=args.overwrite)
    spacing = " x ".join(f"{s:.4g}" for s in fingerprint.median_spacing)
    logger.info("%s: %d case(s), %dD, %d channel(s), median spacing %s mm, median relative size after "
                "crop %.3f", dataset.name, len(fingerprint.case_ids), fingerprint.ndim, fingerprint.num_channels,
                spacing, fingerprint.median_relative_size_after_crop)
    return 0
