"""Evaluate a folder of predicted label maps against a folder of references; write summary.json and metrics.csv.

Files are paired by their full name (``case_001.nii.gz`` with ``case_001.nii.gz``); files of a supported
image format found in only one folder are listed in the summary and logged as warnings. Other files
(``summary.json``, ``.npz`` probabilities, hidden temporary files) are not cases.

In ``summary.json`` a ``null`` metric is undefined: the label is absent from both reference and prediction
(Dice, IoU, HD95, NSD), or from one side only for precision (no predicted voxels) and recall (no reference
voxels). Means leave undefined values out. HD95 is never infinite: a label present on one side only scores
the image diagonal (see :mod:`autounet.evaluation.surface`). In ``metrics.csv`` undefined values are empty.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autounet.dataset.description import IGNORE_LABEL_NAME, DatasetDescription, LabelTask
from autounet.errors import ConfigError, DatasetError
from autounet.evaluation.metrics import METRIC_NAMES, Label, LabelMetrics, case_metrics
from autounet.io.images import read_segmentation, split_ending
from autounet.io.jsonio import atomic_write, nan_to_none, write_json
from autounet.progress import parallel_map

__all__ = ["CaseEvaluation", "EvaluationSummary", "case_id_of", "evaluate_folders", "label_name",
           "labels_from_description", "pair_files"]

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
CSV_FILE = "metrics.csv"
_COUNTS = ("tp", "fp", "fn", "n_reference", "n_prediction")


@dataclass(frozen=True)
class CaseEvaluation:
    """The scores of one case.

    Attributes:
        case_id: File name without its ending.
        reference_file: The reference label map.
        prediction_file: The predicted label map.
        metrics: Label name -> scores, in the order of the evaluated labels.
    """

    case_id: str
    reference_file: Path
    prediction_file: Path
    metrics: dict[str, LabelMetrics]


@dataclass(frozen=True)
class EvaluationSummary:
    """Result of :func:`evaluate_folders`.

    Attributes:
        reference_dir: Folder of reference label maps.
        prediction_dir: Folder of predicted label maps.
        labels: Label name -> value, or tuple of values for a region.
        ignore_label: Reference value left out of every score, if any.
        tolerance_mm: Tolerance of the normalised surface Dice.
        cases: Scores per paired case, sorted by file name.
        mean: Label name -> metric name -> mean over cases, undefined (NaN) values left out.
        foreground_mean: Metric name -> mean over labels of ``mean``.
        missing_predictions: Reference files without a prediction of the same name.
        missing_references: Prediction files without a reference of the same name.
        summary_file: Where summary.json was written.
        csv_file: Where metrics.csv was written.
    """

    reference_dir: Path
    prediction_dir: Path
    labels: dict[str, Label]
    ignore_label: int | None
    tolerance_mm: float
    cases: tuple[CaseEvaluation, ...]
    mean: dict[str, dict[str, float]]
    foreground_mean: dict[str, float]
    missing_predictions: tuple[str, ...]
    missing_references: tuple[str, ...]
    summary_file: Path
    csv_file: Path

    def to_json_dict(self) -> dict[str, Any]:
        """The content of summary.json: JSON types only, NaN as ``None``."""
        return nan_to_none({
            "reference_dir": str(self.reference_dir),
            "prediction_dir": str(self.prediction_dir),
            "labels": {name: list(value) if isinstance(value, tuple) else value for name, value in self.labels.items()},
            "ignore_label": self.ignore_label,
            "tolerance_mm": self.tolerance_mm,
            "conventions": {
                "null": "undefined: label absent from reference and prediction (precision: no predicted voxels, "
                        "recall: no reference voxels); left out of means",
                "hd95_mm": "label present in only one of reference and prediction: the diagonal of the image's "
                           "physical extent in mm",
                "nsd": "label present in only one of reference and prediction: 0",
            },
            "unmatched": {"missing_predictions": list(self.missing_predictions),
                          "missing_references": list(self.missing_references)},
            "mean": self.mean,
            "foreground_mean": self.foreground_mean,
            "metric_per_case": [
                {"case": case.case_id, "reference_file": str(case.reference_file),
                 "prediction_file": str(case.prediction_file),
                 "metrics": {name: metrics.as_dict() for name, metrics in case.metrics.items()}}
                for case in self.cases],
        })


@dataclass(frozen=True)
class _CaseJob:
    case_id: str
    reference_file: Path
    prediction_file: Path
    labels: tuple[Label, ...] | None  # None: every value in either map, the caller picks the labels later
    ignore_label: int | None
    tolerance_mm: float


def label_name(label: Label) -> str:
    """Name of a label without a dataset.json: ``"2"`` for a value, ``"1+2"`` for a region."""
    return "+".join(str(v) for v in label) if isinstance(label, tuple) else str(label)


def labels_from_description(description: DatasetDescription | LabelTask, regions: bool = False
                            ) -> dict[str, Label]:
    """The labels a dataset.json (or one of its label maps) asks to evaluate, by name.

    Args:
        description: The parsed dataset.json of one label map, or one task of a multi-task dataset.json.
        regions: Score the labels given as value lists as regions (their unions), as region-based
            training does; otherwise score every foreground value on its own.

    Returns:
        Label name -> value or tuple of values; background and the ignore label are left out.
    """
    if regions:
        return {name: value for name, value in description.labels.items()
                if name not in ("background", IGNORE_LABEL_NAME)}
    names = {value: name for name, value in description.labels.items() if isinstance(value, int)}
    return {names.get(value, str(value)): value for value in description.foreground_labels}


def _image_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatasetError("folder not found", folder)
    return {p.name: p for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".") and split_ending(p.name) is not None}


def case_id_of(filename: str) -> str:
    """The case id of a label map's file name (the name without its ending)."""
    parts = split_ending(filename)
    return parts[0] if parts else filename


def pair_files(reference_dir: Path, prediction_dir: Path) -> tuple[list[tuple[Path, Path]], tuple[str, ...],
                                                                   tuple[str, ...]]:
    """(reference, prediction) pairs by file name, and the case ids found in only one folder (logged).

    Raises:
        DatasetError: A folder is missing, or no file name is in both.
    """
    references, predictions = _image_files(reference_dir), _image_files(prediction_dir)
    paired = sorted(set(references) & set(predictions))
    if not paired:
        raise DatasetError(f"no file in {prediction_dir} has the name of a file in {reference_dir}; predictions "
                           "must be named as their references, ending included")
    missing_predictions = tuple(case_id_of(n) for n in sorted(set(references) - set(predictions)))
    missing_references = tuple(case_id_of(n) for n in sorted(set(predictions) - set(references)))
    for side, names in (("prediction", missing_predictions), ("reference", missing_references)):
        if names:
            logger.warning("%d case(s) have no %s and are not scored: %s", len(names), side, ", ".join(names))
    return [(references[n], predictions[n]) for n in paired], missing_predictions, missing_references


def _evaluate_case(job: _CaseJob) -> tuple[dict[Label, LabelMetrics], frozenset[int]]:
    """Scores of one case by label, and the values present in its reference (module level: picklable)."""
    reference, geometry = read_segmentation(job.reference_file)
    prediction, _ = read_segmentation(job.prediction_file)
    if reference.shape != prediction.shape:
        raise DatasetError(f"shape {prediction.shape} differs from the reference's {reference.shape} "
                           f"({job.reference_file})", job.prediction_file)
    reference_values = frozenset(int(v) for v in np.unique(reference))
    labels = job.labels
    if labels is None:
        present = reference_values | {int(v) for v in np.unique(prediction)}
        labels = tuple(sorted(present - {0} - ({job.ignore_label} if job.ignore_label is not None else set())))
    scores = case_metrics(reference, prediction, labels, geometry.spacing, job.ignore_label, job.tolerance_mm)
    return dict(zip(labels, scores, strict=True)), reference_values


def _nanmean(values: Sequence[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(sum(defined) / len(defined)) if defined else math.nan


def _means(cases: Sequence[CaseEvaluation], names: Sequence[str]) -> dict[str, dict[str, float]]:
    return {name: {metric: _nanmean([float(case.metrics[name].as_dict()[metric]) for case in cases])
                   for metric in METRIC_NAMES} for name in names}


def _resolve_labels(labels: Sequence[Label] | Mapping[str, Label] | None, found: set[int],
                    ignore_label: int | None) -> dict[str, Label]:
    if labels is None:
        return {label_name(v): v for v in sorted(found - {0} - {ignore_label})}
    if isinstance(labels, Mapping):
        return {str(name): tuple(v) if isinstance(v, Sequence) else int(v) for name, v in labels.items()}
    normalised = [tuple(v) if isinstance(v, Sequence) else int(v) for v in labels]
    return {label_name(v): v for v in normalised}


def evaluate_folders(reference_dir: Path, prediction_dir: Path, output_dir: Path | None = None,
                     labels: Sequence[Label] | Mapping[str, Label] | None = None, ignore_label: int | None = None,
                     tolerance_mm: float = 1.0, num_processes: int = 1) -> EvaluationSummary:
    """Score every prediction against the reference of the same file name; write summary.json and metrics.csv.

    Args:
        reference_dir: Folder of reference label maps (any supported ending).
        prediction_dir: Folder of predicted label maps, named as the references.
        output_dir: Where summary.json and metrics.csv go (default: ``prediction_dir``).
        labels: Labels or regions (tuples, scored as unions) to score, optionally by name; default: every
            non-zero value found in the references.
        ignore_label: Reference value left out of every score (and of the default labels).
        tolerance_mm: Tolerance of the normalised surface Dice in mm.
        num_processes: Worker processes for the per-case work.

    Returns:
        The scores per case, their means and the unmatched files.

    Raises:
        DatasetError: A folder is missing, no file names match, shapes differ or a file is unreadable.
        ConfigError: The tolerance is negative or no label is left to score.
    """
    reference_dir, prediction_dir = Path(reference_dir), Path(prediction_dir)
    if not tolerance_mm >= 0:
        raise ConfigError(f"the surface Dice tolerance must be >= 0 mm, got {tolerance_mm}")
    pairs, missing_predictions, missing_references = pair_files(reference_dir, prediction_dir)
    fixed = None if labels is None else _resolve_labels(labels, set(), ignore_label)
    jobs = [_CaseJob(case_id_of(ref.name), ref, pred, None if fixed is None else tuple(fixed.values()), ignore_label,
                     tolerance_mm) for ref, pred in pairs]
    results = parallel_map(_evaluate_case, jobs, num_processes, "Evaluating")
    found = set().union(*(values for _, values in results))
    chosen = fixed if fixed is not None else _resolve_labels(None, found, ignore_label)
    if not chosen:
        raise ConfigError(f"no label to score: the references in {reference_dir} hold background only")
    cases = tuple(CaseEvaluation(job.case_id, job.reference_file, job.prediction_file,
                                 {name: scores.get(value, LabelMetrics.absent()) for name, value in chosen.items()})
                  for job, (scores, _) in zip(jobs, results, strict=True))
    mean = _means(cases, list(chosen))
    output = Path(output_dir) if output_dir is not None else prediction_dir
    summary = EvaluationSummary(
        reference_dir=reference_dir, prediction_dir=prediction_dir, labels=chosen, ignore_label=ignore_label,
        tolerance_mm=float(tolerance_mm), cases=cases, mean=mean,
        foreground_mean={m: _nanmean([mean[name][m] for name in chosen]) for m in METRIC_NAMES},
        missing_predictions=missing_predictions, missing_references=missing_references,
        summary_file=output / SUMMARY_FILE, csv_file=output / CSV_FILE)
    write_json(summary.summary_file, summary.to_json_dict())
    _write_csv(summary)
    return summary


def _csv_value(value: float | int) -> str:
    # Plain Python numbers: repr of a NumPy scalar would write "np.float64(0.5)".
    if isinstance(value, (bool, int, np.integer)):
        return str(int(value))
    value = float(value)
    return "" if math.isnan(value) else repr(value)


def _write_csv(summary: EvaluationSummary) -> None:
    with atomic_write(summary.csv_file) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["case", "label", *METRIC_NAMES, *_COUNTS])
        for case in summary.cases:
            for name, metrics in case.metrics.items():
                row = metrics.as_dict()
                writer.writerow([case.case_id, name, *(_csv_value(row[k]) for k in (*METRIC_NAMES, *_COUNTS))])
