"""``autounet example``: write synthetic example datasets into the raw-data folder."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from autounet.cli._common import axis_size, case_count, dataset_id, optional_case_count, random_seed
from autounet.dataset.synthetic import (
    EXAMPLE_IDS,
    EXAMPLE_KINDS,
    DetectionToyOptions,
    ExampleInfo,
    ExampleKind,
    ExampleOptions,
    SarExampleOptions,
    example_info,
    full_sar_options,
    full_toy_options,
    generate_detection_toy,
    generate_example,
    generate_sar_example,
)
from autounet.errors import DatasetError
from autounet.paths import Paths

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)

_ALL = "all"
_DETECTION = "detection"  # nnDetection's toy problem (instance labels); not part of 'all'
_SAR = "sar"  # SAR-like glaciers with two label maps (zones, front); not part of 'all'


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``example`` subcommand.

    Args:
        subparsers: The ``autounet`` subcommand collection.
        parent: Parser holding the common options (``--data-root``, ``--debug``, ``--quiet``).
    """
    ids = ", ".join(f"{kind} {EXAMPLE_IDS[kind]}" for kind in EXAMPLE_KINDS)
    parser = subparsers.add_parser(
        "example", parents=[parent], help="write synthetic example datasets",
        description="Write deterministic synthetic datasets in nnU-Net v2 raw format into the raw-data "
                    f"folder, for trying autounet and for tests. Dataset ids: {ids}. 'mr' is an anisotropic "
                    "3D head MR, 'ct' a 3D CT in Hounsfield units, 'multichannel' a two-channel 3D MR "
                    "(.mha), 'png2d' 2D PNG pictures; outside 'all': 'detection' (id 505) nnDetection's toy problem "
                    "with instance labels, 'sar' (id 506) SAR-like glacier images with two label maps (tasks "
                    "'zones' and 'front', the calving front as a one-pixel line, pixel sizes 7/20/40 m).")
    # A string default: argparse checks a '*' positional's default against the choices, and a list fails.
    parser.add_argument("kinds", nargs="*", choices=[*EXAMPLE_KINDS, _DETECTION, _SAR, _ALL], default=_ALL,
                        metavar="KIND",
                        help=f"which examples: {', '.join(EXAMPLE_KINDS)}, {_DETECTION}, {_SAR} or {_ALL} (default: "
                             f"{_ALL}, without {_DETECTION} and {_SAR})")
    defaults = ExampleOptions()
    parser.add_argument("--num-cases", type=case_count, default=defaults.num_cases, metavar="N",
                        help="training cases per dataset (default: %(default)s)")
    parser.add_argument("--num-test-cases", type=optional_case_count, default=defaults.num_test_cases, metavar="N",
                        help="test cases in imagesTs/, with labels in labelsTs/ (default: %(default)s)")
    parser.add_argument("--shape", type=axis_size, nargs="+", default=None, metavar="SIZE",
                        help="nominal array shape, Z Y X for 3D kinds or Y X for png2d (default: per kind; "
                             "3D cases vary by a few voxels)")
    parser.add_argument("--seed", type=random_seed, default=defaults.seed,
                        help="random seed; the same seed writes identical files (default: %(default)s)")
    parser.add_argument("--dataset-id", type=dataset_id, default=None, metavar="ID",
                        help="dataset number instead of the kind's default (only with a single kind)")
    parser.add_argument("--full", action="store_true",
                        help="detection: nnDetection's full toy size (1000 training cases, 128^3); sar: CaFFe's "
                             "counts (559 training + 122 test cases, 256 x 256)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing example datasets (the old one is removed once the new one "
                             "is complete)")
    parser.set_defaults(handler=run)


def _selected_kinds(kinds: str | list[str]) -> list[ExampleKind]:
    """The requested kinds in canonical order, without repeats; ``all`` (or nothing) means every kind."""
    requested = [kinds] if isinstance(kinds, str) else list(kinds)
    if not requested or _ALL in requested:
        return list(EXAMPLE_KINDS)
    return [kind for kind in EXAMPLE_KINDS if kind in requested]


def run(args: argparse.Namespace, paths: Paths) -> int:
    """Generate the requested example datasets under ``paths.raw``.

    Args:
        args: Parsed arguments of the ``example`` subcommand.
        paths: Resolved data folders.

    Returns:
        0 on success.

    Raises:
        DatasetError: Invalid options (checked for every kind before anything is written), or a dataset
            exists and ``--overwrite`` was not given.
    """
    kinds = _selected_kinds(args.kinds)
    requested = [args.kinds] if isinstance(args.kinds, str) else args.kinds
    detection, sar = _DETECTION in requested, _SAR in requested
    if args.dataset_id is not None and len(kinds) + detection + sar != 1:
        raise DatasetError(f"--dataset-id needs exactly one example kind, got {len(kinds)} "
                           f"({', '.join(kinds)})")
    options = ExampleOptions(num_cases=args.num_cases, num_test_cases=args.num_test_cases,
                             shape=tuple(args.shape) if args.shape is not None else None, seed=args.seed,
                             dataset_id=args.dataset_id)
    # Validate all kinds first, so a bad --shape for the last kind does not leave the first ones written.
    infos = [example_info(kind, options) for kind in kinds]
    if detection:
        toy = full_toy_options(args.seed) if args.full else DetectionToyOptions(
            num_cases=args.num_cases, num_test_cases=args.num_test_cases, seed=args.seed)
        toy = replace(toy, dataset_id=args.dataset_id) if args.dataset_id is not None else toy
        logger.info("wrote %s (instance labels)", generate_detection_toy(paths.raw, toy, args.overwrite))
    if sar:
        _write_sar(args, paths)
    for info in infos:
        folder = generate_example(info.kind, paths.raw, options, overwrite=args.overwrite)
        logger.info("%s", _summary(info, folder, options))
    return 0


def _write_sar(args: argparse.Namespace, paths: Paths) -> None:
    sar = full_sar_options(args.seed) if args.full else SarExampleOptions(
        num_cases=args.num_cases, num_test_cases=args.num_test_cases, seed=args.seed)
    if args.shape is not None:
        if len(args.shape) != 2:
            raise DatasetError(f"the sar example is 2D; --shape needs Y X, got {' '.join(map(str, args.shape))}")
        sar = replace(sar, shape=(args.shape[0], args.shape[1]))
    sar = replace(sar, dataset_id=args.dataset_id) if args.dataset_id is not None else sar
    folder = generate_sar_example(paths.raw, sar, args.overwrite)
    logger.info("wrote %s: %d training + %d test cases, %d x %d, tasks zones and front; next: autounet verify -d %d",
                folder, sar.num_cases, sar.num_test_cases, *sar.shape, sar.dataset_id)


def _summary(info: ExampleInfo, folder: Path, options: ExampleOptions) -> str:
    # 3D cases vary around the nominal shape and in-plane spacing; 2D pictures are exact.
    about = "~" if len(info.shape) == 3 else ""
    shape = " x ".join(str(s) for s in info.shape)
    spacing = " x ".join(f"{s:g}" for s in info.spacing)
    return (f"wrote {folder}: {options.num_cases} training + {options.num_test_cases} test cases, "
            f"{len(info.channel_names)} channel(s), shape {about}{shape}, spacing {about}{spacing} mm, "
            f"{info.file_ending}; next: autounet verify -d {info.dataset_id}")
