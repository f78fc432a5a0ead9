"""Final validation of a fold: full sliding-window prediction of its validation cases, written in their
original geometry, scored against the raw labels, summarised in ``summary.json``."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autounet.dataset.raw import RawDataset
from autounet.evaluation.metrics import label_overlaps
from autounet.inference.export import export_prediction, save_probabilities
from autounet.inference.sliding_window import SlidingWindowSettings, predict_sliding_window
from autounet.io.images import read_segmentation, write_segmentation
from autounet.io.jsonio import nan_to_none, write_json
from autounet.planning.plans import ConfigurationPlan, Plans
from autounet.preprocessing.storage import load_case
from autounet.progress import progress
from autounet.training.labels import LabelScheme

__all__ = ["ValidationJob", "run_final_validation", "summarise"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationJob:
    """What the final validation predicts and where it writes."""

    plans: Plans
    configuration: ConfigurationPlan
    labels: LabelScheme
    dataset: RawDataset
    data_folder: Path
    case_ids: tuple[str, ...]
    output: Path
    mirror_axes: tuple[int, ...]
    save_probabilities: bool = False
    show_progress: bool = True


def run_final_validation(network: nn.Module, job: ValidationJob, device: torch.device) -> dict[str, Any]:
    """Predict, export and score every validation case; write ``summary.json`` into ``job.output``.

    Returns:
        The summary (see :func:`summarise`).
    """
    network.eval()
    settings = SlidingWindowSettings(patch_size=job.configuration.patch_size, mirror_axes=job.mirror_axes)
    ending = job.dataset.description.file_ending
    regions = job.labels.regions_class_order if job.labels.region_based else None
    scored = job.labels.regions if job.labels.region_based else job.labels.foreground_labels
    rows = []
    for case_id in progress(job.case_ids, "Final validation", total=len(job.case_ids)):
        data, _, properties = load_case(job.data_folder, case_id, mmap=False)
        logits = predict_sliding_window(network, torch.from_numpy(data), job.labels.num_outputs, settings, device)
        seg, probabilities = export_prediction(logits, properties, job.plans, job.configuration, regions,
                                               return_probabilities=job.save_probabilities)
        if probabilities is not None:  # first, so an existing label map marks a finished case
            save_probabilities(job.output / f"{case_id}.npz", probabilities)
        write_segmentation(seg, properties.original_geometry, job.output / f"{case_id}{ending}")
        reference, _ = read_segmentation(job.dataset.case(case_id).label_file)  # type: ignore[arg-type]
        overlaps = label_overlaps(reference, seg, scored, job.labels.ignore_label)
        rows.append({"case": case_id, "metrics": {_name(label): {"dice": o.dice, "iou": o.iou, "tp": o.tp,
                                                                  "fp": o.fp, "fn": o.fn}
                                                  for label, o in zip(scored, overlaps, strict=True)}})
    summary = summarise(rows)
    write_json(job.output / "summary.json", nan_to_none(summary))
    logger.info("final validation: mean Dice per class %s, foreground mean %.4f",
                {k: round(v, 4) for k, v in summary["mean"].items()}, summary["foreground_mean_dice"])
    return summary


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean Dice per label over cases (NaN cases left out) and the mean over labels."""
    labels = list(rows[0]["metrics"]) if rows else []
    means = {}
    for label in labels:
        values = [row["metrics"][label]["dice"] for row in rows if not math.isnan(row["metrics"][label]["dice"])]
        means[label] = float(np.mean(values)) if values else float("nan")
    finite = [v for v in means.values() if not math.isnan(v)]
    return {"per_case": list(rows), "mean": means,
            "foreground_mean_dice": float(np.mean(finite)) if finite else float("nan")}


def _name(label: int | Sequence[int]) -> str:
    return str(label) if isinstance(label, int) else "region_" + "_".join(map(str, label))

