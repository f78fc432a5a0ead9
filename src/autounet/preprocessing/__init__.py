"""Preprocessing: crop to the non-zero region, normalise, resample (anisotropy-aware), store per case."""

from __future__ import annotations

from autounet.preprocessing.case import CaseOptions, preprocess_case, sample_class_locations, target_spacing
from autounet.preprocessing.crop import OUTSIDE_LABEL, crop_to_nonzero, fill_holes
from autounet.preprocessing.dataset import (
    PreprocessReport,
    default_configurations,
    preprocess_dataset,
    resolve_data_identifier,
)
from autounet.preprocessing.normalize import (
    Normalizer,
    available_normalizers,
    get_normalizer,
    normalize,
    register_normalizer,
)
from autounet.preprocessing.properties import CaseProperties, load_case_properties, save_case_properties
from autounet.preprocessing.resample import (
    anisotropic_axis,
    compute_new_shape,
    resample_data,
    resample_segmentation,
    resample_to_shape,
)
from autounet.preprocessing.storage import case_finished, load_case, write_case

__all__ = [
    "OUTSIDE_LABEL",
    "CaseOptions",
    "CaseProperties",
    "Normalizer",
    "PreprocessReport",
    "anisotropic_axis",
    "available_normalizers",
    "case_finished",
    "compute_new_shape",
    "crop_to_nonzero",
    "default_configurations",
    "fill_holes",
    "get_normalizer",
    "load_case",
    "load_case_properties",
    "normalize",
    "preprocess_case",
    "preprocess_dataset",
    "register_normalizer",
    "resample_data",
    "resample_segmentation",
    "resample_to_shape",
    "resolve_data_identifier",
    "sample_class_locations",
    "save_case_properties",
    "target_spacing",
    "write_case",
]
