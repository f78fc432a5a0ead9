"""``autounet install-model``: install a model exported with ``autounet export-model``, from a file or URL."""

from __future__ import annotations

import argparse

from autounet.cli._common import memory_gib
from autounet.errors import ConfigError
from autounet.paths import Paths
from autounet.sharing.manifest import DEFAULT_MAX_BYTES

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``install-model`` subcommand.

    Args:
        subparsers: The ``autounet`` subcommand collection.
        parent: Parser with the common options, accepted after the subcommand too.
    """
    parser = subparsers.add_parser(
        "install-model", parents=[parent], help="install a shared model zip (file or http(s) URL)",
        description="Install a zip made by 'autounet export-model' into results/<Dataset>/. Everything is checked "
                    "before anything is installed: member names (no absolute paths, '..', drive letters, "
                    "backslashes, links or duplicates), total unpacked size, the SHA-256 of every file against "
                    "the manifest, plans and dataset.json, and every checkpoint loads with weights_only=True "
                    "(nothing is unpickled), find-best's choice names a postprocessing file the archive holds, and a "
                    "deployed model's files match its deploy.json. Existing model folders are an error unless "
                    "--force; then they are replaced only after all checks passed. Work is staged in "
                    "results/.autounet-staging-*; one left by a killed run is removed on the next start.")
    parser.add_argument("source", metavar="ZIP_OR_URL", help="a model zip file, or an http:// or https:// URL")
    parser.add_argument("--force", action="store_true", help="replace model folders that exist already")
    parser.add_argument("--max-size-gib", type=memory_gib, default=DEFAULT_MAX_BYTES / 2**30, metavar="GIB",
                        help="largest download and unpacked size accepted (default: %(default)g)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, paths: Paths) -> int:
    """Install the model and print where it went and how to predict with it.

    Args:
        args: Parsed arguments of :func:`register`.
        paths: The resolved data folders; the model goes to ``paths.results``.

    Returns:
        0 on success.

    Raises:
        CheckpointError: A failed download, or an archive that fails a check, or an existing model folder
            without ``--force``.
        ConfigError: A non-positive ``--max-size-gib``.
    """
    # Imported here, not at the top: building the parser (`autounet -h`) must not import torch (seconds).
    from autounet.sharing import install_model

    if not args.max_size_gib > 0:
        raise ConfigError(f"--max-size-gib must be positive, got {args.max_size_gib}")
    installed = install_model(args.source, paths.results, force=args.force,
                              max_bytes=int(args.max_size_gib * 2**30),
                              show_progress=not getattr(args, "quiet", False))
    for folder in installed.folders:
        print(f"installed: {folder}")
    extra = "" if installed.checkpoint == "checkpoint_final.pt" else f" --checkpoint {installed.checkpoint}"
    root = getattr(args, "data_root", None)
    extra += f" --data-root {root}" if root is not None else ""
    if installed.deployed:
        print(f"predict with: autounet predict -i IN -o OUT -m {installed.folders[0]}")
        return 0
    for configuration in installed.configurations:
        print(f"predict with: autounet predict -i IN -o OUT -d {installed.dataset_name} -c {configuration}{extra}")
    return 0
