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

from autounet.dataset.labels import LabelScheme
from autounet.dataset.raw import RawDataset
from autounet.errors import ConfigError
from autounet.evaluation.metrics import label_overlaps
from autounet.inference.cascade import previous_stage_one_hot, segmentation_for_next_stage
from autounet.inference.original_geometry import save_probabilities, to_original_geometry
from autounet.inference.sliding_window import SlidingWindowSettings, predict_sliding_window
from autounet.io.images import write_segmentation
from autounet.io.jsonio import atomic_write, nan_to_none, write_json
from autounet.planning.plans import ConfigurationPlan, Plans
from autounet.planning.shapes import compute_new_shape
from autounet.preprocessing.case import target_spacing
from autounet.preprocessing.dataset import case_label_maps
from autounet.preprocessing.properties import CaseProperties
from autounet.preprocessing.storage import load_case
from autounet.progress import progress

__all__ = ["ValidationJob", "load_previous_stage", "next_stage_folder", "run_final_validation", "summarise"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationJob:
    """What the final validation predicts and where it writes.

    ``next_stage``/``next_stage_output``: for a lower cascade stage, the next stage's configuration and the
    folder (:func:`next_stage_folder`) that receives each case's prediction in its grid.
    ``previous_stage_folder``: for a cascade stage, where the previous stage's predictions of these cases are.
    """

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
    next_stage: ConfigurationPlan | None = None
    next_stage_output: Path | None = None
    previous_stage_folder: Path | None = None


def next_stage_folder(model_folder: Path, next_stage: str) -> Path:
    """Where a lower cascade stage keeps its cross-validation predictions for ``next_stage``:
    ``results/<Dataset>/<lower stage>/predicted_next_stage/<next_stage>/<case>.npy`` (label maps in the next
    stage's preprocessed grid). Shared by the folds: every case is predicted by the fold that validates it."""
    return model_folder / "predicted_next_stage" / next_stage


def run_final_validation(network: nn.Module, job: ValidationJob, device: torch.device) -> dict[str, Any]:
    """Predict, export and score every validation case; write ``summary.json`` into ``job.output``.

    Returns:
        The summary (see :func:`summarise`).
    """
    network.eval()
    settings = SlidingWindowSettings(patch_size=job.configuration.patch_size, mirror_axes=job.mirror_axes)
    ending = job.dataset.description.file_ending
    regions = job.labels.regions_class_order  # None: softmax labels
    scored = job.labels.scored_labels
    rows = []
    for case_id in progress(job.case_ids, "Final validation", total=len(job.case_ids)):
        data, _, properties = load_case(job.data_folder, case_id, mmap=False)
        inputs = torch.from_numpy(data)
        if job.previous_stage_folder is not None:
            inputs = torch.cat([inputs, load_previous_stage(job.previous_stage_folder, case_id,
                                                           job.labels.foreground_labels, data.shape[1:])])
        logits = predict_sliding_window(network, inputs, job.labels.num_outputs, settings, device)
        if job.next_stage is not None and job.next_stage_output is not None:
            _write_next_stage(logits, properties, job, case_id, regions)
        seg, probabilities = to_original_geometry(logits, properties, job.plans, job.configuration, regions,
                                                  return_probabilities=job.save_probabilities)
        if probabilities is not None:  # first, so an existing label map marks a finished case
            save_probabilities(job.output / f"{case_id}.npz", probabilities)
        write_segmentation(seg, properties.original_geometry, job.output / f"{case_id}{ending}")
        # the semantic map for a dataset with instance labels
        reference = case_label_maps(job.dataset.case(case_id), job.dataset.description,
                                    derivation=job.configuration.label_derivation)
        overlaps = label_overlaps(reference, seg, scored, job.labels.ignore_label)
        rows.append({"case": case_id, "metrics": {_name(label): {"dice": o.dice, "iou": o.iou, "tp": o.tp,
                                                                  "fp": o.fp, "fn": o.fn}
                                                  for label, o in zip(scored, overlaps, strict=True)}})
    summary = summarise(rows)
    write_json(job.output / "summary.json", nan_to_none(summary))
    logger.info("final validation: mean Dice per class %s, foreground mean %.4f",
                {k: round(v, 4) for k, v in summary["mean"].items()}, summary["foreground_mean_dice"])
    return summary


def load_previous_stage(folder: Path, case_id: str, foreground_labels: Sequence[int],
                        shape: Sequence[int]) -> torch.Tensor:
    """The one-hot previous-stage channels ``(L, *shape)`` of a case, from :func:`next_stage_folder`.

    Raises:
        ConfigError: The prediction is missing or does not fit the case's preprocessed shape.
    """
    path = folder / f"{case_id}.npy"
    if not path.is_file():
        raise ConfigError(f"no previous-stage prediction for case '{case_id}'; train every fold of the previous "
                          "stage first", path)
    seg = np.load(path)
    if tuple(seg.shape) != tuple(shape):
        raise ConfigError(f"previous-stage prediction has shape {tuple(seg.shape)} but the case's preprocessed "
                          f"data has {tuple(shape)}; retrain the previous stage with these plans", path)
    return previous_stage_one_hot(torch.from_numpy(seg), foreground_labels)


def _write_next_stage(logits: torch.Tensor, properties: CaseProperties, job: ValidationJob, case_id: str,
                      regions: Sequence[int] | None) -> None:
    # The next stage's grid: the same crop resampled to its spacing (what preprocessing will produce for it).
    assert job.next_stage is not None and job.next_stage_output is not None
    spacing = tuple(float(properties.original_geometry.spacing[a]) for a in job.plans.axis_order)
    target = target_spacing(spacing, job.next_stage)
    shape = compute_new_shape(properties.shape_after_crop, spacing, target)
    seg = segmentation_for_next_stage(logits, shape, job.configuration, regions)
    with atomic_write(job.next_stage_output / f"{case_id}.npy", "wb") as handle:
        np.save(handle, seg)


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

