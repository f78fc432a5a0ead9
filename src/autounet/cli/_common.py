"""Argument groups shared by the subcommands."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

__all__ = [
    "add_dataset_argument",
    "add_processes_argument",
    "common_parent",
    "default_processes",
    "non_negative_int",
    "output_dir",
    "positive_float",
    "positive_int",
    "step_size",
]


def common_parent() -> argparse.ArgumentParser:
    """Options accepted both before and after the subcommand (``autounet --debug verify`` and
    ``autounet verify --debug``). SUPPRESS defaults keep a value given before the subcommand."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("common options")
    group.add_argument("--data-root", default=argparse.SUPPRESS, metavar="DIR",
                       help="folder holding raw/, preprocessed/ and results/ (default: $AUTOUNET_DATA or "
                            "./autounet_data; nnUNet_raw/_preprocessed/_results are honoured when set)")
    group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show full tracebacks on errors")
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="log warnings and errors only")
    return parent


def default_processes() -> int:
    """Worker processes by default: the CPU cores, at most 8 (I/O and memory bound beyond that)."""
    return max(1, min(8, os.cpu_count() or 1))


def add_dataset_argument(parser: argparse.ArgumentParser) -> None:
    """``-d/--dataset``: a dataset id, folder name or short name."""
    parser.add_argument("-d", "--dataset", required=True, metavar="ID",
                        help="dataset id (501), folder name (Dataset501_Brain) or short name (Brain)")


def add_processes_argument(parser: argparse.ArgumentParser, flag: str = "-np") -> None:
    """``-np/--num-processes``: worker processes for per-case work."""
    parser.add_argument(flag, "--num-processes", type=positive_int, default=default_processes(), metavar="N",
                        dest="num_processes", help="worker processes (default: %(default)s)")


def positive_int(text: str) -> int:
    """argparse ``type=``: an integer >= 1 (batch sizes, epochs, process counts)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse ``type=``: an integer >= 0 (worker threads, test cases)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse ``type=``: a finite number > 0 (memory sizes, size limits)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got '{text}'") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def step_size(text: str) -> float:
    """argparse ``type=``: a sliding-window step as a fraction of the patch, in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (a fraction of the patch size), got {text}")
    return value


def output_dir(text: str) -> Path:
    """argparse ``type=``: a folder that exists or can be created, i.e. neither it nor a parent is a file."""
    path = Path(text)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise argparse.ArgumentTypeError(f"'{candidate}' is a file, not a folder")
            break
    return path


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got '{text}'") from None
