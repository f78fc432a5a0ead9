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
            raise ValueError("degenerate affine (zero voxel size or non-finite values) in the header")
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


def _load(path: Path) -> nib.Nifti1Image:
    if path.name.endswith((".nii", ".nii.gz")):
        return nib.load(str(path))
    # Given "x.Nii", nibabel opens "x.nii" (it rebuilds the name from the lower-case ending), so files
    # with such endings are read from memory; they are rare.
    block = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        block = gzip.decompress(block)
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
