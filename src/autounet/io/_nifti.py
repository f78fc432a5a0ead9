"""NIfTI (.nii, .nii.gz) through nibabel.

nibabel rather than SimpleITK for NIfTI because SimpleITK rebuilds the affine from an orthonormalised
direction and rewrites qform/sform, while nibabel keeps the header as stored; with the original header
bytes kept in :class:`ImageGeometry`, a written segmentation repeats the image's affines exactly, oblique
and flipped ones included. Arrays are transposed from NIfTI's ``(i, j, k)`` to ``(k, j, i)`` so that
axis order matches the ITK formats (``Z, Y, X``).
"""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

from autounet.io.geometry import ImageGeometry

__all__ = ["NiftiFormat"]


class NiftiFormat:
    """Handler for NIfTI-1 and NIfTI-2 files."""

    name = "nifti"
    endings = (".nii.gz", ".nii")

    def read(self, path: Path) -> tuple[np.ndarray, ImageGeometry]:
        """Read a 3D NIfTI file as ``(1, Z, Y, X)``; 2D files become one slice, 4D files are refused."""
        image = _load(path)
        data = np.asanyarray(image.dataobj)
        if data.dtype.fields is not None or data.dtype.kind == "c":
            raise ValueError(f"voxel type {data.dtype} ({image.get_data_dtype()}) is not a real scalar; complex "
                             "and RGB NIfTI images cannot be converted exactly")
        while data.ndim > 3 and data.shape[-1] == 1:
            data = data[..., 0]
        if data.ndim > 3:
            raise ValueError(f"4D image of shape {data.shape} where a 3D image was expected; store one "
                             "channel per file (_0000, _0001, ...), e.g. with 'autounet convert msd'")
        if data.ndim == 2:
            data = data[..., None]
        affine = np.asarray(image.affine, dtype=np.float64)
        # NIfTI voxel axis v becomes array axis 2 - v.
        columns = affine[:3, :3][:, ::-1]
        spacing = np.linalg.norm(columns, axis=0)
        if np.any(spacing <= 0) or not np.all(np.isfinite(affine)):
            raise ValueError(f"voxel spacing must be positive and finite, got {tuple(spacing[::-1].tolist())} from a "
                             "degenerate affine (zero voxel size or non-finite values); fix pixdim/qform/sform in "
                             "the header")
        direction = columns / spacing[None, :]
        geometry = ImageGeometry(
            spacing=tuple(float(s) for s in spacing),
            origin=tuple(float(v) for v in affine[:3, 3]),
            direction=tuple(tuple(float(v) for v in row) for row in direction),
            world_frame="RAS",
            nifti_header_b64=base64.b64encode(image.header.binaryblock).decode("ascii"),
        )
        return np.ascontiguousarray(data.transpose(2, 1, 0))[None], geometry

    def write(self, array: np.ndarray, geometry: ImageGeometry, path: Path) -> None:
        """Write one channel ``(Z, Y, X)`` (or ``(1, Z, Y, X)``) with the source header when known."""
        if array.ndim == 4:
            if array.shape[0] != 1:
                raise ValueError("NIfTI files hold one channel each; write channels to separate files")
            array = array[0]
        if array.ndim != 3 or geometry.ndim != 3:
            raise ValueError(f"NIfTI output needs 3D data and geometry, got array {array.shape}")
        data = np.ascontiguousarray(array.transpose(2, 1, 0))
        if geometry.nifti_header_b64 is not None:
            header = _header_from_b64(geometry.nifti_header_b64)
            image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
            # affine=None keeps the header's qform and sform (and their codes) untouched.
            image = image_class(data, None, header=header)
            image.header.set_slope_inter(1.0, 0.0)
            image.header["cal_min"] = 0
            image.header["cal_max"] = 0
        else:
            image = nib.Nifti1Image(data, _affine_from_geometry(geometry))
            image.header.set_qform(image.affine, code=1)
            image.header.set_sform(image.affine, code=1)
        image.set_data_dtype(data.dtype)
        nib.save(image, str(path))


# Deflate cannot compress better than about 1032:1, so a .nii.gz declaring more data than that is lying.
_MAX_DEFLATE_RATIO = 1100


def _check_declared_size(path: Path) -> None:
    """Refuse a header whose dimensions cannot match the file, before anything of that size is allocated."""
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            head = handle.read(540)
    else:
        with open(path, "rb") as handle:
            head = handle.read(540)
    if len(head) < 348:
        raise ValueError(f"file holds {len(head)} bytes, less than a NIfTI header")
    sizeof_hdr = int.from_bytes(head[:4], "little")
    order = "little" if sizeof_hdr in (348, 540) else "big"
    header_class = nib.Nifti2Header if int.from_bytes(head[:4], order) == 540 else nib.Nifti1Header
    header = header_class(binaryblock=head[: 540 if header_class is nib.Nifti2Header else 348], check=False)
    dims = [int(d) for d in header["dim"][1: int(header["dim"][0]) + 1]] if 0 < int(header["dim"][0]) <= 7 else []
    if not dims or any(d <= 0 for d in dims):
        raise ValueError(f"header declares invalid dimensions {header['dim'].tolist()}")
    _check_pixdim(header)
    nbytes = header.get_data_dtype().itemsize * float(np.prod([float(d) for d in dims]))
    limit = path.stat().st_size * (_MAX_DEFLATE_RATIO if path.name.lower().endswith(".gz") else 1)
    if nbytes > limit:
        raise ValueError(f"header declares dimensions {dims} ({nbytes:.3g} bytes of voxels), more than the "
                         f"{path.stat().st_size} byte file can hold; the file is truncated or its header is corrupt")


def _check_pixdim(header: nib.Nifti1Header) -> None:
    """Zero, negative or non-finite voxel sizes, checked on the raw header: nibabel's load replaces them by 1."""
    ndim = min(3, max(1, int(header["dim"][0])))
    pixdim = np.asarray(header["pixdim"][1: ndim + 1], dtype=np.float64)
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim <= 0):
        raise ValueError(f"voxel spacing must be positive and finite, got pixdim {tuple(pixdim.tolist())} in the "
                         "header; set the true voxel size in pixdim (e.g. with nibabel's header.set_zooms)")


def _load(path: Path) -> nib.Nifti1Image:
    _check_declared_size(path)
    if path.name.endswith(".nii"):
        return nib.load(str(path))
    # Compressed files are decompressed whole with the standard library, which checks the gzip CRC and
    # length (nibabel's indexed reading may not); files with a case-varied ending ("x.Nii", which nibabel
    # would reopen as "x.nii") are read from memory too.
    block = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        try:
            block = gzip.decompress(block)
        except (OSError, EOFError) as exc:
            raise ValueError(f"damaged gzip stream ({exc}); the file is corrupt, copy it again") from exc
    sizeof_hdr = int.from_bytes(block[:4], "little")
    is_nifti2 = 540 in (sizeof_hdr, int.from_bytes(block[:4], "big"))
    return (nib.Nifti2Image if is_nifti2 else nib.Nifti1Image).from_bytes(block)


def _header_from_b64(text: str) -> nib.Nifti1Header:
    block = base64.b64decode(text)
    header_class = nib.Nifti2Header if len(block) == 540 else nib.Nifti1Header
    return header_class(binaryblock=block, check=False)


def _affine_from_geometry(geometry: ImageGeometry) -> np.ndarray:
    affine = np.eye(4)
    # NIfTI world coordinates are RAS; geometry read from NRRD/MetaImage is LPS.
    index_to_world = geometry.in_frame("RAS").index_to_world()
    # Array axis j is NIfTI voxel axis 2 - j.
    affine[:3, :3] = index_to_world[:3, :3][:, ::-1]
    affine[:3, 3] = index_to_world[:3, 3]
    return affine
