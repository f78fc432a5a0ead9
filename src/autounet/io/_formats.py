"""The format-handler interface and the registry of file endings."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from autounet.io.geometry import ImageGeometry

__all__ = ["ImageFormat", "matching_ending"]


class ImageFormat(Protocol):
    """Reads and writes one family of file formats.

    ``read`` returns an array of shape ``(C, *spatial)`` in ``(Z, Y, X)`` / ``(Y, X)`` order with the file's
    own dtype, and the geometry. ``write`` takes ``(*spatial)`` (one channel) or ``(C, *spatial)`` where the
    format supports several channels per file. A format whose stored values may be indices rather than
    intensities (palette PNG) also has ``read_intensities``, which images are read with (label maps with
    ``read``).
    """

    name: str
    endings: tuple[str, ...]

    def read(self, path: Path) -> tuple[np.ndarray, ImageGeometry]:
        """Read one file; raise any exception on failure (the caller turns it into ``ImageIOError``)."""
        ...

    def write(self, array: np.ndarray, geometry: ImageGeometry, path: Path) -> None:
        """Write ``array`` with ``geometry`` to ``path`` (the caller makes the write atomic)."""
        ...


def matching_ending(filename: str, endings: tuple[str, ...]) -> str | None:
    """Return the longest ending in ``endings`` that ``filename`` ends with (case-insensitive)."""
    lower = filename.lower()
    hits = [e for e in endings if lower.endswith(e)]
    return max(hits, key=len) if hits else None
