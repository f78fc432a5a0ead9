"""Ensembling: average saved probabilities of several models; choose the best configuration or ensemble."""

from __future__ import annotations

from autounet.ensembling.average import (
    EnsembleCase,
    average_probabilities,
    collect_cases,
    ensemble_case,
    ensemble_folders,
    load_probabilities,
    probabilities_to_segmentation,
)
from autounet.ensembling.find_best import (
    CHOICE_FILE,
    FIND_BEST_FOLDER,
    Candidate,
    FindBestChoice,
    FindBestResult,
    chosen_postprocessing,
    find_best,
)

__all__ = [
    "CHOICE_FILE",
    "FIND_BEST_FOLDER",
    "Candidate",
    "EnsembleCase",
    "FindBestChoice",
    "FindBestResult",
    "average_probabilities",
    "chosen_postprocessing",
    "collect_cases",
    "ensemble_case",
    "ensemble_folders",
    "find_best",
    "load_probabilities",
    "probabilities_to_segmentation",
]
