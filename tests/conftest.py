"""Shared fixtures: tiny deterministic raw datasets written with autounet's own I/O."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from autounet.io import ImageGeometry, write_image, write_segmentation

DatasetFactory = Callable[..., Path]


def write_tiny_dataset(root: Path, *, num_cases: int = 3, num_channels: int = 2,
                       shape: tuple[int, ...] = (8, 12, 12),
                       spacing: tuple[float, ...] = (3.0, 1.0, 1.0), ending: str = ".nii.gz", seed: int = 0,
                       name: str = "Dataset999_Tiny") -> Path:
    """Write a small, clean dataset: blobs of labels 1 and 2 in noise, one channel per file.

    Returns:
        The dataset folder (``root/name``).
    """
    rng = np.random.default_rng(seed)
    folder = root / name
    ndim = len(shape)
    geometry = ImageGeometry.default(ndim, spacing) if ending in (".png", ".bmp", ".tif", ".tiff") else None
    for index in range(num_cases):
        case = f"case_{index:03d}"
        seg = np.zeros(shape, dtype=np.uint8)
        centre = [s // 2 for s in shape]
        seg[tuple(slice(c - 2, c + 2) for c in centre)] = 1
        seg[tuple(slice(0, 2) for _ in shape)] = 2
        geom = geometry or _nifti_like_geometry(spacing)
        for channel in range(num_channels):
            image = rng.normal(100.0 * (channel + 1), 10.0, size=shape) + 50.0 * seg
            dtype = np.uint8 if ending in (".png", ".bmp") else np.float32
            image_file = folder / "imagesTr" / f"{case}_{channel:04d}{ending}"
            write_image(np.clip(image, 0, 255).astype(dtype), geom, image_file)
        write_segmentation(seg, geom, folder / "labelsTr" / f"{case}{ending}")
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {str(c): ("CT" if c == 0 else f"MR{c}") for c in range(num_channels)},
        "labels": {"background": 0, "organ": 1, "corner": 2},
        "numTraining": num_cases,
        "file_ending": ending,
        "name": name,
    }, indent=2))
    return folder


def _nifti_like_geometry(spacing: tuple[float, ...]) -> ImageGeometry:
    ndim = len(spacing)
    return ImageGeometry(spacing=spacing, origin=tuple(float(i + 1) for i in range(ndim)),
                         direction=tuple(tuple(1.0 if r == c else 0.0 for c in range(ndim)) for r in range(ndim)),
                         world_frame="RAS" if ndim == 3 else "pixel")


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> DatasetFactory:
    """Factory fixture: ``tiny_dataset(**options)`` writes a dataset under ``tmp_path/raw`` and returns it."""

    def make(**options: object) -> Path:
        return write_tiny_dataset(tmp_path / "raw", **options)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def preprocessed_tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """``(plans, preprocessed dataset folder)`` for a 4-case 3D dataset, planned and preprocessed through the
    real API (session-wide: read-only for tests)."""
    from autounet.dataset import load_raw_dataset
    from autounet.planning.api import plan_dataset
    from autounet.preprocessing import default_configurations, preprocess_dataset

    root = tmp_path_factory.mktemp("data")
    raw = write_tiny_dataset(root / "raw", num_cases=4, num_channels=1, shape=(10, 24, 24))
    plans, plans_path = plan_dataset(raw, root / "preprocessed", num_processes=1)
    preprocess_dataset(load_raw_dataset(raw), plans, default_configurations(plans), plans_path.parent, 1)
    return plans, plans_path.parent
