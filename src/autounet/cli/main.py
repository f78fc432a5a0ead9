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

__all__ = ["build_parser", "main", "unexpected_error_line"]


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
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 success, 1 user error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    _configure_logging(getattr(args, "quiet", False))
    try:
        paths = resolve_paths(getattr(args, "data_root", None))
        return int(args.handler(args, paths) or 0)
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
    except Exception as exc:  # noqa: BLE001 - the last resort: never a traceback without --debug
        if debug:
            raise
        print(f"autounet {args.command}: {unexpected_error_line(exc)}", file=sys.stderr)
        return 1


def unexpected_error_line(exc: BaseException) -> str:
    """One line for an exception no check anticipated: its type, message and file (if it names one).

    Args:
        exc: The exception that ended the command.

    Returns:
        A line like ``unexpected error (ValueError: ...) on /path/file; rerun with --debug for the traceback``.
    """
    message = " ".join(str(exc).split()) or "no message"
    filename = getattr(exc, "filename", None)
    where = f" on {filename}" if filename else ""
    return (f"unexpected error ({type(exc).__name__}: {message}){where}; this is a bug or an unchecked input, "
            "rerun with --debug for the traceback")


if __name__ == "__main__":  # pragma: no cover - `python -m autounet.cli.main`
    sys.exit(main())
