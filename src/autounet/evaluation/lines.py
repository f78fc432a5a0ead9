"""Line labels (e.g. calving fronts): the mean distance error (MDE) between predicted and reference lines.

Per image, as in the CaFFe glacier benchmark: for every reference line pixel the distance (in physical units,
from the pixel spacing) to the nearest predicted line pixel, and for every predicted line pixel the distance to
the nearest reference line pixel; the image's MDE is the mean of both sets pooled together,
``(sum(d_ref) + sum(d_pred)) / (n_ref + n_pred)``. Distances are between pixel centres.

Images where no line was predicted (or where the reference has none) have no MDE: they are counted
separately and never folded into the mean with some penalty, so a model that predicts fewer fronts cannot
look better or worse by that alone. Works for 2D and 3D masks alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from autounet.errors import DatasetError
from autounet.evaluation.summary import case_id_of, pair_files
from autounet.io.images import read_segmentation
from autounet.io.jsonio import write_json
from autounet.progress import progress

__all__ = ["LINE_SUMMARY_FILE", "LineDistance", "LineEvaluation", "MdeSummary", "evaluate_line_folders",
           "line_distance", "summarise_line_distances"]

LineStatus = Literal["scored", "no_prediction", "no_reference", "both_empty"]


@dataclass(frozen=True)
class LineDistance:
    """The distance between the predicted and reference lines of one image.

    Attributes:
        mde: Mean distance error in the units of the spacing (mm, or m for SAR pixel sizes); NaN unless
            ``status == "scored"``.
        status: ``scored``, or why there is no distance: ``no_prediction``, ``no_reference``, ``both_empty``.
        reference_pixels: Line pixels of the reference.
        predicted_pixels: Line pixels of the prediction.
    """

    mde: float
    status: LineStatus
    reference_pixels: int
    predicted_pixels: int


def line_distance(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]) -> LineDistance:
    """MDE of one image's line masks.

    Args:
        reference: Boolean (or 0/1) line mask ``(*spatial)``.
        prediction: Predicted line mask, same shape.
        spacing: Pixel spacing per axis, same order as the array axes.

    Raises:
        ValueError: Shapes differ, or the spacing has the wrong length or a non-positive value.
    """
    reference, prediction = np.asarray(reference).astype(bool), np.asarray(prediction).astype(bool)
    if reference.shape != prediction.shape:
        raise ValueError(f"reference {reference.shape} and prediction {prediction.shape} differ in shape")
    if len(spacing) != reference.ndim or not all(s > 0 for s in spacing):
        raise ValueError(f"spacing {tuple(spacing)} does not fit a {reference.ndim}D mask")
    n_ref, n_pred = int(reference.sum()), int(prediction.sum())
    if n_ref == 0 or n_pred == 0:
        status: LineStatus = ("both_empty" if n_ref == n_pred else "no_prediction" if n_pred == 0
                              else "no_reference")
        return LineDistance(math.nan, status, n_ref, n_pred)
    sampling = tuple(float(s) for s in spacing)
    # Distance of every pixel to the nearest line pixel of the other mask (zeros of ~mask are the line).
    to_prediction = ndimage.distance_transform_edt(~prediction, sampling=sampling)
    to_reference = ndimage.distance_transform_edt(~reference, sampling=sampling)
    total = float(to_prediction[reference].sum() + to_reference[prediction].sum())
    return LineDistance(total / (n_ref + n_pred), "scored", n_ref, n_pred)


@dataclass(frozen=True)
class MdeSummary:
    """MDE over a set of images.

    Attributes:
        mean: Mean of the per-image MDEs of the scored images (NaN when none).
        median: Their median (NaN when none).
        scored: Images with a distance.
        no_prediction: Images with a reference line but no predicted one (reported, not in the mean).
        no_reference: Images with a predicted line but no reference one.
        both_empty: Images with neither.
    """

    mean: float
    median: float
    scored: int
    no_prediction: int
    no_reference: int
    both_empty: int


def summarise_line_distances(distances: Sequence[LineDistance]) -> MdeSummary:
    """Mean and median MDE of the scored images, and how many images had no distance, by reason."""
    values = [d.mde for d in distances if d.status == "scored"]
    counts = {status: sum(d.status == status for d in distances)
              for status in ("no_prediction", "no_reference", "both_empty")}
    return MdeSummary(mean=float(np.mean(values)) if values else math.nan,
                      median=float(np.median(values)) if values else math.nan, scored=len(values), **counts)


@dataclass(frozen=True)
class LineEvaluation:
    """MDE of a folder of predicted line maps against a folder of references.

    Attributes:
        cases: ``(case id, distance)`` per scored file pair, sorted by case id.
        summary: Mean and median over the cases, and the counts of cases without a distance.
        summary_file: Where the JSON was written.
    """

    cases: tuple[tuple[str, LineDistance], ...]
    summary: MdeSummary
    summary_file: Path

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON written to :attr:`summary_file` (NaN as ``null``)."""
        def number(value: float) -> float | None:
            return None if math.isnan(value) else value

        return {"summary": {k: number(v) if isinstance(v, float) else v for k, v in asdict(self.summary).items()},
                "per_case": [{"case": case, "mde": number(d.mde), "status": d.status,
                              "reference_pixels": d.reference_pixels, "predicted_pixels": d.predicted_pixels}
                             for case, d in self.cases]}


LINE_SUMMARY_FILE = "line_summary.json"


def evaluate_line_folders(reference_dir: Path, prediction_dir: Path, label: int = 1,
                          output_dir: Path | None = None) -> LineEvaluation:
    """MDE of every predicted line map against the reference of the same file name, in the units of the
    references' spacing; writes :data:`LINE_SUMMARY_FILE`.

    Args:
        reference_dir: Reference line maps.
        prediction_dir: Predicted line maps (one voxel wide: thin predicted bands first).
        label: The value of line voxels.
        output_dir: Where the summary goes (default: ``prediction_dir``).

    Raises:
        DatasetError: A folder is missing, no file names match, shapes differ or a file is unreadable.
    """
    pairs, _, _ = pair_files(Path(reference_dir), Path(prediction_dir))
    cases = []
    for reference_file, prediction_file in progress(pairs, "Line distances", total=len(pairs)):
        reference, geometry = read_segmentation(reference_file)
        prediction, _ = read_segmentation(prediction_file)
        if reference.shape != prediction.shape:
            raise DatasetError(f"shape {prediction.shape} differs from the reference's {reference.shape} "
                               f"({reference_file})", prediction_file)
        cases.append((case_id_of(reference_file.name),
                      line_distance(reference == label, prediction == label, geometry.spacing)))
    output = Path(output_dir) if output_dir is not None else Path(prediction_dir)
    evaluation = LineEvaluation(tuple(cases), summarise_line_distances([d for _, d in cases]),
                                output / LINE_SUMMARY_FILE)
    write_json(evaluation.summary_file, evaluation.to_json_dict())
    return evaluation
