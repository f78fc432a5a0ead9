"""A synthetic SAR-like glacier dataset with two label maps: zones and the calving front (a multi-task example).

Each case shows a fjord crossing the image: a glacier flows in from one side and ends in a calving front, ocean
lies beyond it, rock on both banks, and radar shadow in patches on the rock. Labels, as in the CaFFe benchmark
(see :mod:`autounet.dataset.glacier`):

* task ``zones`` (area): ``background`` 0 (radar shadow and the no-data strip some cases have at one edge),
  ``rock`` 1, ``glacier`` 2, ``ocean`` 3;
* task ``front`` (line): ``front`` 1 on the glacier pixels that touch the ocean (4-neighbourhood), a line one
  pixel wide, ``background`` 0 elsewhere.

Intensities are backscatter-like: a mean per zone (bright rock, grainy glacier, dark ocean, near-black shadow)
times multiplicative gamma speckle of 1 to 4 looks, stored as ``uint8`` like CaFFe's PNGs; no-data pixels are
exactly 0, valid pixels at least 1. Pixel sizes vary like CaFFe's sensors (7, 20 and 40 m), stored as the
image spacing (the numbers are metres). Scenes are rotated by multiples of 90 degrees so the glacier flows in
from any side. Every case comes from its own generator seeded by ``(seed, stream, case index)``; the same
options give byte-identical files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from autounet.dataset._staging import staged_dataset
from autounet.dataset.description import parse_dataset_json, save_dataset_json
from autounet.dataset.raw import dataset_folder_name
from autounet.errors import DatasetError
from autounet.io.geometry import ImageGeometry
from autounet.io.images import write_image, write_segmentation
from autounet.progress import progress

__all__ = ["SAR_EXAMPLE_ID", "SAR_TASKS", "SarCase", "SarExampleOptions", "full_sar_options",
           "generate_sar_example", "sar_case"]

logger = logging.getLogger(__name__)

SAR_EXAMPLE_ID = 506
_NAME = "ExampleSAR"
_STREAM = 17  # separates this generator's random stream from the other examples'
_ENDING = ".mha"  # a true 2D format with spacing (pixel size in metres)
SAR_TASKS = {"zones": {"labels": {"background": 0, "rock": 1, "glacier": 2, "ocean": 3}, "kind": "area"},
             "front": {"labels": {"background": 0, "front": 1}, "kind": "line",
                       "boundary": {"task": "zones", "inside": ["glacier"], "outside": ["ocean"]}}}
"""The ``tasks`` entry of the example's ``dataset.json`` (the CaFFe converter writes the same)."""
_SENSORS = (("TSX", 7.0, 4), ("ERS", 20.0, 3), ("S1", 40.0, 1))  # name, pixel size in m, looks
_MEAN = {0: 0.03, 1: 0.55, 2: 0.38, 3: 0.12}  # backscatter per zone (shadow, rock, glacier, ocean)
_MIN_SIZE = 32


@dataclass(frozen=True)
class SarExampleOptions:
    """Size of the SAR example.

    Attributes:
        num_cases: Training cases.
        num_test_cases: Test cases (with both label maps in ``labelsTs/<task>/``).
        shape: Image shape ``(Y, X)``, at least 32 x 32.
        seed: Non-negative seed.
        dataset_id: Number of ``DatasetNNN_ExampleSAR``.
    """

    num_cases: int = 20
    num_test_cases: int = 4
    shape: tuple[int, int] = (64, 64)
    seed: int = 0
    dataset_id: int = SAR_EXAMPLE_ID


def full_sar_options(seed: int = 0) -> SarExampleOptions:
    """A larger variant (CaFFe-like counts: 559 training and 122 test images, 256 x 256) for real experiments."""
    return SarExampleOptions(num_cases=559, num_test_cases=122, shape=(256, 256), seed=seed)


@dataclass(frozen=True)
class SarCase:
    """One generated case.

    Attributes:
        image: ``uint8`` backscatter ``(Y, X)``; 0 only where there is no data.
        zones: ``uint8`` zone labels ``(Y, X)``.
        front: ``uint8`` front line ``(Y, X)``, 1 on the line.
        sensor: Sensor name (``TSX``, ``ERS``, ``S1``).
        pixel_size: Pixel size in metres.
    """

    image: np.ndarray
    zones: np.ndarray
    front: np.ndarray
    sensor: str
    pixel_size: float


def _check(options: SarExampleOptions) -> None:
    if options.num_cases < 1 or options.num_test_cases < 0 or options.seed < 0:
        raise DatasetError("the SAR example needs at least 1 training case, and no negative counts or seed")
    if len(options.shape) != 2 or min(options.shape) < _MIN_SIZE:
        raise DatasetError(f"the SAR example is 2D and needs a shape of at least {_MIN_SIZE} x {_MIN_SIZE}, got "
                           f"{tuple(options.shape)}")


def _smooth_curve(rng: np.random.Generator, length: int, scale: float) -> np.ndarray:
    """A smooth random curve of zero mean, about ``scale`` pixels of amplitude."""
    curve = ndimage.gaussian_filter1d(rng.standard_normal(length + 16), sigma=max(2.0, length / 10))[8:-8]
    return curve / (np.abs(curve).max() + 1e-9) * scale


def _zones(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Zones of a fjord running along the columns: rock banks, glacier up to a curvy front, then ocean."""
    rows, cols = np.mgrid[0:height, 0:width]
    centre = height * rng.uniform(0.4, 0.6) + _smooth_curve(rng, width, height * 0.08)
    half_width = height * rng.uniform(0.2, 0.3) + _smooth_curve(rng, width, height * 0.04)
    in_fjord = np.abs(rows - centre[None, :]) < half_width[None, :]
    front_column = width * rng.uniform(0.35, 0.65) + _smooth_curve(rng, height, width * 0.12)
    zones = np.where(in_fjord, np.where(cols < front_column[:, None], 2, 3), 1).astype(np.uint8)
    # Radar shadow: smooth blobs on the rock only.
    blobs = ndimage.gaussian_filter(rng.standard_normal((height, width)), sigma=min(height, width) / 12)
    zones[(zones == 1) & (blobs > np.quantile(blobs, rng.uniform(0.8, 0.92)))] = 0
    return zones


def _front(zones: np.ndarray) -> np.ndarray:
    """Glacier pixels with an ocean pixel among their four neighbours: a line one pixel wide."""
    ocean = zones == 3
    touches = np.zeros_like(ocean)
    touches[1:] |= ocean[:-1]
    touches[:-1] |= ocean[1:]
    touches[:, 1:] |= ocean[:, :-1]
    touches[:, :-1] |= ocean[:, 1:]
    return ((zones == 2) & touches).astype(np.uint8)


def sar_case(rng: np.random.Generator, shape: tuple[int, int]) -> SarCase:
    """Generate one case of the given shape ``(Y, X)`` from ``rng``."""
    sensor, pixel_size, looks = _SENSORS[int(rng.integers(len(_SENSORS)))]
    turns = int(rng.integers(4))
    # Odd turns swap the axes: generate in the turned shape so that the result has ``shape``.
    height, width = (shape[1], shape[0]) if turns % 2 else shape
    zones = _zones(rng, height, width)
    no_data = np.zeros((height, width), dtype=bool)
    if rng.random() < 0.3:  # a no-data strip along the image edge where the ocean is, as at swath borders
        no_data[:, width - int(rng.integers(2, max(3, width // 8))):] = True
    zones[no_data] = 0
    mean = np.vectorize(_MEAN.get, otypes=[np.float64])(zones)
    texture = 1.0 + 0.15 * ndimage.gaussian_filter(rng.standard_normal((height, width)), sigma=3) * (zones == 2)
    speckle = rng.gamma(shape=looks, scale=1.0 / looks, size=(height, width))
    image = np.clip(np.round(255 * mean * texture * speckle), 1, 255).astype(np.uint8)
    image[no_data] = 0
    front = _front(zones)
    return SarCase(image=np.ascontiguousarray(np.rot90(image, turns)),
                   zones=np.ascontiguousarray(np.rot90(zones, turns)),
                   front=np.ascontiguousarray(np.rot90(front, turns)), sensor=sensor, pixel_size=pixel_size)


def _geometry(pixel_size: float) -> ImageGeometry:
    return ImageGeometry(spacing=(pixel_size, pixel_size), origin=(0.0, 0.0), direction=((1.0, 0.0), (0.0, 1.0)),
                         world_frame="LPS")


def generate_sar_example(raw_root: Path, options: SarExampleOptions | None = None, overwrite: bool = False) -> Path:
    """Write the SAR example as ``raw_root/DatasetNNN_ExampleSAR``, a dataset with the tasks ``zones`` and ``front``.

    Layout: ``imagesTr/sar_NNNN_0000.mha``, ``labelsTr/zones/sar_NNNN.mha``, ``labelsTr/front/sar_NNNN.mha``;
    test cases continue the numbering in ``imagesTs/`` and ``labelsTs/<task>/``.

    Args:
        raw_root: The raw-data folder; created if missing.
        options: Sizes and seed; the small default when ``None`` (see :func:`full_sar_options`).
        overwrite: Replace an existing dataset of the same name once the new one is complete.

    Returns:
        The dataset folder.

    Raises:
        DatasetError: Invalid options, or the dataset exists and ``overwrite`` is false.
    """
    options = options or SarExampleOptions()
    _check(options)
    final = Path(raw_root) / dataset_folder_name(options.dataset_id, _NAME)
    total = options.num_cases + options.num_test_cases
    with staged_dataset(final, options.dataset_id, overwrite, id_option="--dataset-id") as staging:
        for index in progress(range(total), "example sar", total=total):
            split = "Tr" if index < options.num_cases else "Ts"
            case = sar_case(np.random.default_rng([options.seed, _STREAM, index]), tuple(options.shape))
            case_id, geometry = f"sar_{index:04d}", _geometry(case.pixel_size)
            write_image(case.image, geometry, staging / f"images{split}" / f"{case_id}_0000{_ENDING}")
            for task, label_map in (("zones", case.zones), ("front", case.front)):
                write_segmentation(label_map, geometry, staging / f"labels{split}" / task / f"{case_id}{_ENDING}")
        data = {"channel_names": {"0": "SAR"}, "tasks": SAR_TASKS, "numTraining": options.num_cases,
                "file_ending": _ENDING, "numTest": options.num_test_cases, "name": _NAME,
                "description": "Synthetic SAR-like glacier images: zones (rock, glacier, ocean; background is "
                               "radar shadow and no data) and the calving front as a one-pixel line.",
                "pixel_size_unit": "m", "reference": "generated by 'autounet example sar'", "licence": "CC0-1.0",
                "example": {"kind": "sar", "seed": options.seed, "shape": list(options.shape)}}
        save_dataset_json(staging / "dataset.json", parse_dataset_json(data, staging / "dataset.json"))
    logger.debug("wrote SAR example dataset %s", final)
    return final
