"""Argument groups shared by the subcommands."""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path

from autounet.devices import DEVICE_PATTERN

__all__ = ["add_dataset_argument", "add_device_argument", "add_processes_argument", "axis_size", "batch_count",
           "case_count", "common_parent", "dataset_id", "dataset_spec", "default_processes", "fold", "fraction",
           "loader_workers", "memory_gib", "non_negative_float", "non_negative_int", "optional_case_count",
           "output_folder", "percentage_points", "positive_float", "positive_int", "random_seed", "unit_interval",
           "worker_count"]

# No count, size or epoch number a user means is this large; beyond it values overflow C integers (torch, numpy).
MAX_INT = 2**31 - 1
# A memory budget beyond a pebibyte is a typo (or "1e30"); planning would size patches to nonsense.
MAX_MEMORY_GIB = 2.0**20
# Beyond these a value is a typo that would ask the OS for absurd numbers of processes, threads, patches in
# memory, files or voxels, and fail late (or exhaust the machine) instead of at once.
MAX_WORKERS = 1024
MAX_PATCHES = 4096
MAX_CASES = 100_000
MAX_AXIS_SIZE = 2048
# No tolerance (in the spacing's units) or size a user means is larger.
MAX_FLOAT = 1e6
# Longer text is no integer any flag accepts (the largest, a seed, has 10 digits); int() would take
# quadratic time on it and refuse more than 4300 digits with a ValueError of its own.
MAX_INTEGER_TEXT = 32
# What int() reads as an integer (ASCII digits; it accepts Unicode digits too, which no flag needs).
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+(_[0-9]+)*")
# Dataset folders are DatasetNNN_Name: three digits (DatasetNNN_ accepts 000).
MAX_DATASET_ID = 999
# A name longer than this cannot be a folder on any common file system (NAME_MAX), nor a path (PATH_MAX).
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
# Values echoed in an error message are cut to this many characters, so that the message stays one line.
_SHOWN_CHARACTERS = 40


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


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a bad value is a usage error, exit 2, naming the flag)."""
    return _integer_in(text, 1, MAX_INT)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _integer_in(text, 0, MAX_INT)


def worker_count(text: str) -> int:
    """argparse type: processes or threads, 1 to 1024 (asking the OS for billions of them is a typo)."""
    return _integer_in(text, 1, MAX_WORKERS)


def loader_workers(text: str) -> int:
    """argparse type: background loader threads, 0 (load in the main thread) to 1024."""
    return _integer_in(text, 0, MAX_WORKERS)


def batch_count(text: str) -> int:
    """argparse type: patches per batch or per calibration set, 1 to 4096 (each patch is memory)."""
    return _integer_in(text, 1, MAX_PATCHES)


def case_count(text: str) -> int:
    """argparse type: a number of (synthetic) cases to write, 1 to 100000 (each is a file)."""
    return _integer_in(text, 1, MAX_CASES)


def optional_case_count(text: str) -> int:
    """argparse type: a number of (synthetic) cases that may be none, e.g. test cases, 0 to 100000."""
    return _integer_in(text, 0, MAX_CASES)


def axis_size(text: str) -> int:
    """argparse type: voxels along one axis of an image to generate, 1 to 2048."""
    return _integer_in(text, 1, MAX_AXIS_SIZE)


def fold(text: str) -> str:
    """argparse type: a fold, an index (0, 1, ...) or ``all``; the text is kept (commands parse it further)."""
    if text == "all":
        return text
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"a fold is an index (0, 1, ...) or 'all', got {_shown(text)}")
    _integer_in(text, 0, MAX_INT)
    return text


def fraction(text: str) -> float:
    """argparse type: a number in (0, 1] (e.g. the sliding window's step size)."""
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {_shown(text)}")
    return value


def unit_interval(text: str) -> float:
    """argparse type: a number in [0, 1] (a score or an overlap threshold)."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {_shown(text)}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 and at most a million (sizes and tolerances)."""
    return _number_in(text, 0.0, MAX_FLOAT, include_low=False)


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 and at most a million (0 where it means "none at all")."""
    return _number_in(text, 0.0, MAX_FLOAT, include_low=True)


def percentage_points(text: str) -> float:
    """argparse type: a number of percentage points, 0 to 100 (e.g. the Dice a deployment may lose)."""
    return _number_in(text, 0.0, 100.0, include_low=True)


def memory_gib(text: str) -> float:
    """argparse type: a memory or size budget in GiB, a finite number in (0, 1048576]."""
    return _number_in(text, 0.0, MAX_MEMORY_GIB, include_low=False)


def random_seed(text: str) -> int:
    """argparse type: a random seed, 0 to 2**32 - 1 (what NumPy and torch both accept)."""
    value = _integer(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must lie in 0..{2**32 - 1}, got {value}")
    return value


def dataset_id(text: str) -> int:
    """argparse type: a dataset id, 1 to 999 (``Dataset001`` .. ``Dataset999``, as nnU-Net numbers them)."""
    value = _integer(text)
    if not 1 <= value <= MAX_DATASET_ID:
        raise argparse.ArgumentTypeError(f"dataset ids run from 1 to {MAX_DATASET_ID}, got {value}")
    return value


def dataset_spec(text: str) -> str:
    """argparse type of ``-d/--dataset``: an id, a folder or short name, or a path; the text is kept.

    Digits are an id, 0 to 999 (an existing ``Dataset000_X`` can be named too); a name or path must fit the
    file system's limits, else looking it up fails with an OS error instead of "no such dataset".
    """
    if text.isascii() and text.isdigit():
        if len(text) > MAX_INTEGER_TEXT or int(text) > MAX_DATASET_ID:
            raise argparse.ArgumentTypeError(f"dataset ids run from 0 to {MAX_DATASET_ID} (DatasetNNN_Name), "
                                             f"got {_shown(text)}")
        return text
    if text.isdigit():  # superscripts and other Unicode digits: str.isdigit() admits them, int() does not
        raise argparse.ArgumentTypeError(f"a dataset id is written with the digits 0-9, got {_shown(text)}")
    if not text or not text.isprintable():  # a newline would also split the "no such dataset" message
        raise argparse.ArgumentTypeError(f"a dataset id, name or folder cannot be empty or hold control "
                                         f"characters, got {_shown(text)}")
    longest = max(len(os.fsencode(part)) for part in Path(text).parts) if Path(text).parts else 0
    if longest > MAX_NAME_BYTES or len(os.fsencode(text)) > MAX_PATH_BYTES:
        raise argparse.ArgumentTypeError(f"{_shown(text)} is too long for a dataset name or folder (names hold "
                                         f"at most {MAX_NAME_BYTES} bytes, paths {MAX_PATH_BYTES})")
    return text


def output_folder(text: str) -> Path:
    """argparse type: a folder to write into; it may not exist yet, but it may not be a file (or lie below one)."""
    path = Path(text)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise argparse.ArgumentTypeError(f"'{candidate}' is a file, not a folder")
            break
    return path


def _shown(text: str) -> str:
    """``text`` quoted for an error message; control characters escaped, a long one cut short, with its length."""
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    if len(text) <= _SHOWN_CHARACTERS:
        return f"'{text}'"
    return f"'{text[:_SHOWN_CHARACTERS // 2]}...{text[-8:]}' ({len(text)} characters)"


def _integer(text: str) -> int:
    if len(text) > MAX_INTEGER_TEXT:
        # Checked before int(): a number of thousands of digits is a typo (or an attack), not a value.
        if _INTEGER_TEXT.fullmatch(text.strip()):
            digits = sum(c.isdigit() for c in text)
            raise argparse.ArgumentTypeError(f"a number of {digits} digits is out of range: {_shown(text)}")
        raise argparse.ArgumentTypeError(f"not an integer: {_shown(text)}")
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {_shown(text)}") from None
    return value


def _integer_in(text: str, minimum: int, maximum: int) -> int:
    value = _integer(text)
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    if value > maximum:
        raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {_shown(text)}") from None


def _number_in(text: str, low: float, high: float, include_low: bool) -> float:
    """A finite number in ``[low, high]`` (``(low, high]`` without ``include_low``); NaN and infinities fail."""
    value = _number(text)
    above = value >= low if include_low else value > low
    if not (math.isfinite(value) and above and value <= high):
        raise argparse.ArgumentTypeError(f"must be a finite number in {'[' if include_low else '('}{low:g}, "
                                         f"{high:g}], got {_shown(text)}")
    return value


def default_processes() -> int:
    """Worker processes by default: the CPU cores, at most 8 (I/O and memory bound beyond that)."""
    return max(1, min(8, os.cpu_count() or 1))


def add_dataset_argument(parser: argparse.ArgumentParser) -> None:
    """``-d/--dataset``: a dataset id, folder name or short name."""
    parser.add_argument("-d", "--dataset", type=dataset_spec, required=True, metavar="ID",
                        help="dataset id (501), folder name (Dataset501_Brain) or short name (Brain)")


def add_processes_argument(parser: argparse.ArgumentParser, flag: str = "-np") -> None:
    """``-np/--num-processes``: worker processes for per-case work."""
    parser.add_argument(flag, "--num-processes", type=worker_count, default=default_processes(), metavar="N",
                        dest="num_processes", help="worker processes (default: %(default)s)")


def _device_name(text: str) -> str:
    """argparse type of ``--device``: a known device name (whether it exists is checked when the command runs)."""
    if not DEVICE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"unknown device {_shown(text)}; use auto, cpu, cuda, cuda:N or mps")
    if text.startswith("cuda:"):
        _integer_in(text.removeprefix("cuda:"), 0, MAX_WORKERS)  # a GPU index, not thousands of digits
    return text


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: ``auto`` (default: CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    parser.add_argument("--device", type=_device_name, default="auto",
                        help="auto (default: CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps")
