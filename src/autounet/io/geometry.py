"""Image geometry: where each voxel lies in the world, kept exactly enough to write results back.

Conventions (see :mod:`autounet.typing`): ``spacing`` follows the array's spatial axes ``(Z, Y, X)`` or
``(Y, X)``. ``direction[r][j]`` is world component ``r`` of the unit vector of array axis ``j``, so the
world position of array index ``i`` is ``origin + direction @ (spacing * i)``. World components are in the
format's own frame: ``"LPS"`` for ITK formats (NRRD, MetaImage), ``"RAS"`` for NIfTI, ``"pixel"`` for
natural images and TIFF. Writers convert between RAS and LPS (:meth:`ImageGeometry.in_frame`, exact), so a
segmentation of a NIfTI image may be stored as NRRD and vice versa.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

__all__ = ["ImageGeometry", "WorldFrame", "describe_dimensionality", "spatial_dimensionality"]

WorldFrame = Literal["LPS", "RAS", "pixel"]


def spatial_dimensionality(shape: tuple[int, ...] | list[int]) -> int:
    """Whether an image of this spatial shape is a 2D or a 3D image, as nnU-Net decides it.

    A ``(Y, X)`` array is 2D, and so is a single slice ``(1, Y, X)``: a 2D NIfTI file (or a 3D file with one
    slice) is read as one, and nnU-Net stores 2D data that way too. Everything else with three axes is 3D.

    Args:
        shape: Spatial shape ``(Z, Y, X)`` or ``(Y, X)``, without the channel axis.

    Returns:
        2 or 3.
    """
    return 2 if len(shape) < 3 or int(shape[0]) == 1 else 3


def describe_dimensionality(shape: tuple[int, ...] | list[int]) -> str:
    """``"3D"``, ``"2D"`` or ``"2D (a single slice stored as 3D)"``: the dimensionality of
    :func:`spatial_dimensionality`, telling apart the two ways a 2D image can be stored."""
    dims = spatial_dimensionality(shape)
    return "2D (a single slice stored as 3D)" if dims == 2 and len(shape) == 3 else f"{dims}D"


@dataclass(frozen=True)
class ImageGeometry:
    """Spacing, origin and orientation of an image, plus what its format needs for an exact rewrite.

    Attributes:
        spacing: Voxel size per spatial array axis, in mm (1.0 where the format has no unit).
        origin: World position of the centre of voxel ``(0, ..., 0)``, in the world frame's axis order.
        direction: Row-major ``ndim x ndim`` matrix; column ``j`` is the world direction of array axis ``j``.
        world_frame: Which world frame origin and direction are expressed in.
        nifti_header_b64: For NIfTI files, the original header (base64), so that a segmentation written
            for this image repeats its qform, sform, codes and units bit for bit.
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[tuple[float, ...], ...]
    world_frame: WorldFrame = "pixel"
    nifti_header_b64: str | None = None

    def __post_init__(self) -> None:
        n = len(self.spacing)
        if n not in (2, 3):
            raise ValueError(f"geometry must be 2D or 3D, got {n} spacing values")
        if len(self.origin) != n or len(self.direction) != n or any(len(r) != n for r in self.direction):
            raise ValueError("spacing, origin and direction must have the same dimensionality")
        if not all(math.isfinite(s) and s > 0 for s in self.spacing):
            raise ValueError(f"voxel spacing must be positive and finite, got {self.spacing}; fix the header's "
                             "spacing (NIfTI pixdim/affine, NRRD/MetaImage spacing) before using the file")

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.spacing)

    @classmethod
    def default(cls, ndim: int, spacing: tuple[float, ...] | None = None) -> ImageGeometry:
        """Identity orientation at the origin, for data without world coordinates (natural images)."""
        identity = tuple(tuple(1.0 if r == c else 0.0 for c in range(ndim)) for r in range(ndim))
        return cls(spacing=tuple(float(s) for s in (spacing or (1.0,) * ndim)), origin=(0.0,) * ndim,
                   direction=identity, world_frame="pixel")

    def direction_matrix(self) -> np.ndarray:
        """Direction as a float64 ``(ndim, ndim)`` array."""
        return np.asarray(self.direction, dtype=np.float64)

    def index_to_world(self) -> np.ndarray:
        """Homogeneous ``(ndim+1, ndim+1)`` matrix mapping array indices to world coordinates."""
        matrix = np.eye(self.ndim + 1)
        matrix[: self.ndim, : self.ndim] = self.direction_matrix() * np.asarray(self.spacing)[None, :]
        matrix[: self.ndim, self.ndim] = self.origin
        return matrix

    def mismatch(self, other: ImageGeometry, rtol: float = 1e-4, atol: float = 1e-3) -> str | None:
        """Describe how ``other`` differs from this geometry beyond tolerance, or ``None`` if it does not.

        Header bytes and world frame are not compared: two files of one case may come from different
        writers yet describe the same voxels.
        """
        if self.ndim != other.ndim:
            return f"dimensionality {other.ndim} vs {self.ndim}"
        if not np.allclose(self.spacing, other.spacing, rtol=rtol, atol=atol):
            return f"spacing {_fmt(other.spacing)} vs {_fmt(self.spacing)}"
        if not np.allclose(self.origin, other.origin, rtol=rtol, atol=atol):
            return f"origin {_fmt(other.origin)} vs {_fmt(self.origin)}"
        if not np.allclose(self.direction_matrix(), other.direction_matrix(), atol=atol):
            return "direction differs"
        return None

    def in_frame(self, frame: WorldFrame) -> ImageGeometry:
        """The same geometry expressed in another world frame.

        RAS and LPS differ by the sign of the first two world components, so the conversion is exact.
        Geometry in or to the ``"pixel"`` frame has no anatomical orientation and is returned unchanged.
        The NIfTI header is dropped on conversion: a writer for the other frame cannot use it.

        Args:
            frame: The world frame wanted.

        Returns:
            This geometry if nothing changes, else a converted copy.
        """
        if frame == self.world_frame or "pixel" in (frame, self.world_frame):
            return self
        flip = np.ones(self.ndim)
        flip[: min(2, self.ndim)] = -1.0
        # Adding 0.0 turns a flipped zero (-0.0) back into +0.0, so headers do not show "-0".
        origin = tuple(float(0.0 + f * v) for f, v in zip(flip, self.origin, strict=True))
        direction = tuple(tuple(float(0.0 + f * v) for v in row)
                          for f, row in zip(flip, self.direction, strict=True))
        return ImageGeometry(spacing=self.spacing, origin=origin, direction=direction, world_frame=frame)

    def with_spacing(self, spacing: tuple[float, ...]) -> ImageGeometry:
        """A copy with another spacing and no header bytes (used for resampled data)."""
        return ImageGeometry(spacing=tuple(float(s) for s in spacing), origin=self.origin,
                             direction=self.direction, world_frame=self.world_frame)


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
