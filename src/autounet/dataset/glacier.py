"""Converters for glacier calving-front data: the CaFFe benchmark as published, and the nnU-Net glacier fork's
stacked task folders. Both write a dataset with two label maps (tasks, see :mod:`autounet.dataset.description`):

* ``zones`` (area): ``background`` 0 (CaFFe code 0, "N/A area" and radar shadow, as the glacier fork treats it),
  ``rock`` 1 (code 64), ``glacier`` 2 (code 127), ``ocean`` 3 (code 254);
* ``front`` (line): ``front`` 1 on the calving front (code 255), ``background`` 0 elsewhere.

CaFFe (Gourmelon et al., 2022) is published as ``sar_images/{train,test}/NAME.png``,
``zones/{train,test}/NAME_zones.png`` and ``fronts/{train,test}/NAME_front.png`` with ``NAME`` =
``GLACIER_DATE_SENSOR_RES_...`` (e.g. ``Mapple_2008-10-13_ERS_20_2``), ``RES`` being the pixel size in metres.
Images are written as 2D MetaImage (``.mha``) with that pixel size as spacing, so distances (the mean distance
error of fronts) come out in metres; ``train`` becomes ``imagesTr``/``labelsTr/<task>/``, ``test`` becomes
``imagesTs``/``labelsTs/<task>/`` (labels kept for evaluation). Pixel values are kept unchanged.

The glacier fork (nnU-Net v1, ``TaskNNN_Glacier_mtl``) stored the maps stacked in one label NIfTI along its last
axis, ``label0`` the front and ``label1`` the zones (a third map, e.g. zone boundaries, may follow); its images are
one-slice NIfTI volumes with in-plane spacing 1. ``convert glacier-stacked`` splits the maps and takes the pixel
size from the CaFFe case name.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autounet.dataset._staging import staged_dataset
from autounet.dataset.convert import task_dataset_folder
from autounet.dataset.description import parse_dataset_json, save_dataset_json
from autounet.dataset.raw import dataset_folder_name
from autounet.errors import ConfigError, DatasetError, ImageIOError
from autounet.io.geometry import ImageGeometry
from autounet.io.images import read_image, read_segmentation, write_image, write_segmentation
from autounet.io.jsonio import read_json
from autounet.progress import parallel_map

__all__ = ["CAFFE_DATASET_ID", "CAFFE_ZONE_CODES", "caffe_pixel_size", "convert_caffe", "convert_glacier_stacked"]

logger = logging.getLogger(__name__)

CAFFE_DATASET_ID = 507
CAFFE_ZONE_CODES = {0: 0, 64: 1, 127: 2, 254: 3}
"""CaFFe zone pixel value -> zone label (background = N/A area and radar shadow, rock, glacier, ocean)."""
_FRONT_CODES = {0: 0, 255: 1}
_ZONE_LABELS = {"background": 0, "rock": 1, "glacier": 2, "ocean": 3}
_FRONT_LABELS = {"background": 0, "front": 1}
_ENDING = ".mha"
_SPLITS = (("train", "Tr"), ("test", "Ts"))
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RESOLUTION = re.compile(r"^\d+(\.\d+)?$")
_NIFTI = ".nii.gz"
MAX_PIXEL_SIZE_M = 10_000.0


def caffe_pixel_size(name: str) -> float:
    """The pixel size in metres from a CaFFe name ``GLACIER_DATE_SENSOR_RES_...`` (the fourth ``_`` field).

    Raises:
        DatasetError: The name does not follow the pattern (no date second, no positive number fourth).
    """
    parts = name.split("_")
    if len(parts) < 4 or not parts[0] or not _DATE.match(parts[1]) or not parts[2] or not _RESOLUTION.match(parts[3]):
        raise DatasetError(f"name {name!r} is not GLACIER_DATE_SENSOR_RES_... (e.g. Mapple_2008-10-13_ERS_20_2), "
                           "so its pixel size is unknown")
    size = float(parts[3])
    # Hundreds of digits parse as infinity; CaFFe's sensors resolve 6 to 50 m.
    if not 0 < size <= MAX_PIXEL_SIZE_M:
        raise DatasetError(f"name {name!r} gives the pixel size {size:g} m; it must be positive and at most "
                           f"{MAX_PIXEL_SIZE_M:g} m")
    return size


def _geometry(pixel_size: float) -> ImageGeometry:
    return ImageGeometry(spacing=(pixel_size, pixel_size), origin=(0.0, 0.0), direction=((1.0, 0.0), (0.0, 1.0)),
                         world_frame="LPS")


def _tasks_json() -> dict[str, Any]:
    return {"zones": {"labels": dict(_ZONE_LABELS), "kind": "area"},
            "front": {"labels": dict(_FRONT_LABELS), "kind": "line",
                      "boundary": {"task": "zones", "inside": ["glacier"], "outside": ["ocean"]}}}


@dataclass(frozen=True)
class _CaffeCase:
    name: str
    split: str  # "Tr" or "Ts"
    image: Path
    zones: Path
    front: Path


def convert_caffe(source: Path, raw_root: Path, dataset_id: int = CAFFE_DATASET_ID, num_processes: int = 1,
                  overwrite: bool = False) -> Path:
    """Convert the CaFFe benchmark folder (``sar_images/``, ``zones/``, ``fronts/``) into ``DatasetNNN_CaFFe``.

    Args:
        source: The unpacked benchmark folder (CaFFe's ``data_raw/``).
        raw_root: The raw-data folder receiving the dataset; created if missing.
        dataset_id: Number of the new dataset.
        num_processes: Worker processes, one image at a time each.
        overwrite: Replace an existing dataset of the same name once the new one is complete.

    Returns:
        The new dataset folder.

    Raises:
        DatasetError: Missing folders, a name that is not ``GLACIER_DATE_SENSOR_RES_...``, an image without its
            zone or front map (or the reverse), a colour image, shapes that differ, or pixel values other than
            the CaFFe codes; the message names the file.
    """
    source = Path(source)
    final = Path(raw_root) / dataset_folder_name(dataset_id, "CaFFe")
    cases = [case for split, short in _SPLITS for case in _caffe_cases(source, split, short)]
    num_training = sum(case.split == "Tr" for case in cases)
    if num_training == 0:
        raise DatasetError("no training images in sar_images/train/", source)
    data = {"channel_names": {"0": "SAR"}, "tasks": _tasks_json(), "numTraining": num_training,
            "file_ending": _ENDING, "numTest": len(cases) - num_training, "name": "CaFFe",
            "description": "CaFFe: calving fronts and glacier zones in SAR images of seven glaciers.",
            "reference": "Gourmelon et al., Earth System Science Data 14, 4287-4313 (2022)",
            "pixel_size_unit": "m",
            "zone_codes": {"0": "background (N/A area and radar shadow)", "64": "rock", "127": "glacier",
                           "254": "ocean"},
            "converted_from": f"{source.name} by 'autounet convert caffe'"}
    description = parse_dataset_json(data, final / "dataset.json")
    with staged_dataset(final, dataset_id, overwrite) as staging:
        parallel_map(partial(_convert_caffe_case, staging=staging), cases, num_processes, "convert CaFFe")
        save_dataset_json(staging / "dataset.json", description)
    logger.debug("converted %s into %s", source, final)
    return final


def _pngs(folder: Path, suffix: str) -> dict[str, Path]:
    """``{NAME: path}`` of ``NAME{suffix}.png`` files; other files are errors."""
    if not folder.is_dir():
        raise DatasetError("folder not found; the CaFFe layout has sar_images/, zones/ and fronts/, each with "
                           "train/ and test/", folder)
    found = {}
    for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        ending = f"{suffix}.png"
        if not path.is_file() or not path.name.endswith(ending) or len(path.name) == len(ending):
            raise DatasetError(f"unexpected entry in {folder.parent.name}/{folder.name}/: files there are named "
                               f"NAME{ending}", path)
        found[path.name[: -len(ending)]] = path
    return found


def _caffe_cases(source: Path, split: str, short: str) -> list[_CaffeCase]:
    images = _pngs(source / "sar_images" / split, "")
    zones = _pngs(source / "zones" / split, "_zones")
    fronts = _pngs(source / "fronts" / split, "_front")
    for name, path in images.items():
        try:
            caffe_pixel_size(name)
        except DatasetError as exc:
            raise DatasetError(exc.problem, path) from None
        for maps, folder, suffix in ((zones, "zones", "_zones"), (fronts, "fronts", "_front")):
            if name not in maps:
                raise DatasetError(f"image has no {folder} map", source / folder / split / f"{name}{suffix}.png")
    for maps in (zones, fronts):
        for name, path in maps.items():
            if name not in images:
                raise DatasetError(f"map has no image sar_images/{split}/{name}.png", path)
    return [_CaffeCase(name, short, path, zones[name], fronts[name]) for name, path in images.items()]


def _read_grey(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as picture:
            picture.load()
            data = np.asarray(picture)
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unusable file
        raise ImageIOError(f"cannot read image: {exc}", path) from exc
    if data.ndim != 2:
        raise DatasetError(f"expected a single-channel (grey) picture, got shape {data.shape}", path)
    return data


def _coded(path: Path, codes: dict[int, int], shape: tuple[int, ...]) -> np.ndarray:
    """A CaFFe label picture mapped through ``codes``; other values or another shape are errors."""
    data = _read_grey(path)
    if data.shape != shape:
        raise DatasetError(f"shape {data.shape} differs from the image's {shape}", path)
    if unexpected := sorted(set(np.unique(data).tolist()) - set(codes)):
        raise DatasetError(f"unexpected pixel values {unexpected[:5]}; this map holds only "
                           f"{', '.join(map(str, codes))}", path)
    table = np.zeros(max(codes) + 1, dtype=np.uint8)
    table[list(codes)] = list(codes.values())
    return table[data]


def _convert_caffe_case(case: _CaffeCase, staging: Path) -> None:
    image = _read_grey(case.image)
    zones = _coded(case.zones, CAFFE_ZONE_CODES, image.shape)
    front = _coded(case.front, _FRONT_CODES, image.shape)
    geometry = _geometry(caffe_pixel_size(case.name))
    write_image(image, geometry, staging / f"images{case.split}" / f"{case.name}_0000{_ENDING}")
    write_segmentation(zones, geometry, staging / f"labels{case.split}" / "zones" / f"{case.name}{_ENDING}")
    write_segmentation(front, geometry, staging / f"labels{case.split}" / "front" / f"{case.name}{_ENDING}")


# --- the glacier fork's stacked layout ------------------------------------------------------------------------


@dataclass(frozen=True)
class _StackedCase:
    name: str
    split: str
    image: Path
    label: Path | None


def convert_glacier_stacked(task_folder: Path, raw_root: Path, dataset_id: int | None = None,
                            num_processes: int = 1, overwrite: bool = False) -> Path:
    """Convert a glacier-fork task folder (labels stacked in one NIfTI) into a dataset with one map per task.

    The v1 ``dataset.json`` must declare the stacked maps as ``"labels": {"label0": {...}, "label1": {...}}``:
    ``label0`` becomes the task ``front`` (line), ``label1`` the task ``zones`` (area, the fork's ``stone`` named
    ``rock``), a further map with one foreground label the line task named after that label. Test cases keep their
    labels when ``labelsTs/`` has them.

    Args:
        task_folder: ``TaskNNN_Name/`` with ``dataset.json``, ``imagesTr/``, ``labelsTr/`` and optionally
            ``imagesTs/``, ``labelsTs/``.
        raw_root: The raw-data folder receiving the dataset; created if missing.
        dataset_id: Number of the new dataset; by default the task number.
        num_processes: Worker processes.
        overwrite: Replace an existing dataset of the same name once the new one is complete.

    Returns:
        The new dataset folder.

    Raises:
        DatasetError: Not the stacked layout, a case name without pixel size, a label whose number of maps,
            shape or values do not fit; the message names the file.
    """
    task_folder = Path(task_folder)
    json_path = task_folder / "dataset.json"
    if not json_path.is_file():
        raise DatasetError("not a task folder: dataset.json not found", task_folder)
    final, dataset_id = task_dataset_folder(task_folder, raw_root, dataset_id)
    tasks = _stacked_tasks(json_path)
    cases = [case for split in ("Tr", "Ts") for case in _stacked_cases(task_folder, split)]
    num_training = sum(case.split == "Tr" for case in cases)
    if num_training == 0:
        raise DatasetError("no training cases (NAME_0000.nii.gz) in imagesTr/", task_folder)
    data = {"channel_names": {"0": "SAR"}, "tasks": tasks, "numTraining": num_training, "file_ending": _ENDING,
            "numTest": len(cases) - num_training, "name": final.name.split("_", 1)[1], "pixel_size_unit": "m",
            "converted_from": f"{task_folder.name} by 'autounet convert glacier-stacked'"}
    description = parse_dataset_json(data, final / "dataset.json")
    names = [task.name for task in description.tasks]
    allowed = [task.allowed_label_values for task in description.tasks]
    with staged_dataset(final, dataset_id, overwrite) as staging:
        convert = partial(_convert_stacked_case, staging=staging, names=names, allowed=allowed)
        parallel_map(convert, cases, num_processes, f"convert {task_folder.name}")
        save_dataset_json(staging / "dataset.json", description)
    return final


def _stacked_tasks(path: Path) -> dict[str, Any]:
    """The ``tasks`` entry from the fork's ``"labels": {"label0": {...}, "label1": {...}}``."""
    try:
        legacy = read_json(path)
    except ConfigError as exc:
        raise DatasetError(exc.problem, path) from None
    labels = legacy.get("labels") if isinstance(legacy, dict) else None
    keys = [f"label{i}" for i in range(len(labels))] if isinstance(labels, dict) else []
    if not keys or sorted(labels) != sorted(keys) or len(keys) < 2 or not all(
            isinstance(v, dict) and all(str(k).isdecimal() for k in v) for v in labels.values()):
        raise DatasetError("not the glacier fork's stacked layout: 'labels' must hold label0, label1, ... each "
                           "mapping values to names; for one label map use 'autounet convert msd'", path)
    tasks: dict[str, Any] = {}
    for index, key in enumerate(keys):
        names = {int(value): str(name) for value, name in labels[key].items()}
        named = {"background": 0} | {("rock" if name == "stone" else name): value
                                     for value, name in sorted(names.items()) if value != 0}
        task = "front" if index == 0 else "zones" if index == 1 else re.sub(r"[^A-Za-z0-9_-]", "_", names.get(1, key))
        kind = "area" if index == 1 or len(named) != 2 else "line"
        if task in tasks or not task[:1].isalpha():
            task = f"map{index}"
        tasks[task] = {"labels": named, "kind": kind}
    return tasks


def _stacked_cases(task_folder: Path, split: str) -> list[_StackedCase]:
    images_dir = task_folder / f"images{split}"
    if not images_dir.is_dir():
        return []
    cases = []
    for path in sorted(images_dir.glob(f"*_0000{_NIFTI}")):
        name = path.name[: -len(f"_0000{_NIFTI}")]
        label = task_folder / f"labels{split}" / f"{name}{_NIFTI}"
        if split == "Tr" and not label.is_file():
            raise DatasetError("label file not found", label)
        try:
            caffe_pixel_size(name)
        except DatasetError as exc:
            raise DatasetError(exc.problem, path) from None
        cases.append(_StackedCase(name, split, path, label if label.is_file() else None))
    return cases


def _convert_stacked_case(case: _StackedCase, staging: Path, names: list[str], allowed: list[frozenset[int]]) -> None:
    image, _ = read_image([case.image])
    if image.ndim != 4 or image.shape[1] != 1:
        raise DatasetError(f"expected a one-slice image (the fork's 2D images), got shape {image.shape[1:]}",
                           case.image)
    geometry = _geometry(caffe_pixel_size(case.name))
    write_image(image[0, 0], geometry, staging / f"images{case.split}" / f"{case.name}_0000{_ENDING}")
    if case.label is None:
        return
    stacked, _ = read_segmentation(case.label)  # the NIfTI's last axis is the first array axis
    if stacked.ndim != 3 or stacked.shape[0] != len(names) or stacked.shape[1:] != image.shape[2:]:
        raise DatasetError(f"label of shape {stacked.shape} does not hold {len(names)} stacked maps of the image's "
                           f"shape {image.shape[2:]}", case.label)
    for name, values, label_map in zip(names, allowed, stacked, strict=True):
        if undeclared := sorted(set(np.unique(label_map).tolist()) - values):
            raise DatasetError(f"map '{name}' holds undeclared values {undeclared[:5]}", case.label)
        write_segmentation(label_map.astype(np.uint8), geometry,
                           staging / f"labels{case.split}" / name / f"{case.name}{_ENDING}")
