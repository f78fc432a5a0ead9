"""NRRD (.nrrd, .nhdr) and MetaImage (.mha, .mhd) through SimpleITK, which reads and writes both natively."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813 - the package's conventional alias

from autounet.io.geometry import ImageGeometry

__all__ = ["ItkFormat"]

_IMAGE_IO = {"nrrd": "NrrdImageIO", "nhdr": "NrrdImageIO", "mha": "MetaImageIO", "mhd": "MetaImageIO"}


class ItkFormat:
    """Handler for the ITK-native formats; geometry is in ITK's LPS world frame."""

    name = "itk"
    endings = (".nrrd", ".nhdr", ".mha", ".mhd")

    def read(self, path: Path) -> tuple[np.ndarray, ImageGeometry]:
        """Read a 2D or 3D scalar image as ``(1, *spatial)``."""
        # The ImageIO is named because ITK's automatic choice goes by the ending in lower case only.
        reader = sitk.ImageFileReader()
        reader.SetImageIO(_IMAGE_IO[path.name.lower().rsplit(".", 1)[-1]])
        reader.SetFileName(str(path))
        image = reader.Execute()
        ndim = image.GetDimension()
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(f"vector image with {image.GetNumberOfComponentsPerPixel()} components per "
                             "voxel; store one channel per file")
        if ndim == 4:
            raise ValueError(f"4D image of size {image.GetSize()} where a 3D image was expected; store one "
                             "channel per file (_0000, _0001, ...)")
        if ndim not in (2, 3):
            raise ValueError(f"unsupported dimensionality {ndim}")
        itk_direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(ndim, ndim)
        # ITK index axis k is array axis ndim - 1 - k.
        geometry = ImageGeometry(
            spacing=tuple(float(s) for s in reversed(image.GetSpacing())),
            origin=tuple(float(v) for v in image.GetOrigin()),
            direction=tuple(tuple(float(v) for v in row) for row in itk_direction[:, ::-1]),
            world_frame="LPS",
        )
        return sitk.GetArrayFromImage(image)[None], geometry

    def write(self, array: np.ndarray, geometry: ImageGeometry, path: Path) -> None:
        """Write one channel ``(*spatial)`` (or ``(1, *spatial)``) with the given geometry."""
        if array.ndim == geometry.ndim + 1:
            if array.shape[0] != 1:
                raise ValueError("NRRD/MetaImage output holds one channel per file")
            array = array[0]
        if array.ndim != geometry.ndim:
            raise ValueError(f"array of shape {array.shape} does not match {geometry.ndim}D geometry")
        # ITK world coordinates are LPS; without this a geometry read from NIfTI (RAS) would be stored
        # mirrored in x and y, silently.
        geometry = geometry.in_frame("LPS")
        image = sitk.GetImageFromArray(np.ascontiguousarray(array))
        image.SetSpacing(tuple(reversed(geometry.spacing)))
        image.SetOrigin(geometry.origin)
        image.SetDirection(tuple(float(v) for v in geometry.direction_matrix()[:, ::-1].ravel()))
        sitk.WriteImage(image, str(path), useCompression=True)
