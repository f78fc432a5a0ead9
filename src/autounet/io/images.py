"""Reading and writing images and segmentations, format chosen by file ending.

Supported: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd), PNG, BMP, TIFF (2D, or 3D
with a spacing sidecar). Every failure becomes an :class:`~autounet.errors.ImageIOError` naming the file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autounet.errors import ImageIOError
from autounet.io._formats import ImageFormat, matching_ending
from autounet.io._itk import ItkFormat
from autounet.io._natural import PillowFormat, TiffFormat
from autounet.io._nifti import NiftiFormat
from autounet.io.geometry import ImageGeometry

__all__ = [
    "SUPPORTED_ENDINGS",
    "format_for",
    "read_image",
    "read_segmentation",
    "split_ending",
    "write_image",
    "write_segmentation",
]

_FORMATS: tuple[ImageFormat, ...] = (NiftiFormat(), ItkFormat(), PillowFormat(), TiffFormat())
SUPPORTED_ENDINGS: tuple[str, ...] = tuple(e for f in _FORMATS for e in f.endings)
# Natural 2D images may hold several channels (RGB) in one file; volumetric formats hold one.
MULTICHANNEL_ENDINGS: tuple[str, ...] = PillowFormat.endings + TiffFormat.endings


def split_ending(filename: str) -> tuple[str, str] | None:
    """Split ``filename`` into stem and supported ending, or return ``None`` if the ending is unknown."""
    ending = matching_ending(filename, SUPPORTED_ENDINGS)
    if ending is None:
        return None
    return filename[: -len(ending)], filename[-len(ending):]


def format_for(path: str | os.PathLike) -> ImageFormat:
    """The handler for a file, by its ending.

    Raises:
        ImageIOError: The ending is not supported.
    """
    path = Path(path)
    for image_format in _FORMATS:
        if matching_ending(path.name, image_format.endings):
            return image_format
    raise ImageIOError(f"unsupported file ending; supported: {', '.join(SUPPORTED_ENDINGS)}", path)


def _read_one(path: Path, intensities: bool = False) -> tuple[np.ndarray, ImageGeometry]:
    image_format = format_for(path)
    if not path.is_file():
        raise ImageIOError("file not found", path)
    # A format whose values may be indices rather than intensities (palette PNG) reads images differently.
    reader = getattr(image_format, "read_intensities", image_format.read) if intensities else image_format.read
    try:
        data, geometry = reader(path)
    except ImageIOError:
        raise
    except MemoryError as exc:
        raise ImageIOError("cannot read image: not enough memory for the size its header declares", path) from exc
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unusable file
        raise ImageIOError(f"cannot read image: {_reason(exc)}", path) from exc
    _check_voxel_type(data.dtype, path)
    _check_direction(geometry, path)
    return data, geometry


def _check_voxel_type(dtype: np.dtype, path: Path) -> None:
    """Refuse voxel types that are not real numbers (complex, RGB24 records, objects): no exact conversion."""
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise ImageIOError(f"voxel type {dtype} is not a real scalar (complex, RGB or structured voxels cannot be "
                           "converted exactly); store one real-valued channel per file", path)


def _check_direction(geometry: ImageGeometry, path: Path) -> None:
    """Refuse a singular or rank-deficient direction: no world position can be computed with it.

    A sheared (non-orthogonal) affine is still read, so that files round-trip; verify refuses it for training.
    """
    direction = geometry.direction_matrix()
    if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-6:
        raise ImageIOError("the header's direction (affine) is singular or rank-deficient: two image axes point "
                           "the same way; fix the qform/sform or direction in the header", path)


def _reason(exc: Exception) -> str:
    """The informative part of a library's error message, on one line.

    SimpleITK puts the C++ source location on the first line and the actual problem after it
    ("sitk::ERROR: Unable to determine ImageIO reader ..."), and NRRD errors end with the specific
    cause, so the first line alone says nothing useful.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Exception thrown in SimpleITK")]
    if not lines:
        return exc.__class__.__name__
    for prefix in ("sitk::ERROR:", "itk::ERROR:", "ITK ERROR:"):
        lines = [line.removeprefix(prefix).strip() for line in lines]
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


def read_image(files: Sequence[str | os.PathLike]) -> tuple[np.ndarray, ImageGeometry]:
    """Read the channel files of one case and stack them.

    Args:
        files: One file per channel (``case_0000``, ``case_0001``, ...); an RGB natural image counts as
            three channels.

    Returns:
        ``float32`` array of shape ``(C, Z, Y, X)`` or ``(C, Y, X)``, and the geometry of the first file.

    Raises:
        ImageIOError: A file is unreadable, contains NaN/Inf, or disagrees in shape or geometry with the
            first channel.
    """
    if not files:
        raise ImageIOError("no image files given")
    arrays: list[np.ndarray] = []
    geometry: ImageGeometry | None = None
    for file in map(Path, files):
        data, file_geometry = _read_one(file, intensities=True)
        if geometry is None:
            geometry = file_geometry
        elif data.shape[1:] != arrays[0].shape[1:]:
            raise ImageIOError(f"shape {data.shape[1:]} differs from the first channel's "
                               f"{arrays[0].shape[1:]}", file)
        elif (problem := geometry.mismatch(file_geometry)) is not None:
            raise ImageIOError(f"geometry differs from the first channel's: {problem}", file)
        data = data.astype(np.float32, copy=False)
        if not np.isfinite(data).all():
            raise ImageIOError("image contains NaN or Inf values", file)
        arrays.append(data)
    assert geometry is not None  # files is non-empty
    image = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
    return image, geometry


def read_segmentation(file: str | os.PathLike) -> tuple[np.ndarray, ImageGeometry]:
    """Read a label map.

    Returns:
        Array of shape ``(Z, Y, X)`` or ``(Y, X)`` in the file's dtype (values are checked by the caller),
        and its geometry.

    Raises:
        ImageIOError: Unreadable file or more than one channel.
    """
    path = Path(file)
    data, geometry = _read_one(path)
    if data.shape[0] != 1:
        raise ImageIOError(f"segmentation has {data.shape[0]} channels; expected a single label map", path)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise ImageIOError("label map holds NaN or Inf values; labels must be integers", path)
    return data[0], geometry


def _smallest_label_dtype(array: np.ndarray) -> np.dtype:
    if array.size == 0:
        return np.dtype(np.uint8)
    low, high = int(array.min()), int(array.max())
    for dtype in (np.uint8, np.uint16, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def write_segmentation(segmentation: np.ndarray, geometry: ImageGeometry, file: str | os.PathLike) -> None:
    """Write a label map with exactly the given geometry, atomically.

    Args:
        segmentation: Integer array ``(Z, Y, X)`` or ``(Y, X)``.
        geometry: Usually the geometry read from the source image.
        file: Destination; its ending picks the format.

    Raises:
        ImageIOError: Values that are not integers (a cast would truncate them silently), or the write
            failed.
    """
    segmentation = np.asarray(segmentation)
    if not (np.issubdtype(segmentation.dtype, np.integer) or segmentation.dtype == bool):
        if not (np.all(np.isfinite(segmentation)) and np.array_equal(segmentation, np.round(segmentation))):
            raise ImageIOError("cannot write segmentation: it holds non-integer values", Path(file))
    write_image(segmentation.astype(_smallest_label_dtype(segmentation), copy=False), geometry, file)


def write_image(array: np.ndarray, geometry: ImageGeometry, file: str | os.PathLike) -> None:
    """Write an array with the given geometry, atomically (temporary file, then rename).

    Args:
        array: ``(*spatial)`` or, for formats that allow it, ``(C, *spatial)``.
        geometry: Geometry to store.
        file: Destination; its ending picks the format.

    Raises:
        ImageIOError: The format cannot store this array or geometry, or the write failed.
    """
    path = Path(file)
    image_format = format_for(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ending = matching_ending(path.name, image_format.endings) or ""
    # Write under the final name inside a private temporary folder, then move the files into place with
    # the main file last: detached data files (.mhd + .zraw, .nhdr + .raw.gz) and TIFF sidecars keep the
    # names their header refers to, and a reader never sees a main file without its companions. The
    # ending is staged in lower case because nibabel and ITK pick the format by it case-sensitively
    # (ITK writes "x.MHA" as a detached "x.mhd" + "x.zraw").
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp_dir:
        staged = Path(tmp_dir) / (path.name[: len(path.name) - len(ending)] + ending.lower())
        try:
            image_format.write(np.asarray(array), geometry, staged)
        except ImageIOError:
            raise
        except Exception as exc:
            raise ImageIOError(f"cannot write image: {_reason(exc)}", path) from exc
        if not staged.is_file():
            raise ImageIOError(f"cannot write image: the {image_format.name} writer produced no {staged.name}",
                               path)
        try:
            for companion in sorted(Path(tmp_dir).iterdir()):
                if companion != staged:
                    os.replace(companion, path.parent / companion.name)
            os.replace(staged, path)
        except OSError as exc:
            raise ImageIOError(f"cannot write image: {exc}", path) from exc
