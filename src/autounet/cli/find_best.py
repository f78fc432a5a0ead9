"""``autounet find-best``: pick the best configuration or ensemble from cross-validation results."""

from __future__ import annotations

import argparse
import math
import shlex
from typing import TYPE_CHECKING

from autounet.cli._common import add_dataset_argument, add_processes_argument, non_negative_int
from autounet.dataset.raw import find_raw_dataset
from autounet.errors import ConfigError
from autounet.paths import Paths
from autounet.postprocessing import PostprocessingPlan, TaskPostprocessing

if TYPE_CHECKING:
    from autounet.ensembling import FindBestResult

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``find-best`` subcommand.

    Args:
        subparsers: The ``autounet`` subcommand collection.
        parent: Parser with the common options, accepted after the subcommand too.
    """
    parser = subparsers.add_parser(
        "find-best", parents=[parent], help="choose the best configuration or ensemble and its postprocessing",
        description="Score the cross-validation predictions of every trained configuration (and of every pair, "
                    "ensembled from their saved probabilities) against the raw labels, choose the best by mean "
                    "foreground Dice, decide its postprocessing (keep largest components) and write "
                    "results/<Dataset>/find_best/ with the exact commands to predict new images.")
    add_dataset_argument(parser)
    parser.add_argument("-f", "--folds", nargs="+", type=non_negative_int, default=[0, 1, 2, 3, 4], metavar="FOLD",
                        help="folds every configuration must have finished (default: 0 1 2 3 4)")
    add_processes_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, paths: Paths) -> int:
    """Run the comparison for ``args.dataset`` and print the scores and commands.

    Returns:
        0 on success.

    Raises:
        ConfigError: Invalid or repeated folds.
        DatasetError: Unknown dataset, no finished configuration, missing reference labels.
    """
    # Imported here, not at the top: building the parser (`autounet -h`) must not import torch (seconds).
    from autounet.ensembling import find_best

    folds = list(args.folds)
    if any(f < 0 for f in folds) or len(set(folds)) != len(folds):
        raise ConfigError(f"folds must be distinct indices >= 0, got {' '.join(map(str, folds))}")
    raw_dir = find_raw_dataset(paths.raw, args.dataset)
    prefix = "autounet"
    if getattr(args, "data_root", None) is not None:
        prefix += f" --data-root {shlex.quote(str(paths.results.parent))}"
    result = find_best(paths.results / raw_dir.name, raw_dir, folds, args.num_processes, prefix)
    print(format_result(result))
    return 0


def format_result(result: FindBestResult) -> str:
    """Scores of every candidate, the choice, its postprocessing and the commands, as lines of text."""
    width = max(10, *(len(c.name) for c in result.candidates))
    lines = [f"{'candidate':<{width}}  {'Dice':>7}"]
    for candidate in result.candidates:
        score = "skipped" if candidate.skipped else _number(candidate.foreground_dice)
        lines.append(f"{candidate.name:<{width}}  {score:>7}" + (f"  ({candidate.skipped})" if candidate.skipped
                                                                   else ""))
    choice = result.choice
    before = _number(choice.cv_dice if choice.cv_dice is not None else math.nan)
    after = _number(choice.cv_dice_postprocessed if choice.cv_dice_postprocessed is not None else math.nan)
    lines.append(f"best: {'+'.join(choice.configurations)} (Dice {before}, postprocessed {after})")
    plan = result.postprocessing
    if isinstance(plan, TaskPostprocessing):  # a dataset of several label maps: one line per task
        lines.extend(f"postprocessing of {task}: {_kept(task_plan)}" for task, task_plan in plan.tasks.items())
    else:
        lines.append(f"postprocessing: {_kept(plan)}")
    lines.append(f"written to {result.output_dir}; predict new images with:")
    lines.extend(f"  {command}" for command in result.commands)
    return "\n".join(lines)


def _kept(plan: PostprocessingPlan) -> str:
    kept = [*(["foreground"] if plan.largest_component_foreground else []),
            *(str(v) for v in plan.largest_component_labels),
            *("+".join(map(str, r)) for r in plan.largest_component_regions)]
    return f"keep the largest component of {', '.join(kept)}" if kept else "none"


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"
