"""Argument groups shared by the subcommands."""

from __future__ import annotations

import argparse
import os

from autounet.devices import DEVICE_PATTERN

__all__ = ["add_dataset_argument", "add_device_argument", "add_processes_argument", "common_parent",
           "default_processes"]


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
    parser.add_argument(flag, "--num-processes", type=int, default=default_processes(), metavar="N",
                        dest="num_processes", help="worker processes (default: %(default)s)")


def _device_name(text: str) -> str:
    """argparse type of ``--device``: a known device name (whether it exists is checked when the command runs)."""
    if not DEVICE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"unknown device '{text}'; use auto, cpu, cuda, cuda:N or mps")
    return text


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: ``auto`` (default: CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    parser.add_argument("--device", type=_device_name, default="auto",
                        help="auto (default: CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps")
