"""The one statement of axis conventions, referred to by every module that handles arrays.

Axis order: image arrays are ``(C, Z, Y, X)`` for 3D data and ``(C, Y, X)`` for 2D data; segmentation
arrays drop the channel axis. Every per-axis tuple (spacing, shape, patch size) follows the same order as
the spatial array axes. Spacings are in millimetres (or the unit of the file; 1.0 where the format has
none). 2D data is marked by ``ndim == 2``; no sentinel spacing stands in for a missing axis.
"""

from __future__ import annotations

__all__: list[str] = []
