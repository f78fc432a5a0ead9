"""The ``autounet`` command: one entry point with subcommands, each a thin layer over an API function."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from autounet import __version__
from autounet.cli import _commands
from autounet.cli._common import common_parent
from autounet.errors import AutounetError
from autounet.paths import resolve_paths
from autounet.progress import close_progress_bars

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for documentation and tests)."""
    parent = common_parent()
    parser = argparse.ArgumentParser(
        prog="autounet", parents=[parent],
        description="Self-configuring segmentation for biomedical images. Reads nnU-Net v2 raw datasets.",
        epilog="Run 'autounet COMMAND -h' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"autounet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _commands.REGISTRARS:
        register(subparsers, parent)
    return parser


def _configure_logging(quiet: bool) -> None:
    """autounet's own messages at INFO (WARNING with ``-q``), every other library's from WARNING up: the ONNX
    exporter's graph passes, for one, log a line per pass at INFO that says nothing to the user. A process
    that configured logging itself (an embedding program, pytest) keeps its configuration."""
    if logging.getLogger().handlers:
        return
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("autounet").setLevel(logging.WARNING if quiet else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 success, 1 error, 2 usage error, 130 interrupted).

    Errors are one line on stderr without a traceback (``--debug`` shows it), unexpected ones included.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    _configure_logging(getattr(args, "quiet", False))
    try:
        return _run(args)
    except AutounetError as exc:
        if debug:
            raise
        print(f"autounet {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"autounet {args.command}: interrupted; finished work is kept, rerun to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # the last resort: checks at the right depth give better messages than this
        if debug:
            raise
        print(f"autounet {args.command}: error: {_unexpected(exc)} (unexpected; rerun with --debug for the "
              "traceback, and please report it)", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    """Run the subcommand; on any error, first close the progress bars it left open, so that the message (or
    the ``--debug`` traceback) starts on a line of its own instead of being appended to a bar."""
    try:
        paths = resolve_paths(getattr(args, "data_root", None))
        return int(args.handler(args, paths) or 0)
    except BaseException:
        close_progress_bars()
        raise


def _unexpected(exc: BaseException) -> str:
    """One line for an exception no check anticipated: its type, message and, where known, the file."""
    filename = getattr(exc, "filename", None)
    message = str(exc).splitlines()[0] if str(exc) else ""
    where = f"{filename}: " if filename and str(filename) not in message else ""
    return f"{where}{type(exc).__name__}{': ' + message if message else ''}"


if __name__ == "__main__":  # pragma: no cover - `python -m autounet.cli.main`
    sys.exit(main())
