"""2D natural images (PNG, BMP) through Pillow and TIFF (2D, or 3D with a spacing sidecar) through tifffile.

Natural images have no world coordinates: spacing is 1, origin 0, identity direction. A colour image
becomes three channels. A 3D TIFF volume needs a sidecar ``<name>.json`` beside it holding
``{"spacing": [z, y, x]}``, the convention nnU-Net v2 uses; the sidecar is written with segmentations too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from tifffile import COMPRESSION

from autounet.io.geometry import ImageGeometry
from autounet.io.jsonio import write_json

__all__ = ["PillowFormat", "TiffFormat", "tiff_sidecar_path"]


def _channels_first_2d(data: np.ndarray) -> np.ndarray:
    if data.ndim == 2:
        return data[None]
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        return np.ascontiguousarray(np.moveaxis(data[..., :3], -1, 0))
    raise ValueError(f"unsupported 2D image layout {data.shape}")


def _grey_or_colour(rgb: np.ndarray) -> np.ndarray:
    """A palette image's colours ``(3, Y, X)`` as one channel when the palette is grey (all three agree)."""
    return rgb[:1] if (rgb[0] == rgb[1]).all() and (rgb[0] == rgb[2]).all() else rgb


def _single_channel_2d(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[0] == 3:
        return np.ascontiguousarray(np.moveaxis(array, 0, -1))
    if array.ndim == 3 and array.shape[0] == 1:
        return array[0]
    if array.ndim != 2:
        raise ValueError(f"2D image output needs (Y, X), (1, Y, X) or (3, Y, X), got {array.shape}")
    return array


class PillowFormat:
    """Handler for PNG and BMP."""

    name = "natural2d"
    endings = (".png", ".bmp")

    def read(self, path: Path) -> tuple[np.ndarray, ImageGeometry]:
        """Read as ``(C, Y, X)``: grey -> 1 channel, RGB/RGBA -> 3 channels (alpha dropped); an indexed-colour
        (palette) image as its indices, which is what a palette label map holds."""
        return self._read(path, colours=False)

    def read_intensities(self, path: Path) -> tuple[np.ndarray, ImageGeometry]:
        """Read an image whose values are intensities: as :meth:`read`, but a palette image as the colours its
        indices stand for (grey -> 1 channel, else RGB -> 3), as nnU-Net's reader (scikit-image) does; its
        indices are arbitrary numbers, not brightness."""
        return self._read(path, colours=True)

    @staticmethod
    def _read(path: Path, colours: bool) -> tuple[np.ndarray, ImageGeometry]:
        with Image.open(path) as image:
            image.load()
            if colours and image.mode in ("P", "PA"):
                rgb = np.ascontiguousarray(np.moveaxis(np.asarray(image.convert("RGB")), -1, 0))
                return _grey_or_colour(rgb), ImageGeometry.default(2)
            if image.mode in ("LA", "PA"):
                image = image.getchannel(0)
            data = np.asarray(image)
        if data.dtype == bool:
            data = data.astype(np.uint8)
        return _channels_first_2d(data), ImageGeometry.default(2)

    def write(self, array: np.ndarray, geometry: ImageGeometry, path: Path) -> None:
        """Write grey (uint8, or uint16 for larger values) or RGB uint8."""
        data = _single_channel_2d(array)
        # Grey values above 255 need 16 bits (PNG only); colour stays 8 bits per channel.
        high = 65535 if data.ndim == 2 else 255
        data = _checked_integers(data, high)
        wide = data.ndim == 2 and data.size > 0 and int(data.max()) > 255
        Image.fromarray(data.astype(np.uint16 if wide else np.uint8)).save(path)


def _checked_integers(data: np.ndarray, high: int) -> np.ndarray:
    """``data`` if every value is an integer in ``0..high``; a plain cast would wrap or truncate silently."""
    if data.dtype == bool or data.size == 0:
        return data.astype(np.uint8)
    if not np.issubdtype(data.dtype, np.integer):
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
            raise ValueError("PNG/BMP store integers only; rescale and round the values first, or write "
                             "a format that keeps floats (.tif, .nii.gz)")
    low, top = data.min(), data.max()
    if low < 0 or top > high:
        raise ValueError(f"values {low}..{top} do not fit the 0..{high} range this image can store")
    return data


def tiff_sidecar_path(path: Path) -> Path:
    """The spacing sidecar of a TIFF file: same name, ``.json`` instead of ``.tif``/``.tiff``."""
    name = path.name
    stem = name[: -len(".tiff")] if name.lower().endswith(".tiff") else name[: -len(".tif")]
    return path.with_name(stem + ".json")


class TiffFormat:
    """Handler for .tif/.tiff: 2D (grey or RGB) without a sidecar, 3D volumes with one."""

    name = "tiff"
    endings = (".tif", ".tiff")

    def read(self, path: Path) -> tuple[np.ndarray, ImageGeometry]:
        """Read a 2D image as ``(C, Y, X)`` or, with a sidecar, a volume as ``(1, Z, Y, X)``; a palette image as
        its indices (a palette label map's labels).

        The shape the header declares is checked against the file's size before the array is allocated.
        """
        return self._read(path, colours=False)

    def read_intensities(self, path: Path) -> tuple[np.ndarray, ImageGeometry]:
        """As :meth:`read`, but a 2D palette image as the colours its indices stand for (grey -> 1 channel,
        else RGB -> 3, 16 bits per channel as the TIFF colour map stores them)."""
        return self._read(path, colours=True)

    def _read(self, path: Path, colours: bool) -> tuple[np.ndarray, ImageGeometry]:
        with tifffile.TiffFile(path) as tiff:
            if not tiff.series:
                raise ValueError("TIFF holds no image")
            _check_declared_size(tiff.series[0], path.stat().st_size)
            data = tiff.asarray()
            page = tiff.pages[0]
            colour_map = page.colormap if page.photometric == tifffile.PHOTOMETRIC.PALETTE else None
        if colours and colour_map is not None and data.ndim == 2:
            return _grey_or_colour(np.asarray(colour_map)[:, data]), ImageGeometry.default(2)
        sidecar = tiff_sidecar_path(path)
        if not sidecar.exists():
            if data.ndim == 3 and data.shape[-1] not in (3, 4):
                raise ValueError(f"3D TIFF of shape {data.shape} has no spacing sidecar {sidecar.name} "
                                 '(expected {"spacing": [z, y, x]})')
            return _channels_first_2d(data), ImageGeometry.default(2)
        spacing = _read_sidecar_spacing(sidecar)
        if data.ndim != len(spacing):
            raise ValueError(f"TIFF of shape {data.shape} but sidecar {sidecar.name} gives "
                             f"{len(spacing)} spacing values")
        return data[None], ImageGeometry.default(data.ndim, spacing)

    def write(self, array: np.ndarray, geometry: ImageGeometry, path: Path) -> None:
        """Write ``(Y, X)``/``(Z, Y, X)`` (channel axis of size 1 allowed); 3D data gets a sidecar."""
        if array.ndim == geometry.ndim + 1 and array.shape[0] == 1:
            array = array[0]
        # Photometric is explicit: left to tifffile, a grey volume with 3 or 4 columns is stored as RGB.
        if geometry.ndim == 2:
            data = _single_channel_2d(array)
            photometric = "rgb" if data.ndim == 3 else "minisblack"
            tifffile.imwrite(path, data, compression="zlib", photometric=photometric)
            return
        if array.ndim != 3:
            raise ValueError(f"3D TIFF output needs (Z, Y, X), got {array.shape}")
        tifffile.imwrite(path, np.ascontiguousarray(array), compression="zlib", photometric="minisblack")
        write_json(tiff_sidecar_path(path), {"spacing": list(geometry.spacing)})


# Bytes of samples a codec can produce from one byte of file at most (runs of one value); a header declaring
# more than the file size times this is lying. PackBits: 2 bytes -> 128; deflate: about 1032:1; TIFF LZW
# (12-bit codes, table cleared at 4094 entries): about 1300:1.
_MAX_RATIO = {COMPRESSION.NONE: 1, COMPRESSION.PACKBITS: 65, COMPRESSION.LZW: 1400,
              COMPRESSION.ADOBE_DEFLATE: 1100, COMPRESSION.DEFLATE: 1100}
# Other codecs (zstd's run-length blocks reach about 32768:1, LZMA, JPEG): a bound no real image reaches.
_MAX_RATIO_OTHER = 2**16


def _check_declared_size(series: tifffile.TiffPageSeries, file_size: int) -> None:
    """Refuse a series whose declared shape cannot come from a file of ``file_size`` bytes, before
    tifffile allocates an array of that shape (a corrupt or crafted header asks for terabytes)."""
    page = series.keyframe
    compression = page.compression
    ratio = _MAX_RATIO.get(compression, _MAX_RATIO_OTHER)
    # Stored bits per sample (1-bit images expand to a byte each in memory, 12-bit ones to two).
    stored = math.prod(float(n) for n in series.shape) * max(1, int(page.bitspersample)) / 8
    limit = float(file_size) * ratio
    if stored > limit:
        how = "uncompressed" if ratio == 1 else f"{getattr(compression, 'name', compression)}-compressed"
        raise ValueError(f"header declares shape {tuple(series.shape)} of {series.dtype} ({stored:.3g} bytes of "
                         f"samples), more than the {file_size} byte {how} file can hold (at most {limit:.3g}); "
                         "the file is truncated or its header is corrupt")


def _read_sidecar_spacing(sidecar: Path) -> tuple[float, ...]:
    try:
        spacing = json.loads(sidecar.read_text(encoding="utf-8"))["spacing"]
        values = tuple(float(s) for s in spacing)
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ValueError(f'sidecar {sidecar.name} must hold {{"spacing": [z, y, x]}} ({detail})') from None
    if not all(v > 0 for v in values):
        raise ValueError(f"sidecar {sidecar.name} has non-positive spacing {values}")
    return values
