"""``autounet export-model``: pack trained configurations of a dataset into one zip to share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from autounet.cli._common import dataset_spec, fold
from autounet.dataset.raw import find_raw_dataset
from autounet.errors import CheckpointError, ConfigError, DatasetError
from autounet.paths import Paths

if TYPE_CHECKING:
    from autounet.sharing.manifest import ModelManifest

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
                    "find-best's choice with the postprocessing it chose (results/<Dataset>/find_best/"
                    "{choice.json,postprocessing.json}) when present, and a manifest (autounet_model.json) with the "
                    "SHA-256 of every file into one zip; or a deployed model folder (-m). A cascade configuration "
                    "brings its previous stage (3d_lowres) along. The zip appears whole or not at all; an existing "
                    "file is replaced only with --force. Install it with 'autounet install-model'.")
    parser.add_argument("-d", "--dataset", type=dataset_spec, metavar="ID",
                        help="dataset id (501), folder name (Dataset501_Brain) or short name (Brain), with -c")
    parser.add_argument("-c", "--configurations", nargs="+", metavar="CONFIG",
                        help="configurations to export (2d, 3d_fullres, 3d_cascade_fullres, ...), with -d")
    parser.add_argument("-m", "--model-folder", type=Path, metavar="DIR",
                        help="instead of -d/-c: one model folder, results/<Dataset>/<run folder> or a deployed "
                             "model folder ('autounet deploy'; its files are checked against deploy.json and go in "
                             "whole)")
    parser.add_argument("-f", "--folds", nargs="+", type=fold, metavar="FOLD",
                        help="fold indices or 'all' (default: every fold_* folder holding the checkpoint)")
    parser.add_argument("--checkpoint", default="checkpoint_final.pt", metavar="NAME",
                        help="checkpoint file in each fold folder; the archive keeps the name "
                             "(default: %(default)s)")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="ZIP",
                        help="the zip file to write (an existing file is an error unless --force)")
    parser.add_argument("--force", action="store_true", help="replace the zip file if it exists")
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
    manifest = _export(args, paths)
    for configuration in manifest.configurations:
        print(f"{manifest.dataset_name} {configuration}: folds {', '.join(manifest.folds[configuration])}")
    size_mib = args.output.stat().st_size / 2**20
    print(f"exported: {len(manifest.files)} file(s), {size_mib:.1f} MiB -> {args.output}")
    print(f"install with: autounet install-model {args.output}")
    return 0


def _export(args: argparse.Namespace, paths: Paths) -> ModelManifest:
    """Export what ``-d/-c`` or ``-m`` names."""
    # Imported here, not at the top: building the parser (`autounet -h`) must not import torch (seconds).
    from autounet.deploy.model_folder import is_deployed_model_folder
    from autounet.sharing import export_deployed_model, export_model

    folds = _parse_folds(args.folds) if args.folds else None
    if args.model_folder is not None:
        if args.dataset is not None or args.configurations is not None:
            raise ConfigError("give either -m/--model-folder or -d/--dataset with -c/--configurations, not both")
        folder = Path(args.model_folder)
        if not folder.is_dir():
            raise CheckpointError("model folder not found", folder)
        if is_deployed_model_folder(folder):
            if folds is not None:
                raise ConfigError("a deployed model is exported whole: -f/--folds does not apply to it")
            return export_deployed_model(folder, args.output, overwrite=args.force)
        return export_model(folder.absolute().parent, [folder.absolute().name], args.output, folds,
                            args.checkpoint, overwrite=args.force)
    if args.dataset is None or args.configurations is None:
        raise ConfigError("give -d/--dataset and -c/--configurations, or -m/--model-folder")
    try:
        dataset = find_raw_dataset(paths.results, args.dataset)
    except DatasetError:
        raise CheckpointError(f"no trained model for dataset '{args.dataset}'; train it first or set "
                              "--data-root / nnUNet_results", paths.results) from None
    return export_model(dataset, args.configurations, args.output, folds, args.checkpoint, overwrite=args.force)


def _parse_folds(texts: list[str]) -> list[int | str]:
    folds: list[int | str] = []
    for text in texts:
        if text != "all" and not text.isdigit():
            raise ConfigError(f"fold must be an index (0, 1, ...) or 'all', got '{text}'")
        folds.append(text if text == "all" else int(text))
    return folds
