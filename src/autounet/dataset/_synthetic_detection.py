"""nnDetection's toy detection problem, generated in autounet's instance layout or nnDetection's raw layout.

Each case is uniform noise in [0, 1) with up to ``max_objects`` objects, each slot drawn uniformly from
{nothing, square, square with hole} as in nnDetection's example (one slot by default, so a third of the
cases are empty). A *square* is a cube of random edge length whose voxels are 0.4 brighter (clipped to 1);
a *square with hole* is the same cube with a square channel of side ``edge - 2 * wall`` through its whole
first axis, so that in every slice it is a ring. Objects never overlap. Intensities are stored as
``uint8`` (``floor(255 * value)``) to keep the ``full`` dataset small.

Classes count from 0 as in nnDetection: 0 ``square``, 1 ``square_hole``. Every case comes from its own
generator seeded by ``(seed, case index)``; the same options give byte-identical files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autounet.dataset._staging import staged_dataset
from autounet.dataset.description import parse_dataset_json, save_dataset_json
from autounet.dataset.raw import dataset_folder_name
from autounet.errors import DatasetError
from autounet.io.geometry import ImageGeometry
from autounet.io.images import write_image, write_segmentation
from autounet.io.jsonio import write_json
from autounet.progress import progress

__all__ = ["DETECTION_TOY_ID", "DetectionToyOptions", "full_toy_options", "generate_detection_toy", "toy_case",
           "write_nndet_toy_task"]

logger = logging.getLogger(__name__)

DETECTION_TOY_ID = 505
_NAME = "ExampleDetection"
_CLASSES = {0: "square", 1: "square_hole"}
_INTENSITY_STEP = 0.4
_STREAM = 13  # separates this generator's random stream from the segmentation examples'


@dataclass(frozen=True)
class DetectionToyOptions:
    """Size of the toy dataset.

    Attributes:
        num_cases: Training cases.
        num_test_cases: Test cases (with labels).
        shape: Image shape ``(Z, Y, X)`` (or ``(Y, X)`` for a 2D variant).
        edge: Smallest and largest cube edge in voxels (both included).
        wall: Wall thickness of a square with hole; the hole is ``edge - 2 * wall`` wide.
        max_objects: Object slots per case, each empty with probability 1/3.
        seed: Non-negative seed.
        dataset_id: Number of ``DatasetNNN_ExampleDetection``.
    """

    num_cases: int = 20
    num_test_cases: int = 10
    shape: tuple[int, ...] = (32, 32, 32)
    edge: tuple[int, int] = (8, 15)
    wall: int = 2
    max_objects: int = 1
    seed: int = 0
    dataset_id: int = DETECTION_TOY_ID


def full_toy_options(seed: int = 0) -> DetectionToyOptions:
    """nnDetection's ``--full`` toy sizes (1000 training cases, edges 16..31, wall 4) on 128^3 images.

    nnDetection uses 256^3 images and 1000 test cases; 128^3 and 100 test cases keep the dataset near 2 GB.
    """
    return DetectionToyOptions(num_cases=1000, num_test_cases=100, shape=(128, 128, 128), edge=(16, 31), wall=4,
                               seed=seed)


def _check(options: DetectionToyOptions) -> None:
    low, high = options.edge
    if options.num_cases < 1 or options.num_test_cases < 0 or options.seed < 0 or options.max_objects < 1:
        raise DatasetError("the toy needs at least 1 training case and object slot, and no negative counts or seed")
    if len(options.shape) not in (2, 3):
        raise DatasetError(f"the toy shape needs 2 or 3 axes, got {options.shape}")
    if options.wall < 1 or not 2 * options.wall < low <= high or high > min(options.shape):
        raise DatasetError(f"toy edges {options.edge} must exceed twice the wall {options.wall} and fit the "
                           f"shape {options.shape}")


def toy_case(rng: np.random.Generator, options: DetectionToyOptions) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """One toy case.

    Returns:
        ``(image, instance_map, instances)``: ``uint8`` image and ``uint8`` instance map of ``options.shape``,
        and instance id -> class (from 0).
    """
    shape = tuple(options.shape)
    values = rng.random(shape)
    instance_map = np.zeros(shape, dtype=np.uint8)
    instances: dict[int, int] = {}
    for _ in range(options.max_objects):
        kind = int(rng.integers(0, 3))  # 0: no object in this slot, 1: square, 2: square with hole
        edge = int(rng.integers(options.edge[0], options.edge[1] + 1))
        for _attempt in range(20):
            start = [int(rng.integers(0, s - edge + 1)) for s in shape]
            block = tuple(slice(b, b + edge) for b in start)
            if not instance_map[block].any():
                break
        else:
            continue  # no free place for this object
        if kind == 0:
            continue
        mask = np.zeros(shape, dtype=bool)
        mask[block] = True
        if kind == 2:
            inner = [slice(b + options.wall, b + edge - options.wall) for b in start]
            if len(shape) == 3:
                inner[0] = block[0]  # the hole runs through the whole first axis
            mask[tuple(inner)] = False
        instance = len(instances) + 1
        instance_map[mask] = instance
        instances[instance] = kind - 1
    image = np.clip(values + _INTENSITY_STEP * (instance_map > 0), 0.0, 1.0)
    return np.minimum(np.floor(image * 256), 255).astype(np.uint8), instance_map, instances


def _geometry(ndim: int) -> ImageGeometry:
    identity = tuple(tuple(1.0 if r == c else 0.0 for c in range(ndim)) for r in range(ndim))
    return ImageGeometry(spacing=(1.0,) * ndim, origin=(0.0,) * ndim, direction=identity, world_frame="RAS")


def _write_cases(options: DetectionToyOptions, images: dict[str, Path], labels: dict[str, Path]) -> None:
    total = options.num_cases + options.num_test_cases
    geometry = _geometry(len(options.shape))
    for index in progress(range(total), "example detection", total=total):
        split = "Tr" if index < options.num_cases else "Ts"
        image, instance_map, instances = toy_case(np.random.default_rng([options.seed, _STREAM, index]), options)
        case_id = f"toy_{index:04d}"
        write_image(image, geometry, images[split] / f"{case_id}_0000.nii.gz")
        write_segmentation(instance_map, geometry, labels[split] / f"{case_id}.nii.gz")
        write_json(labels[split] / f"{case_id}.json", {"instances": {str(k): v for k, v in instances.items()}})


def generate_detection_toy(raw_root: Path, options: DetectionToyOptions | None = None, overwrite: bool = False
                           ) -> Path:
    """Write the toy problem as ``raw_root/DatasetNNN_ExampleDetection`` in autounet's instance layout.

    The layout is the one :func:`autounet.dataset.nndet.convert_nndet` writes (see that module): images as
    nnU-Net v2, instance maps as label files, ``{case}.json`` beside them, ``"instance_labels": true``.

    Args:
        raw_root: The raw-data folder; created if missing.
        options: Sizes and seed; the small default when ``None`` (see :func:`full_toy_options`).
        overwrite: Replace an existing dataset of the same name once the new one is complete.

    Returns:
        The dataset folder.

    Raises:
        DatasetError: Invalid options, or the dataset exists and ``overwrite`` is false.
    """
    options = options or DetectionToyOptions()
    _check(options)
    final = Path(raw_root) / dataset_folder_name(options.dataset_id, _NAME)
    with staged_dataset(final, options.dataset_id, overwrite, id_option="--dataset-id") as staging:
        _write_cases(options, {s: staging / f"images{s}" for s in ("Tr", "Ts")},
                     {s: staging / f"labels{s}" for s in ("Tr", "Ts")})
        data = {"channel_names": {"0": "noise"}, "labels": {"background": 0} | {n: c + 1 for c, n in _CLASSES.items()},
                "numTraining": options.num_cases, "file_ending": ".nii.gz", "numTest": options.num_test_cases,
                "dim": len(options.shape), "instance_labels": True, "name": _NAME,
                "description": "nnDetection's toy problem: squares and squares with a hole in noise.",
                "example": {"kind": "detection", "seed": options.seed, "shape": list(options.shape)}}
        save_dataset_json(staging / "dataset.json", parse_dataset_json(data, staging / "dataset.json"))
    logger.debug("wrote detection toy dataset %s", final)
    return final


def write_nndet_toy_task(task_folder: Path, options: DetectionToyOptions | None = None) -> Path:
    """Write the same toy cases in nnDetection's raw layout (``dataset.json`` + ``raw_splitted/``).

    For trying ``autounet convert nndet`` and for tests; the folder is written in place.

    Returns:
        ``task_folder``.
    """
    options = options or DetectionToyOptions()
    _check(options)
    task_folder = Path(task_folder)
    splitted = task_folder / "raw_splitted"
    _write_cases(options, {s: splitted / f"images{s}" for s in ("Tr", "Ts")},
                 {s: splitted / f"labels{s}" for s in ("Tr", "Ts")})
    write_json(task_folder / "dataset.json", {"task": task_folder.name, "name": _NAME, "target_class": None,
                                              "test_labels": True, "dim": len(options.shape),
                                              "labels": {str(c): n for c, n in _CLASSES.items()},
                                              "modalities": {"0": "noise"}})
    return task_folder
