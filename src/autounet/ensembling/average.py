"""Ensembling: average the saved probabilities of several predictions of the same cases, turn the mean into a
label map (argmax, or regions thresholded at 0.5 as :mod:`autounet.inference` does), postprocess, write.

Inputs are folders written by ``autounet predict --save-probabilities`` (or cross-validation folders): per
case ``<case>.npz`` holding ``probabilities`` ``(K, *spatial)`` float32 in the raw image's axis order, and
the label map ``<case><ending>`` whose geometry the output copies exactly.
"""

from __future__ import annotations

import logging
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autounet.dataset.description import DatasetDescription
from autounet.dataset.labels import LabelScheme
from autounet.errors import ImageIOError
from autounet.inference import logits_to_segmentation
from autounet.inference.original_geometry import save_probabilities
from autounet.io.images import read_segmentation, write_segmentation
from autounet.postprocessing import PostprocessingPlan, apply_postprocessing
from autounet.progress import progress

__all__ = [
    "EnsembleCase",
    "average_probabilities",
    "collect_cases",
    "ensemble_case",
    "ensemble_folders",
    "load_probabilities",
    "probabilities_to_segmentation",
]

logger = logging.getLogger(__name__)

PROBABILITIES_KEY = "probabilities"


def load_probabilities(path: Path) -> np.ndarray:
    """Read ``probabilities`` ``(K, *spatial)`` from a ``.npz`` written by ``save_probabilities``.

    Raises:
        ImageIOError: Missing or unreadable file, no ``probabilities`` array, an array header that declares
            more data than the file holds (checked before anything is allocated), not ``(K, *spatial)``, or
            NaN or infinite values.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            if PROBABILITIES_KEY not in archive.files:
                raise ImageIOError(f"no '{PROBABILITIES_KEY}' array in this .npz (found: "
                                   f"{', '.join(archive.files) or 'none'})", path)
            _check_declared_size(path, f"{PROBABILITIES_KEY}.npy")
            probabilities = archive[PROBABILITIES_KEY]
    except FileNotFoundError:
        raise ImageIOError("probability file not found", path) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ImageIOError(f"cannot read probabilities ({exc.__class__.__name__}: {exc})", path) from None
    if probabilities.ndim not in (3, 4) or not np.issubdtype(probabilities.dtype, np.floating):
        raise ImageIOError(f"probabilities must be floating point (K, *spatial), got {probabilities.dtype} of "
                           f"shape {probabilities.shape}", path)
    if not np.isfinite(probabilities).all():
        raise ImageIOError("probabilities hold NaN or infinite values", path)
    return probabilities


def _check_declared_size(path: Path, member: str) -> None:
    """Refuse an array whose ``.npy`` header declares more bytes than the archive member holds.

    NumPy allocates the declared shape before it reads a compressed member, so a few bytes declaring
    ``(4, 100000, 100000, 100000)`` would end in a ``MemoryError`` (or exhaust the machine) instead of an error.
    """
    with zipfile.ZipFile(path) as archive, archive.open(member) as handle:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(handle)
        declared = math.prod(shape) * dtype.itemsize
        available = archive.getinfo(member).file_size - handle.tell()
    if declared > available:
        raise ImageIOError(f"'{member}' declares shape {list(shape)} ({declared} bytes) but holds {available} "
                           "bytes: a damaged or forged file", path)


def average_probabilities(files: Sequence[Path]) -> np.ndarray:
    """Mean of the probabilities of several ``.npz`` files, as float32 ``(K, *spatial)``.

    Raises:
        ImageIOError: A file is unusable or its shape differs from the first file's.
        ValueError: ``files`` is empty.
    """
    if not files:
        raise ValueError("average_probabilities needs at least one file")
    # float32 accumulation, as the files hold float32: enough for a mean of a handful of members.
    total = load_probabilities(files[0]).astype(np.float32, copy=True)
    for file in files[1:]:
        probabilities = load_probabilities(file)
        if probabilities.shape != total.shape:
            raise ImageIOError(f"probabilities of shape {probabilities.shape} differ from {total.shape} in "
                               f"{files[0]}; were they predicted from the same images with the same labels?", file)
        else:
            total += probabilities
    total /= len(files)
    return total


def probabilities_to_segmentation(probabilities: np.ndarray,
                                  region_class_order: Sequence[int] | None = None) -> np.ndarray:
    """Label map from probabilities ``(K, *spatial)``: argmax (first channel on ties), or for region models each
    region on where its probability exceeds 0.5, painted in channel order with ``region_class_order``.

    Returns:
        Integer label map ``(*spatial)`` (uint8 when every label fits).
    """
    scores = torch.from_numpy(np.ascontiguousarray(probabilities, dtype=np.float32))
    # logits_to_segmentation thresholds region channels at 0; a sigmoid probability is above 0.5 exactly there.
    if region_class_order is not None:
        scores = scores - 0.5
    return logits_to_segmentation(scores, region_class_order).numpy()


@dataclass(frozen=True)
class EnsembleCase:
    """One case to ensemble.

    Attributes:
        case_id: The case name.
        probability_files: One ``.npz`` per ensemble member.
        geometry_file: A label map of the case whose geometry (and shape) the output copies.
        output_file: The label map to write; ``<case>.npz`` beside it with ``save_probabilities``.
    """

    case_id: str
    probability_files: tuple[Path, ...]
    geometry_file: Path
    output_file: Path


def ensemble_case(case: EnsembleCase, region_class_order: Sequence[int] | None,
                  plan: PostprocessingPlan | None = None, save_mean_probabilities: bool = False) -> None:
    """Average, label, postprocess and write one case (probabilities first, so the label map marks it done).

    Raises:
        ImageIOError: An input is unusable, or the probabilities' shape differs from the label map's.
    """
    probabilities = average_probabilities(case.probability_files)
    template, geometry = read_segmentation(case.geometry_file)
    if template.shape != probabilities.shape[1:]:
        raise ImageIOError(f"probabilities of spatial shape {probabilities.shape[1:]} do not fit this label map "
                           f"of shape {template.shape}", case.geometry_file)
    if region_class_order is not None and probabilities.shape[0] != len(region_class_order):
        raise ImageIOError(f"{probabilities.shape[0]} probability channels for {len(region_class_order)} regions "
                           "in dataset.json", case.probability_files[0])
    segmentation = probabilities_to_segmentation(probabilities, region_class_order)
    if plan is not None:
        segmentation = apply_postprocessing(segmentation, plan)
    if save_mean_probabilities:
        save_probabilities(case.output_file.with_name(f"{case.case_id}.npz"), probabilities)
    write_segmentation(segmentation, geometry, case.output_file)


def _cases_of(folder: Path) -> set[str]:
    if not folder.is_dir():
        raise ImageIOError("input folder not found", folder)
    return {p.name[:-4] for p in folder.iterdir() if p.is_file() and p.name.endswith(".npz")
            and not p.name.startswith(".")}


def collect_cases(input_dirs: Sequence[Path], output_dir: Path, file_ending: str) -> list[EnsembleCase]:
    """The cases of input folders to ensemble: every ``<case>.npz`` found in any of them.

    Raises:
        ImageIOError: A folder is missing, holds no ``.npz``, lacks a case another folder has, or the first
            folder lacks the label map of a case.
    """
    found = {folder: _cases_of(folder) for folder in input_dirs}
    every = set().union(*found.values())
    if not every:
        raise ImageIOError("no <case>.npz probabilities in any input folder; predict with --save-probabilities",
                           input_dirs[0])
    for folder, cases in found.items():
        missing = sorted(every - cases)
        if missing:
            raise ImageIOError(f"no probabilities for case '{missing[0]}' ({len(missing)} case(s) missing): "
                               "every input folder needs <case>.npz of every case", folder)
    cases = []
    for case_id in sorted(every):
        geometry_file = input_dirs[0] / f"{case_id}{file_ending}"
        if not geometry_file.is_file():
            raise ImageIOError(f"case '{case_id}' has {case_id}.npz but no label map {geometry_file.name} to take "
                               "the geometry from", input_dirs[0])
        cases.append(EnsembleCase(case_id, tuple(folder / f"{case_id}.npz" for folder in input_dirs),
                                  geometry_file, output_dir / f"{case_id}{file_ending}"))
    return cases


def ensemble_folders(input_dirs: Sequence[Path], output_dir: Path, description: DatasetDescription,
                     plan: PostprocessingPlan | None = None, save_mean_probabilities: bool = False,
                     show_progress: bool = True) -> list[Path]:
    """Ensemble every case of the input folders into ``output_dir``; cases already written are skipped.

    Args:
        input_dirs: Folders with ``<case>.npz`` of every case; the first also with ``<case><ending>``.
        output_dir: Receives ``<case><ending>`` (and the mean ``<case>.npz`` with ``save_mean_probabilities``).
        description: The dataset.json of the models: file ending, labels or regions.
        plan: Postprocessing applied to each label map.
        save_mean_probabilities: Also write the averaged probabilities.
        show_progress: Show a progress bar.

    Returns:
        Every output label map, finished before or now.

    Raises:
        ImageIOError: Missing folders, cases or files, or inputs that do not fit together.
        ValueError: No input folder.
    """
    if not input_dirs:
        raise ValueError("ensemble_folders needs at least one input folder")
    input_dirs = [Path(d) for d in input_dirs]
    cases = collect_cases(input_dirs, Path(output_dir), description.file_ending)
    todo = [case for case in cases if not case.output_file.is_file()]
    if len(todo) < len(cases):
        logger.info("%d of %d case(s) already ensembled in %s; skipping them", len(cases) - len(todo), len(cases),
                    output_dir)
    order = LabelScheme.from_description(description).regions_class_order
    items = progress(todo, "Ensembling", total=len(todo)) if show_progress else todo
    for case in items:
        ensemble_case(case, order, plan, save_mean_probabilities)
    return [case.output_file for case in cases]
