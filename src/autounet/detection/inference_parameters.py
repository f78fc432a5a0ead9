"""A detector's inference parameters chosen on its fold's validation predictions, stored with the model.

After training, a detection fold's final validation sweeps the inference parameters (score threshold, NMS
IoU, clustering IoU, minimum box size, boxes per image) on its validation cases
(:mod:`autounet.training.detection_sweep`) and writes the choice as ``fold_N/detection_inference.json``:
a typed, versioned JSON file, like ``postprocessing.json`` for segmentation. ``autounet predict`` uses it
for a detection model (command-line values still override), and the plan's defaults where a fold has none.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from autounet.errors import ConfigError
from autounet.io.serialization import load_dataclass, save_dataclass
from autounet.planning.plans import DetectionInference

__all__ = ["INFERENCE_PARAMETERS_FILE", "SWEPT_PARAMETERS", "SweepTrial", "SweptInference",
           "check_inference_parameters", "load_swept_inference", "save_swept_inference", "swept_inference_of_folds"]

logger = logging.getLogger(__name__)

INFERENCE_PARAMETERS_FILE = "detection_inference.json"

SWEPT_PARAMETERS = ("score_threshold", "nms_iou", "cluster_iou", "min_size", "detections_per_image")
"""The :class:`~autounet.planning.plans.DetectionInference` fields a sweep chooses (in the order it tries them)."""


@dataclass(frozen=True)
class SweepTrial:
    """One tried value: the validation AP at IoU 0.1 with it (the other parameters as chosen so far).

    Attributes:
        parameter: One of :data:`SWEPT_PARAMETERS`.
        value: The value tried.
        ap: AP at IoU 0.1 over the validation cases (``None`` when undefined).
    """

    parameter: str
    value: float
    ap: float | None


@dataclass(frozen=True)
class SweptInference:
    """The swept inference parameters of one fold; saved as :data:`INFERENCE_PARAMETERS_FILE`.

    Attributes:
        schema_version: Version of this file's layout.
        parameters: The chosen parameters (``candidates_per_level`` stays the plan's).
        ap_default: Validation AP at IoU 0.1 with the plan's parameters.
        ap_swept: Validation AP at IoU 0.1 with the chosen ones.
        num_cases: Validation cases the choice was made on.
        trials: Every tried value, in order (documentation only).
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int = 1
    parameters: DetectionInference = field(default_factory=DetectionInference)
    ap_default: float | None = None
    ap_swept: float | None = None
    num_cases: int = 0
    trials: tuple[SweepTrial, ...] = ()

    def __post_init__(self) -> None:
        check_inference_parameters(self.parameters)


def check_inference_parameters(parameters: DetectionInference) -> None:
    """Raise ``ValueError`` naming the first parameter outside its range (IoUs and the score threshold in
    [0, 1], the minimum size not negative, at least one candidate and one box per image)."""
    for name in ("score_threshold", "nms_iou", "cluster_iou"):
        if not 0 <= getattr(parameters, name) <= 1:
            raise ValueError(f"{name} must lie in [0, 1], got {getattr(parameters, name)}")
    if parameters.min_size < 0:
        raise ValueError(f"min_size must not be negative, got {parameters.min_size}")
    if parameters.candidates_per_level < 1 or parameters.detections_per_image < 1:
        raise ValueError("candidates_per_level and detections_per_image must be at least 1")


def save_swept_inference(path: str | os.PathLike, swept: SweptInference) -> None:
    """Write a :class:`SweptInference` as JSON (atomically)."""
    save_dataclass(path, swept)


def load_swept_inference(path: str | os.PathLike) -> SweptInference:
    """Read a file written by :func:`save_swept_inference`.

    Raises:
        ConfigError: The file is missing, not valid JSON, or does not hold swept parameters.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError("no detection inference parameters here", path)
    return load_dataclass(SweptInference, path)


def swept_inference_of_folds(model_folder: Path, folds: Sequence[int | str]) -> tuple[DetectionInference, str] | None:
    """The swept parameters a prediction with ``folds`` uses: those of the first of the folds that has them
    (one fold's validation cases chose them; an ensemble uses the first fold's choice), and where they came
    from; ``None`` when no fold has any."""
    for fold in folds:
        path = Path(model_folder) / f"fold_{fold}" / INFERENCE_PARAMETERS_FILE
        if path.is_file():
            if len(folds) > 1:
                logger.info("inference parameters of fold %s used for folds %s", fold, ", ".join(map(str, folds)))
            return load_swept_inference(path).parameters, str(path)
    return None
