"""``autounet evaluate``: score a folder of predictions against a folder of references."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from autounet.cli._common import add_processes_argument, positive_float
from autounet.dataset.description import DatasetDescription, load_dataset_json
from autounet.errors import ConfigError
from autounet.evaluation.metrics import Label
from autounet.evaluation.summary import EvaluationSummary, evaluate_folders, labels_from_description
from autounet.io.images import split_ending
from autounet.paths import Paths

if TYPE_CHECKING:  # box scoring imports torch; `autounet -h` must not
    from autounet.evaluation.box_folders import BoxEvaluation

__all__ = ["format_box_table", "format_table", "register", "run"]


def register(subparsers: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` subcommand.

    Args:
        subparsers: The ``autounet`` subcommand collection.
        parent: Parser with the common options, accepted after the subcommand too.
    """
    parser = subparsers.add_parser(
        "evaluate", parents=[parent], help="score predictions against reference segmentations",
        description="Score every label map in PRED_DIR against the file of the same name in REF_DIR: Dice, IoU, "
                    "precision, recall, HD95 (mm) and normalised surface Dice per case and label. Writes "
                    "summary.json and metrics.csv. Cases found in only one folder are listed as warnings. "
                    "With --boxes (or when PRED_DIR holds box files and no label maps): score the "
                    "<case>_boxes.json files against the instance maps and <case>.json of REF_DIR by AP at IoU "
                    "0.1, mAP over IoU 0.1:0.5 and FROC (detection_summary.json).")
    parser.add_argument("reference_dir", type=Path, metavar="REF_DIR", help="folder of reference label maps")
    parser.add_argument("prediction_dir", type=Path, metavar="PRED_DIR", help="folder of predicted label maps")
    parser.add_argument("-j", "--dataset-json", type=Path, default=None, metavar="FILE",
                        help="dataset.json naming the labels (and the ignore label) to score; default: every "
                             "non-zero value found in the references")
    parser.add_argument("--regions", action="store_true",
                        help="score the labels that dataset.json gives as value lists as regions (their unions)")
    parser.add_argument("--boxes", action="store_true",
                        help="score box files (<case>_boxes.json, from predict with a detection model or from "
                             "seg-to-boxes) against instance references")
    parser.add_argument("--tolerance", type=positive_float, default=1.0, metavar="MM",
                        help="tolerance of the normalised surface Dice in mm (default: %(default)s)")
    parser.add_argument("-o", "--output-dir", type=Path, default=None, metavar="DIR",
                        help="where summary.json and metrics.csv go (default: PRED_DIR)")
    add_processes_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, paths: Paths | None = None) -> int:
    """Evaluate ``args.prediction_dir`` against ``args.reference_dir`` and print the mean scores per label.

    Args:
        args: Parsed arguments of :func:`register`.
        paths: The resolved data folders (unused: both folders are given explicitly).

    Returns:
        0 on success.

    Raises:
        ConfigError: ``--regions`` without ``-j``, an unreadable dataset.json or a negative tolerance.
        DatasetError: A folder is missing, no file names match, shapes differ or a file is unreadable.
    """
    if args.boxes or _holds_only_box_files(args.prediction_dir):
        from autounet.evaluation.box_folders import evaluate_box_folders

        print(format_box_table(evaluate_box_folders(args.reference_dir, args.prediction_dir, args.output_dir)))
        return 0
    labels: dict[str, Label] | None = None
    ignore_label = None
    if args.dataset_json is not None:
        description = load_dataset_json(args.dataset_json)
        if description.has_task_folders:
            _evaluate_tasks(args, description)
            return 0
        labels = labels_from_description(description, regions=args.regions)
        ignore_label = description.ignore_label
    elif args.regions:
        raise ConfigError("--regions needs the regions from a dataset.json; give it with -j/--dataset-json")
    summary = evaluate_folders(args.reference_dir, args.prediction_dir, output_dir=args.output_dir, labels=labels,
                               ignore_label=ignore_label, tolerance_mm=args.tolerance,
                               num_processes=args.num_processes)
    print(format_table(summary))
    return 0


def format_table(summary: EvaluationSummary) -> str:
    """Mean Dice, HD95 and NSD per label, the foreground mean, and where the files went.

    Args:
        summary: The result of :func:`~autounet.evaluation.summary.evaluate_folders`.

    Returns:
        Lines of text, without a trailing newline.
    """
    width = max(10, *(len(name) for name in summary.labels))
    nsd_title = f"NSD@{summary.tolerance_mm:g}mm"
    lines = [f"{'label':<{width}}  {'Dice':>7}  {'HD95 mm':>9}  {nsd_title:>11}"]
    rows = [*summary.mean.items(), ("foreground", summary.foreground_mean)]
    for name, means in rows:
        lines.append(f"{name:<{width}}  {_number(means['dice'], 4):>7}  {_number(means['hd95_mm'], 2):>9}  "
                     f"{_number(means['nsd'], 4):>11}")
    unmatched = len(summary.missing_predictions) + len(summary.missing_references)
    lines.append(f"{len(summary.cases)} case(s) scored" + (f", {unmatched} unmatched (see warnings)" if unmatched
                                                            else ""))
    lines.append(f"summary:  {summary.summary_file}")
    lines.append(f"per case: {summary.csv_file}")
    return "\n".join(lines)


_BOX_FILE_SUFFIX = "_boxes.json"  # autounet.detection.box_files.BOX_FILE_SUFFIX, without importing torch


def _evaluate_tasks(args: argparse.Namespace, description: DatasetDescription) -> None:
    """Score every label map of a multi-task dataset: ``<task>/`` of both folders, results in ``<task>/`` of the
    output; line tasks also by the mean distance error."""
    from autounet.evaluation.lines import evaluate_line_folders

    output = args.output_dir or args.prediction_dir
    for task in description.tasks:
        reference, prediction = args.reference_dir / task.name, args.prediction_dir / task.name
        summary = evaluate_folders(reference, prediction, output_dir=output / task.name,
                                   labels=labels_from_description(task, regions=args.regions),
                                   ignore_label=task.ignore_label, tolerance_mm=args.tolerance,
                                   num_processes=args.num_processes)
        print(f"== task {task.name} ({task.kind})")
        print(format_table(summary))
        if task.kind == "line":
            lines = evaluate_line_folders(reference, prediction, task.foreground_labels[0], output / task.name)
            mde = lines.summary
            print(f"MDE (spacing units): mean {_number(mde.mean, 2)}, median {_number(mde.median, 2)} over "
                  f"{mde.scored} image(s); no predicted line in {mde.no_prediction}, no reference line in "
                  f"{mde.no_reference}, neither in {mde.both_empty}")
            print(f"lines:    {lines.summary_file}")


def _holds_only_box_files(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    names = [p.name for p in folder.iterdir() if p.is_file()]
    # predict --save-box-map writes <case>_boxes<ending> beside <case>_boxes.json: a picture of the boxes, not
    # a label map to score.
    box_stems = {n[:-len(".json")] for n in names if n.endswith(_BOX_FILE_SUFFIX)}
    label_maps = [n for n in names if (split := split_ending(n)) is not None and split[0] not in box_stems]
    return bool(box_stems) and not label_maps


def format_box_table(evaluation: BoxEvaluation) -> str:
    """AP at IoU 0.1, mAP and FROC sensitivities per class and overall.

    Args:
        evaluation: The result of :func:`~autounet.evaluation.box_folders.evaluate_box_folders`.

    Returns:
        Lines of text, without a trailing newline.
    """
    metrics = evaluation.metrics
    lines = [f"{'class':<10}  {'AP@0.1':>7}  {'mAP':>7}  {'FROC':>7}"]
    for class_id in sorted(metrics.ap_per_class):
        froc = metrics.froc_per_class[class_id]
        lines.append(f"{class_id:<10}  {_number(metrics.ap_per_class[class_id], 4):>7}  "
                     f"{_number(metrics.map_per_class[class_id], 4):>7}  "
                     f"{_number(sum(froc) / len(froc) if froc else math.nan, 4):>7}")
    lines.append(f"{'all':<10}  {_number(metrics.ap_at_0_1, 4):>7}  {_number(metrics.mean_ap, 4):>7}  "
                 f"{_number(metrics.froc_score, 4):>7}")
    missing = len(evaluation.without_predictions)
    lines.append(f"{len(evaluation.cases)} case(s) scored" + (f", {missing} without a box file" if missing else ""))
    lines.append(f"summary:  {evaluation.summary_file}")
    return "\n".join(lines)


def _number(value: float, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
