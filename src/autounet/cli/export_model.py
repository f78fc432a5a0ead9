"""``autounet export-model``: pack trained configurations of a dataset into one zip to share."""

from __future__ import annotations

import argparse
from pathlib import Path

from autounet.cli._common import add_dataset_argument
from autounet.dataset.raw import find_raw_dataset
from autounet.errors import CheckpointError, ConfigError, DatasetError
from autounet.paths import Paths

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``export-model`` subcommand.

    Args:
        subparsers: The ``autounet`` subcommand collection.
        parent: Parser with the common options, accepted after the subcommand too.
    """
    parser = subparsers.add_parser(
        "export-model", parents=[parent], help="pack trained configurations into a zip to share",
        description="Write results/<Dataset>/<configuration>/{plans.json,dataset.json,postprocessing.json} and "
                    "fold_N/<checkpoint> of each configuration (weights and metadata only, no optimizer state), "
                    "results/<Dataset>/find_best/{choice.json,postprocessing.json} when present, and a manifest "
                    "(autounet_model.json) with the SHA-256 of every file into one zip. A cascade configuration "
                    "brings its previous stage (3d_lowres) along. Install it with 'autounet install-model'.")
    add_dataset_argument(parser)
    parser.add_argument("-c", "--configurations", nargs="+", required=True, metavar="CONFIG",
                        help="configurations to export (2d, 3d_fullres, 3d_cascade_fullres, ...)")
    parser.add_argument("-f", "--folds", nargs="+", metavar="FOLD",
                        help="fold indices or 'all' (default: every fold_* folder holding the checkpoint)")
    parser.add_argument("--checkpoint", default="checkpoint_final.pt", metavar="NAME",
                        help="checkpoint file in each fold folder; the archive keeps the name "
                             "(default: %(default)s)")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="ZIP", help="the zip file to write")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, paths: Paths) -> int:
    """Export the model and print what went into the archive.

    Args:
        args: Parsed arguments of :func:`register`.
        paths: The resolved data folders; the model is read from ``paths.results``.

    Returns:
        0 on success.

    Raises:
        CheckpointError: No trained model for the dataset, or a missing configuration, fold or checkpoint.
        ConfigError: A fold that is neither an index nor ``all``, or a malformed JSON file.
    """
    # Imported here, not at the top: building the parser (`autounet -h`) must not import torch (seconds).
    from autounet.sharing import export_model

    try:
        dataset = find_raw_dataset(paths.results, args.dataset)
    except DatasetError:
        raise CheckpointError(f"no trained model for dataset '{args.dataset}'; train it first or set "
                              "--data-root / nnUNet_results", paths.results) from None
    folds = _parse_folds(args.folds) if args.folds else None
    manifest = export_model(dataset, args.configurations, args.output, folds, args.checkpoint)
    for configuration in manifest.configurations:
        print(f"{manifest.dataset_name} {configuration}: folds {', '.join(manifest.folds[configuration])}")
    size_mib = args.output.stat().st_size / 2**20
    print(f"exported: {len(manifest.files)} file(s), {size_mib:.1f} MiB -> {args.output}")
    print(f"install with: autounet install-model {args.output}")
    return 0


def _parse_folds(texts: list[str]) -> list[int | str]:
    folds: list[int | str] = []
    for text in texts:
        if text != "all" and not text.isdigit():
            raise ConfigError(f"fold must be an index (0, 1, ...) or 'all', got '{text}'")
        folds.append(text if text == "all" else int(text))
    return folds
