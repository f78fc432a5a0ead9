"""Converters into nnU-Net v2 raw format: MSD / nnU-Net v1 task folders, and folders of 2D pictures.

Both build the dataset in a hidden folder beside its final place and rename it when complete, so a crash
never leaves a half dataset under the final name. MSD tasks hold one NIfTI file per case with the channels
on the last axis (nnU-Net v1 tasks one file per channel already); each channel is written with the source
header (affine, qform/sform and codes, units, scaling) and the stored voxel values unchanged. Pictures stay
one file per case (colour = three channels). Binary masks stored as 0/255 become 0/1, because label values
must be consecutive; without given label names, other gaps are closed by renumbering in increasing order,
recorded in ``dataset.json`` as ``label_values_converted``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from PIL import Image

from autounet.dataset._staging import staged_dataset
from autounet.dataset.description import parse_dataset_json, save_dataset_json
from autounet.dataset.raw import dataset_folder_name
from autounet.errors import ConfigError, DatasetError, ImageIOError
from autounet.io.geometry import ImageGeometry
from autounet.io.images import read_image, read_segmentation, write_image, write_segmentation
from autounet.io.jsonio import read_json
from autounet.progress import parallel_map, progress

__all__ = ["PICTURE_ENDINGS", "convert_images", "convert_msd"]

logger = logging.getLogger(__name__)

# nnU-Net v1 / MSD ("Task05_Prostate") and nnDetection ("Task016_Luna", "Task000D3_Example") task folders.
_TASK_FOLDER = re.compile(r"^Task(\d+)[A-Za-z0-9]*_(.+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_NIFTI = ".nii.gz"
_KEPT_KEYS = ("name", "description", "reference", "licence", "license", "release")
PICTURE_ENDINGS: tuple[str, ...] = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
_OUTPUT_ENDINGS = (".png", ".bmp", ".tif", ".tiff")


def _is_junk(path: Path) -> bool:
    return path.name.startswith(".")  # MSD tars, made on macOS, hold "._name" AppleDouble files


@dataclass(frozen=True)
class _MsdCase:
    """One case of a task folder; ``image`` is the MSD file or, for v1 tasks, the name without ``_0000``."""

    case_id: str
    image: Path
    label: Path | None
    split: str


def convert_msd(task_folder: Path, raw_root: Path, dataset_id: int | None = None, num_processes: int = 1,
                overwrite: bool = False) -> Path:
    """Convert an MSD or nnU-Net v1 task folder (``TaskNN_Name/``) into ``raw_root/DatasetNNN_Name``.

    Multi-channel (4D) images are split into ``{case}_{channel:04d}.nii.gz`` files with the source header
    and voxel values; 3D images are copied byte for byte; labels are rewritten as small integer types with
    their own header. ``dataset.json`` is translated to v2 (``channel_names`` from ``modality``, labels as
    name -> value with value 0 named ``background``); name, description, reference, licence and release
    are kept. Hidden files (macOS ``._`` junk) are skipped.

    Args:
        task_folder: The task folder with ``dataset.json``, ``imagesTr/``, ``labelsTr/`` and optionally
            ``imagesTs/``.
        raw_root: The raw-data folder receiving the dataset; created if missing.
        dataset_id: Number of the new dataset; by default the task number (``Task05_Prostate`` -> 5).
        num_processes: Worker processes, one case at a time each.
        overwrite: Replace an existing dataset of the same name once the new one is complete.

    Returns:
        The new dataset folder.

    Raises:
        DatasetError: Malformed task folder or ``dataset.json``, unreadable images, wrong channel counts,
            non-integer labels, or an existing dataset without ``overwrite``; the message names the file.
    """
    task_folder = Path(task_folder)
    if not (task_folder / "dataset.json").is_file():
        raise DatasetError("not a task folder: dataset.json not found", task_folder)
    final, dataset_id = task_dataset_folder(task_folder, raw_root, dataset_id)
    legacy = _read_legacy_json(task_folder / "dataset.json")
    cases = _training_cases(task_folder, legacy) + _test_cases(task_folder, legacy)
    num_training = sum(case.split == "Tr" for case in cases)
    if num_training == 0:
        raise DatasetError("no training cases in imagesTr/ or in the 'training' list", task_folder)
    data = _v2_json(legacy, task_folder, num_training, len(cases) - num_training)
    description = parse_dataset_json(data, task_folder / "dataset.json")
    with staged_dataset(final, int(dataset_id), overwrite) as staging:
        convert = partial(_convert_msd_case, staging=staging, num_channels=description.num_channels)
        parallel_map(convert, cases, num_processes, f"convert {task_folder.name}")
        save_dataset_json(staging / "dataset.json", description)
    logger.debug("converted %s into %s", task_folder, final)
    return final


def task_dataset_folder(task_folder: Path, raw_root: str | os.PathLike, dataset_id: int | None) -> tuple[Path, int]:
    """The dataset folder a converted task becomes, and its id: ``TaskNN_Name`` -> ``DatasetNNN_Name``.

    Raises:
        DatasetError: No id given and the folder name holds no task number, or a name unfit for a folder.
    """
    match = _TASK_FOLDER.match(task_folder.name)
    if dataset_id is None:
        if match is None:
            raise DatasetError("folder name is not TaskNN_Name, so there is no task number to use; give the "
                               "dataset id (-d ID)", task_folder)
        dataset_id = int(match.group(1))
    name = match.group(2) if match else task_folder.name
    return Path(raw_root) / dataset_folder_name(dataset_id, _checked_name(name)), dataset_id


def _checked_name(name: str) -> str:
    if not _NAME.match(name):
        raise DatasetError(f"dataset name {name!r} must start with a letter or digit and hold only letters, "
                           "digits, '_', '-' and '.'")
    return name


def _read_legacy_json(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except ConfigError as exc:
        raise DatasetError(exc.problem, path) from None
    if not isinstance(data, dict):
        raise DatasetError("dataset.json must hold a JSON object", path)
    if "channel_names" in data and "modality" not in data:
        raise DatasetError("this is already an nnU-Net v2 dataset.json; copy the folder to "
                           "DatasetNNN_Name in the raw folder instead of converting it", path)
    for key in ("modality", "labels"):
        value = data.get(key)
        if not isinstance(value, dict) or not value or not all(str(k).isdecimal() for k in value):
            raise DatasetError(f"'{key}' must be a non-empty object like {{\"0\": \"...\"}}", path)
    return data


def _v2_json(legacy: dict[str, Any], task_folder: Path, num_training: int, num_test: int) -> dict[str, Any]:
    path = task_folder / "dataset.json"
    labels: dict[str, int] = {}
    for value, label_name in sorted(legacy["labels"].items(), key=lambda item: int(item[0])):
        label_name = "background" if int(value) == 0 else str(label_name)
        if label_name in labels:
            raise DatasetError(f"label name {label_name!r} is used for values {labels[label_name]} and "
                               f"{value}; names must be unique", path)
        labels[label_name] = int(value)
    data: dict[str, Any] = {"channel_names": {str(int(k)): str(v) for k, v in legacy["modality"].items()},
                            "labels": labels, "numTraining": num_training, "file_ending": _NIFTI}
    data.update({key: legacy[key] for key in _KEPT_KEYS if key in legacy})
    return data | {"numTest": num_test, "converted_from": f"{task_folder.name} by 'autounet convert msd'"}


def _listed_file(task_folder: Path, entry: Any, key: str) -> Path:
    value = entry.get(key) if isinstance(entry, dict) else entry
    if not isinstance(value, str) or not value.endswith(_NIFTI):
        raise DatasetError(f"entry {entry!r} needs a '{key}' path ending in {_NIFTI}",
                           task_folder / "dataset.json")
    return task_folder / value.removeprefix("./")


def _listed_images(folder: Path) -> list[Path]:
    """MSD images of a folder, or for v1 tasks the case names their ``_0000`` files stand for."""
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.name.endswith(_NIFTI) and not _is_junk(p))
    first_channels = [p for p in files if p.name.endswith(f"_0000{_NIFTI}")]
    return [p.with_name(p.name[: -len(f"_0000{_NIFTI}")] + _NIFTI) for p in first_channels] or files


def _training_cases(task_folder: Path, legacy: dict[str, Any]) -> list[_MsdCase]:
    entries = legacy.get("training")
    if entries is None:
        images = _listed_images(task_folder / "imagesTr")
        pairs = [(image, task_folder / "labelsTr" / image.name) for image in images]
    elif isinstance(entries, list):
        pairs = [(_listed_file(task_folder, e, "image"), _listed_file(task_folder, e, "label")) for e in entries]
        listed = {image.name for image, _ in pairs}
        unlisted = [p.name for p in _listed_images(task_folder / "imagesTr") if p.name not in listed]
        if unlisted:
            logger.warning("%s: %d image(s) in imagesTr/ are not in the 'training' list and are left out: %s",
                           task_folder, len(unlisted), ", ".join(unlisted[:5]))
    else:
        raise DatasetError("'training' must be a list", task_folder / "dataset.json")
    for _, label in pairs:
        if not label.is_file():
            raise DatasetError("label file not found", label)
    return _unique([_MsdCase(image.name[: -len(_NIFTI)], image, label, "Tr") for image, label in pairs])


def _test_cases(task_folder: Path, legacy: dict[str, Any]) -> list[_MsdCase]:
    entries = legacy.get("test")
    if isinstance(entries, list):
        images = [_listed_file(task_folder, e, "image") for e in entries]
    else:
        images = _listed_images(task_folder / "imagesTs")
    return _unique([_MsdCase(image.name[: -len(_NIFTI)], image, None, "Ts") for image in images])


def _unique(cases: list[_MsdCase]) -> list[_MsdCase]:
    first: dict[str, _MsdCase] = {}
    if repeated := [c for c in cases if first.setdefault(c.case_id, c) is not c]:
        raise DatasetError(f"case '{repeated[0].case_id}' is listed twice", repeated[0].image)
    return cases


def _convert_msd_case(case: _MsdCase, staging: Path, num_channels: int) -> None:
    out = staging / f"images{case.split}"
    out.mkdir(parents=True, exist_ok=True)
    if case.image.is_file():
        _split_channels(case.image, out, case.case_id, num_channels)
    else:
        _copy_channel_files(case, out, num_channels)
    if case.label is not None:
        _rewrite_label(case.label, staging / f"labels{case.split}" / case.label.name)


def _copy_channel_files(case: _MsdCase, out: Path, num_channels: int) -> None:
    """nnU-Net v1 layout: the channels are separate files already."""
    for channel in range(num_channels):
        name = f"{case.case_id}_{channel:04d}{_NIFTI}"
        source = case.image.with_name(name)
        if not source.is_file():
            raise DatasetError(f"image not found (neither {case.image.name} nor its channel {channel} file)",
                               source)
        shutil.copyfile(source, out / name)


def _split_channels(path: Path, out: Path, case_id: str, num_channels: int) -> None:
    try:
        image = nib.load(path)
        shape = image.shape
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unusable file
        raise ImageIOError(f"cannot read image: {exc}", path) from exc
    channels = 1 if len(shape) == 3 else shape[3] if len(shape) == 4 else None
    if channels != num_channels:
        raise DatasetError(f"image of shape {shape} has {channels or 'an unknown number of'} channel(s) "
                           f"but dataset.json 'modality' lists {num_channels}", path)
    if len(shape) == 3 and path.name.endswith(_NIFTI):
        shutil.copyfile(path, out / f"{case_id}_0000{_NIFTI}")  # nothing to split: keep every byte
        return
    try:
        # Stored values and the proxy's scaling, so that each channel file holds the same bytes.
        stored = np.asanyarray(image.dataobj.get_unscaled())
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt voxel data
        raise ImageIOError(f"cannot read image: {exc}", path) from exc
    stored = stored.reshape(*shape[:3], channels)
    for channel in range(channels):
        # affine=None keeps the header's qform, sform and codes; the data shape sets dim[0] = 3.
        single = type(image)(stored[..., channel], None, header=image.header.copy())
        single.header.set_slope_inter(image.dataobj.slope, image.dataobj.inter)
        nib.save(single, out / f"{case_id}_{channel:04d}{_NIFTI}")


def _rewrite_label(source: Path, destination: Path) -> None:
    labels, geometry = read_segmentation(source)
    write_segmentation(_integer_labels(labels, source), geometry, destination)


def _integer_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """``labels`` as int64, or an error if any value is not a non-negative integer."""
    if labels.size == 0:
        return labels.astype(np.int64)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or not np.array_equal(labels, np.round(labels)):
            raise DatasetError("label map holds non-integer values; labels must be integers", path)
    if labels.min() < 0:
        raise DatasetError(f"label map holds the negative value {labels.min():g}", path)
    return labels.astype(np.int64)


def convert_images(images_dir: Path, labels_dir: Path, raw_root: Path, dataset_id: int, name: str,
                   labels: dict[str, int] | None = None, channel_names: dict[int, str] | None = None,
                   file_ending: str = ".png", overwrite: bool = False) -> Path:
    """Convert a folder of 2D pictures and a folder of label images into ``raw_root/DatasetNNN_Name``.

    Pictures (``.png``, ``.bmp``, ``.tif``, ``.jpg``) are paired with the label image of the same stem
    and written as ``imagesTr/{stem}_0000{file_ending}`` (colour stays three channels in one file) and
    ``labelsTr/{stem}{file_ending}``. Label values 0/255 (binary masks) become 0/1; JPEG labels (lossy)
    are thresholded at 128 first. Without ``labels``, names are inferred as ``background``,
    ``label_1``, ... and non-consecutive values are renumbered in increasing order.

    Args:
        images_dir: Folder of pictures; hidden files are skipped.
        labels_dir: Folder of label images with the same stems.
        raw_root: The raw-data folder receiving the dataset; created if missing.
        dataset_id: Number of the new dataset.
        name: Short name, e.g. ``Polyps`` for ``Dataset010_Polyps``.
        labels: Label name -> value, ``background`` 0 included; inferred when ``None``.
        channel_names: Channel index -> name; ``{0: "R", 1: "G", 2: "B"}`` or ``{0: "grey"}`` when ``None``.
        file_ending: Output format: ``.png`` (default), ``.bmp`` or ``.tif``.
        overwrite: Replace an existing dataset of the same name once the new one is complete.

    Returns:
        The new dataset folder.

    Raises:
        DatasetError: A picture without label (or the reverse), unreadable or 3D pictures, mixed channel
            counts, shape mismatches, label values outside ``labels``, or an existing dataset without
            ``overwrite``; the message names the file.
    """
    if file_ending.lower() not in _OUTPUT_ENDINGS:
        raise DatasetError(f"file ending {file_ending!r} cannot hold 2D pictures; use one of "
                           f"{', '.join(_OUTPUT_ENDINGS)}")
    final = Path(raw_root) / dataset_folder_name(dataset_id, _checked_name(name))
    if labels is not None:  # before reading any picture
        parse_dataset_json({"channel_names": {"0": "any"}, "labels": labels, "numTraining": 0,
                            "file_ending": file_ending}, final / "dataset.json")
    pairs = _pair_pictures(Path(images_dir), Path(labels_dir))
    num_channels, found = _scan_pictures(pairs, file_ending.lower())
    names, remap = _label_names(found, labels)
    channel_names = channel_names or ({0: "R", 1: "G", 2: "B"} if num_channels == 3 else {0: "grey"})
    if len(channel_names) != num_channels:
        raise DatasetError(f"{len(channel_names)} channel name(s) given but the pictures have {num_channels} "
                           "channel(s)", Path(images_dir))
    data: dict[str, Any] = {"channel_names": {str(k): v for k, v in channel_names.items()}, "labels": names,
                            "numTraining": len(pairs), "file_ending": file_ending, "name": name,
                            "converted_from": f"{Path(images_dir).name}/ and {Path(labels_dir).name}/ by "
                                              "'autounet convert images'"}
    if remap:
        data["label_values_converted"] = {str(k): v for k, v in sorted(remap.items())}
    description = parse_dataset_json(data, final / "dataset.json")
    with staged_dataset(final, dataset_id, overwrite) as staging:
        _write_pictures(pairs, staging, file_ending, remap, f"convert {final.name}")
        save_dataset_json(staging / "dataset.json", description)
    return final


def _write_pictures(pairs: list[tuple[str, Path, Path]], staging: Path, ending: str, remap: dict[int, int],
                    description: str) -> None:
    geometry = ImageGeometry.default(2)
    for stem, image_file, label_file in progress(pairs, description, total=len(pairs)):
        write_image(_read_picture(image_file), geometry, staging / "imagesTr" / f"{stem}_0000{ending}")
        label = _read_picture_label(label_file)
        if remap:
            table = np.arange(max(int(label.max()), *remap) + 1)
            table[list(remap)] = list(remap.values())
            label = table[label]
        write_segmentation(label, geometry, staging / "labelsTr" / f"{stem}{ending}")


def _pictures(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatasetError("folder not found", folder)
    found: dict[str, Path] = {}
    folded: dict[str, Path] = {}  # case ids differing only in letter case collide on Windows and macOS
    for path in sorted(folder.iterdir()):
        if _is_junk(path) or not path.is_file():
            continue
        ending = next((e for e in PICTURE_ENDINGS if path.name.lower().endswith(e)), None)
        if ending is None:
            logger.warning("%s: not a picture (%s), skipped", path, ", ".join(PICTURE_ENDINGS))
            continue
        stem = path.name[: -len(ending)]
        if (other := folded.setdefault(stem.casefold(), path)) != path:
            raise DatasetError(f"two pictures with the same name: {other.name} and {path.name}", path)
        found[stem] = path
    return found


def _pair_pictures(images_dir: Path, labels_dir: Path) -> list[tuple[str, Path, Path]]:
    images, labels = _pictures(images_dir), _pictures(labels_dir)
    if not images:
        raise DatasetError(f"no pictures ({', '.join(PICTURE_ENDINGS)}) found", images_dir)
    for stem, path in images.items():
        if stem not in labels:
            raise DatasetError(f"picture has no label image of the same name in {labels_dir}", path)
    for stem, path in labels.items():
        if stem not in images:
            raise DatasetError(f"label image has no picture of the same name in {images_dir}", path)
    return [(stem, images[stem], labels[stem]) for stem in sorted(images)]


def _read_picture(path: Path) -> np.ndarray:
    """A picture as ``(C, Y, X)``: grey -> 1 channel, colour (palette, CMYK, ...) -> 3 channels RGB."""
    if path.name.lower().endswith((".tif", ".tiff")):
        image, geometry = read_image([path])
        if geometry.ndim != 2:
            raise DatasetError("3D TIFF volume; 'convert images' takes 2D pictures only", path)
        return image
    try:
        with Image.open(path) as picture:
            picture.load()
            if picture.mode in ("1", "LA", "La"):
                picture = picture.convert("L")
            elif picture.mode not in ("L", "F", "RGB") and not picture.mode.startswith("I"):
                picture = picture.convert("RGB")  # palette, RGBA, CMYK, YCbCr, ...
            data = np.asarray(picture)
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unusable file
        raise ImageIOError(f"cannot read image: {exc}", path) from exc
    return data[None] if data.ndim == 2 else np.moveaxis(data, -1, 0)


def _read_picture_label(path: Path) -> np.ndarray:
    """A label image as int64 ``(Y, X)``; grey-coded colour masks (R = G = B) are accepted."""
    if path.name.lower().endswith((".jpg", ".jpeg")):
        # Lossy compression smears the 0/255 of a mask into nearby values; only a binary mask survives.
        grey = _read_picture(path).mean(axis=0)
        return np.where(grey >= 128, 255, 0).astype(np.int64)
    data, geometry = read_image([path])
    if geometry.ndim != 2:
        raise DatasetError("3D TIFF volume; 'convert images' takes 2D label images only", path)
    if data.shape[0] == 3 and not (np.array_equal(data[0], data[1]) and np.array_equal(data[0], data[2])):
        raise DatasetError("colour label image; store label values as grey levels (0, 1, 2, ...)", path)
    return _integer_labels(data[0], path)


def _scan_pictures(pairs: list[tuple[str, Path, Path]], ending: str) -> tuple[int, dict[Path, set[int]]]:
    """Check every pair before anything is written; return the channel count and each label's values."""
    num_channels: int | None = None
    found: dict[Path, set[int]] = {}
    for _, image_file, label_file in progress(pairs, "check pictures", total=len(pairs)):
        image = _read_picture(image_file)
        if num_channels is not None and image.shape[0] != num_channels:
            raise DatasetError(f"picture has {image.shape[0]} channel(s), the ones before {num_channels}; "
                               "make all pictures grey or all colour", image_file)
        num_channels = image.shape[0]
        _check_storable(image, ending, image_file)
        label = _read_picture_label(label_file)
        if label.shape != image.shape[1:]:
            raise DatasetError(f"label image of shape {label.shape} for a picture of shape {image.shape[1:]}",
                               label_file)
        found[label_file] = {int(v) for v in np.unique(label)}
    assert num_channels is not None  # pairs is never empty
    return num_channels, found


def _check_storable(image: np.ndarray, ending: str, path: Path) -> None:
    if ending in (".tif", ".tiff"):
        return
    high = 65535 if ending == ".png" and image.shape[0] == 1 else 255
    if not np.array_equal(image, np.round(image)) or image.min() < 0 or image.max() > high:
        raise DatasetError(f"picture values ({image.min():g}..{image.max():g}) do not fit {ending} "
                           f"(integers 0..{high}); convert with file ending .tif", path)


def _label_names(found: dict[Path, set[int]],
                 labels: dict[str, int] | None) -> tuple[dict[str, int], dict[int, int]]:
    """Label names and the value renumbering (old -> new) for the values found in the label images."""
    values = set().union(*found.values())
    declared = set(labels.values()) if labels is not None else set()
    remap: dict[int, int] = {}
    if values <= {0, 255} and 255 in values and 255 not in declared:
        remap = {255: 1}  # binary masks saved as black/white
    if labels is not None:
        for path, file_values in found.items():
            unexpected = sorted({remap.get(v, v) for v in file_values} - declared)
            if unexpected:
                raise DatasetError(f"label value(s) {unexpected} are not among the given labels {labels}", path)
        return dict(labels), remap
    ordered = sorted(values | {0})
    if not remap and ordered != list(range(len(ordered))):
        remap = {old: new for new, old in enumerate(ordered) if old != new}
        logger.warning("label values %s are not consecutive; renumbered as %s", ordered, remap)
    names = {"background": 0} | {f"label_{v}": v for v in range(1, len(ordered))}
    return names, remap
