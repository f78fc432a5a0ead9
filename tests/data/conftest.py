"""A tiny dataset, planned and preprocessed through the real API, shared by the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from autounet.dataset import load_raw_dataset
from autounet.planning.api import plan_dataset
from autounet.preprocessing import default_configurations, preprocess_dataset
from tests.conftest import write_tiny_dataset


@pytest.fixture(scope="session")
def preprocessed_tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """``(plans, preprocessed dataset folder)`` for a 4-case 3D dataset."""
    root = tmp_path_factory.mktemp("data")
    raw = write_tiny_dataset(root / "raw", num_cases=4, num_channels=1, shape=(10, 24, 24))
    plans, plans_path = plan_dataset(raw, root / "preprocessed", num_processes=1)
    preprocess_dataset(load_raw_dataset(raw), plans, default_configurations(plans), plans_path.parent, 1)
    return plans, plans_path.parent
