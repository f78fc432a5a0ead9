"""Deterministic synthetic example datasets in nnU-Net v2 raw format.

Four kinds, each exercising a different path of the pipeline:

- ``mr``: 3D T1-like head (NIfTI), anisotropic ``(3.0, 0.8, 0.8)`` mm, labels brain/ventricles/lesion,
  exact zeros outside the head, bias field, Rician noise.
- ``ct``: 3D abdomen-like CT in Hounsfield units (NIfTI, ``int16``), channel ``"CT"``, organ and contrast
  vessel labels.
- ``multichannel``: 3D two-channel (T1, T2) MetaImage (``.mha``), gland/lesion/cyst labels that need both
  channels.
- ``png2d``: 2D grey PNG pictures with disc and bar labels.

Beside them, outside these kinds: nnDetection's toy problem (instance labels, :mod:`._synthetic_detection`) and a
SAR-like glacier dataset with two label maps, zones and the calving front (multi-task, :mod:`._synthetic_sar`).

Every case is drawn from its own generator seeded by ``(seed, kind, case index)``, so a case does not
depend on how many cases are generated, and the same options give byte-identical files (nibabel writes
gzip with a zero timestamp and no file name; MetaImage and PNG carry no timestamps). The dataset is built
in a hidden folder beside its final place and renamed into place when complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from autounet.dataset._staging import staged_dataset
from autounet.dataset._synthetic_detection import DetectionToyOptions, full_toy_options, generate_detection_toy
from autounet.dataset._synthetic_sar import SAR_EXAMPLE_ID, SarExampleOptions, full_sar_options, generate_sar_example
from autounet.dataset._synthetic_shapes import (
    CaseRecipe,
    SyntheticCase,
    ct_case,
    mr_case,
    multichannel_case,
    png_case,
)
from autounet.dataset.description import DatasetDescription, load_dataset_json, save_dataset_json
from autounet.dataset.raw import dataset_folder_name
from autounet.errors import DatasetError
from autounet.io.images import write_image, write_segmentation
from autounet.progress import progress

__all__ = [
    "DetectionToyOptions",
    "EXAMPLE_IDS",
    "EXAMPLE_KINDS",
    "EXAMPLE_NAMES",
    "ExampleInfo",
    "ExampleKind",
    "ExampleOptions",
    "SAR_EXAMPLE_ID",
    "SarExampleOptions",
    "example_info",
    "full_sar_options",
    "full_toy_options",
    "generate_detection_toy",
    "generate_example",
    "generate_sar_example",
]

logger = logging.getLogger(__name__)

ExampleKind = Literal["mr", "ct", "multichannel", "png2d"]
EXAMPLE_KINDS: tuple[ExampleKind, ...] = get_args(ExampleKind)
EXAMPLE_IDS: dict[ExampleKind, int] = {"mr": 501, "ct": 502, "multichannel": 503, "png2d": 504}
EXAMPLE_NAMES: dict[ExampleKind, str] = {"mr": "ExampleMR", "ct": "ExampleCT",
                                         "multichannel": "ExampleMultiChannel", "png2d": "ExamplePNG"}
# Bump when a recipe changes its output for the same options; recorded in dataset.json.
GENERATOR_VERSION = 1
# Smaller volumes leave structures of one or two voxels; slices may be fewer than in-plane pixels.
MIN_SLICES, MIN_IN_PLANE_VOXELS = 8, 16
# A 512^3 volume; each case is generated in memory as several float arrays, so more is a typo, not a request.
MAX_EXAMPLE_VOXELS = 2**27


@dataclass(frozen=True)
class _KindSpec:
    """What a kind generates: its recipe and the ``dataset.json`` it declares."""

    recipe: CaseRecipe
    stream: int  # separates the random streams of the kinds, independent of the dataset id
    case_prefix: str
    default_shape: tuple[int, ...]
    nominal_spacing: tuple[float, ...]
    channel_names: dict[int, str]
    labels: dict[str, int]
    file_ending: str
    description: str


_SPECS: dict[ExampleKind, _KindSpec] = {
    "mr": _KindSpec(mr_case, 1, "mr", (40, 80, 80), (3.0, 0.8, 0.8), {0: "T1"},
                    {"background": 0, "brain": 1, "ventricles": 2, "lesion": 3}, ".nii.gz",
                    "Synthetic T1-like head MR, anisotropic spacing, bias field, Rician noise, zero air."),
    "ct": _KindSpec(ct_case, 2, "ct", (48, 80, 80), (1.5, 1.0, 1.0), {0: "CT"},
                    {"background": 0, "organ": 1, "vessel": 2}, ".nii.gz",
                    "Synthetic abdomen-like CT in Hounsfield units (int16) with an unlabelled spine."),
    "multichannel": _KindSpec(multichannel_case, 3, "mc", (32, 64, 64), (2.5, 1.0, 1.0), {0: "T1", 1: "T2"},
                              {"background": 0, "gland": 1, "lesion": 2, "cyst": 3}, ".mha",
                              "Synthetic two-channel (T1, T2) MR; lesion and cyst need both channels."),
    "png2d": _KindSpec(png_case, 4, "png", (128, 128), (1.0, 1.0), {0: "grey"},
                       {"background": 0, "disc": 1, "bar": 2}, ".png",
                       "Synthetic 2D grey pictures: bright discs, dark bars, unlabelled rings."),
}


@dataclass(frozen=True)
class ExampleOptions:
    """How much of an example dataset to generate.

    Attributes:
        num_cases: Training cases (``imagesTr``/``labelsTr``).
        num_test_cases: Test cases (``imagesTs``, with their labels in ``labelsTs``).
        shape: Nominal array shape ``(Z, Y, X)`` or ``(Y, X)``; ``None`` for the kind's default. The 3D
            kinds vary each case by up to about 6 % per axis, as scans do.
        seed: Non-negative seed; the same seed gives byte-identical files.
        dataset_id: Dataset number of the folder ``DatasetNNN_Name``; ``None`` for the kind's default.
    """

    num_cases: int = 20
    num_test_cases: int = 4
    shape: tuple[int, ...] | None = None
    seed: int = 0
    dataset_id: int | None = None


_DEFAULT_OPTIONS = ExampleOptions()


@dataclass(frozen=True)
class ExampleInfo:
    """What :func:`generate_example` will write for a kind and options (validated).

    Attributes:
        kind: The example kind.
        folder_name: ``DatasetNNN_Name``.
        dataset_id: The dataset number.
        shape: Nominal array shape (per-case sizes vary slightly for 3D kinds).
        spacing: Nominal spacing in mm, same axis order as ``shape``.
        channel_names: Channel index -> name, as in ``dataset.json``.
        labels: Label name -> value, as in ``dataset.json``.
        file_ending: Image file ending.
    """

    kind: ExampleKind
    folder_name: str
    dataset_id: int
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    channel_names: dict[int, str]
    labels: dict[str, int]
    file_ending: str


def example_info(kind: ExampleKind, options: ExampleOptions = _DEFAULT_OPTIONS) -> ExampleInfo:
    """Validate ``options`` for ``kind`` and describe the dataset they produce.

    Raises:
        DatasetError: Unknown kind, counts out of range, negative seed, a shape of the wrong
            dimensionality, below 8 slices / 16 in-plane voxels or above 2**27 voxels, or a dataset id
            outside 0..999.
    """
    if kind not in _SPECS:
        raise DatasetError(f"unknown example kind {kind!r}; choose one of {', '.join(EXAMPLE_KINDS)}")
    spec = _SPECS[kind]
    if options.num_cases < 1:
        raise DatasetError(f"the number of training cases must be at least 1, got {options.num_cases}")
    if options.num_test_cases < 0:
        raise DatasetError(f"the number of test cases must not be negative, got {options.num_test_cases}")
    if options.seed < 0:
        raise DatasetError(f"the seed must be a non-negative integer, got {options.seed}")
    shape = tuple(int(s) for s in options.shape) if options.shape is not None else spec.default_shape
    if len(shape) != len(spec.default_shape):
        raise DatasetError(f"example '{kind}' is {len(spec.default_shape)}D; its shape needs "
                           f"{len(spec.default_shape)} values, got {shape}")
    smallest = (MIN_SLICES,) * (len(shape) - 2) + (MIN_IN_PLANE_VOXELS,) * 2
    if any(s < m for s, m in zip(shape, smallest, strict=True)):
        raise DatasetError(f"shape {shape} is too small for example '{kind}'; use at least {smallest}")
    if int(np.prod(shape, dtype=np.float64)) > MAX_EXAMPLE_VOXELS:
        raise DatasetError(f"shape {shape} holds more than {MAX_EXAMPLE_VOXELS} voxels; examples are for trying "
                           "autounet, use a smaller --shape")
    dataset_id = EXAMPLE_IDS[kind] if options.dataset_id is None else options.dataset_id
    return ExampleInfo(kind=kind, folder_name=dataset_folder_name(dataset_id, EXAMPLE_NAMES[kind]),
                       dataset_id=dataset_id, shape=shape, spacing=spec.nominal_spacing,
                       channel_names=dict(spec.channel_names), labels=dict(spec.labels),
                       file_ending=spec.file_ending)


def generate_example(kind: ExampleKind, raw_root: Path, options: ExampleOptions = _DEFAULT_OPTIONS,
                     overwrite: bool = False) -> Path:
    """Write a synthetic example dataset in nnU-Net v2 raw format.

    Layout: ``dataset.json``, ``imagesTr/{case}_{channel:04d}{ending}``, ``labelsTr/{case}{ending}``,
    ``imagesTs/`` and ``labelsTs/`` for the test cases. Case ids are ``<prefix>_<index:03d>`` (``mr_000``);
    test cases continue the numbering after the training cases.

    Args:
        kind: Which example to generate.
        raw_root: The raw-data folder that receives ``DatasetNNN_Name/``; created if missing.
        options: Case counts, nominal shape, seed and dataset id.
        overwrite: Replace an existing dataset of the same folder name (only once the new one is complete).

    Returns:
        The dataset folder ``raw_root/DatasetNNN_Name``.

    Raises:
        DatasetError: Invalid options, the folder exists and ``overwrite`` is false, or another folder
            already uses the dataset id.
    """
    info = example_info(kind, options)
    raw_root = Path(raw_root)
    final = raw_root / info.folder_name
    description = _description(kind, info, options)
    if not overwrite and _already_written(final, description):
        logger.info("example dataset %s exists with these options; kept", final)
        return final
    with staged_dataset(final, info.dataset_id, overwrite, id_option="--dataset-id") as staging:
        _write_cases(kind, staging, info, options)
        save_dataset_json(staging / "dataset.json", description)
    logger.debug("wrote example dataset %s", final)
    return final


def _already_written(folder: Path, description: DatasetDescription) -> bool:
    """Whether ``folder`` holds this very example: datasets appear only complete (staged, then renamed), so an
    identical ``dataset.json`` (which records the generator's options) means nothing is left to write."""
    path = folder / "dataset.json"
    if not path.is_file():
        return False
    try:
        return load_dataset_json(path) == description
    except DatasetError:  # not ours, or damaged: let the usual check refuse it
        return False


def _case_rng(kind: ExampleKind, seed: int, index: int) -> np.random.Generator:
    """The generator of one case: a function of seed, kind and case index only."""
    return np.random.default_rng([seed, _SPECS[kind].stream, index])


def _write_cases(kind: ExampleKind, folder: Path, info: ExampleInfo, options: ExampleOptions) -> None:
    spec = _SPECS[kind]
    total = options.num_cases + options.num_test_cases
    for index in progress(range(total), f"example {kind}", total=total):
        split = "Tr" if index < options.num_cases else "Ts"
        case = spec.recipe(_case_rng(kind, options.seed, index), info.shape)
        _write_case(case, folder, split, f"{spec.case_prefix}_{index:03d}", spec.file_ending)


def _write_case(case: SyntheticCase, folder: Path, split: str, case_id: str, ending: str) -> None:
    for channel, array in enumerate(case.channels):
        write_image(array, case.geometry, folder / f"images{split}" / f"{case_id}_{channel:04d}{ending}")
    write_segmentation(case.segmentation, case.geometry, folder / f"labels{split}" / f"{case_id}{ending}")


def _description(kind: ExampleKind, info: ExampleInfo, options: ExampleOptions) -> DatasetDescription:
    spec = _SPECS[kind]
    extra = {
        "name": EXAMPLE_NAMES[kind],
        "description": spec.description,
        "reference": "generated by 'autounet example'",
        "licence": "CC0-1.0",
        "numTest": options.num_test_cases,
        "example": {"kind": kind, "seed": options.seed, "shape": list(info.shape),
                    "generator_version": GENERATOR_VERSION},
    }
    return DatasetDescription(channel_names=dict(spec.channel_names), labels=dict(spec.labels),
                              num_training=options.num_cases, file_ending=spec.file_ending, extra=extra)
