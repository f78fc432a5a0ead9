"""Raw datasets in nnU-Net v2 format: dataset.json, case discovery, verification, examples, converters."""

from __future__ import annotations

from autounet.dataset.description import DatasetDescription, LabelTask, load_dataset_json, save_dataset_json
from autounet.dataset.labels import LabelScheme, OutputLayout, OutputTask
from autounet.dataset.raw import (
    RawCase,
    RawDataset,
    dataset_folder_name,
    find_raw_dataset,
    group_channel_files,
    list_test_cases,
    load_raw_dataset,
)

__all__ = [
    "DatasetDescription",
    "LabelScheme",
    "LabelTask",
    "OutputLayout",
    "OutputTask",
    "RawCase",
    "RawDataset",
    "dataset_folder_name",
    "find_raw_dataset",
    "group_channel_files",
    "list_test_cases",
    "load_dataset_json",
    "load_raw_dataset",
    "save_dataset_json",
]
