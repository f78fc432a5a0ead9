"""Per-case properties of preprocessed data: what is needed to undo preprocessing and to sample patches.

Written as ``<case>.json`` beside the arrays, last, so that its presence marks a finished case. The class
locations (up to 10,000 voxel coordinates per class) would make a generic indented JSON file huge and slow
to write and read; they are written one class per line, compactly, and read back without per-number
validation in Python (checked as arrays instead).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from autounet.errors import ConfigError
from autounet.io.geometry import ImageGeometry
from autounet.io.jsonio import atomic_write, read_json
from autounet.io.serialization import from_dict, to_dict

__all__ = [
    "CaseProperties",
    "coordinate_tuples",
    "load_case_properties",
    "properties_path",
    "save_case_properties",
]


@dataclass(frozen=True)
class CaseProperties:
    """Geometry bookkeeping and foreground locations of one preprocessed case.

    Shapes, boxes and spacings are in the plan's axis order (after ``Plans.axis_order``); only
    ``original_geometry`` is in the raw file's axis order.

    Attributes:
        schema_version: Version of this file layout.
        case_id: The case's id in the raw dataset.
        original_geometry: Geometry of the raw image (to write predictions back).
        shape_before_crop: Spatial shape before cropping.
        bbox_used_for_cropping: Half-open ``(start, stop)`` per axis of the non-zero crop.
        shape_after_crop: Spatial shape after cropping, before resampling.
        spacing_after_resampling: Spacing of the stored arrays, mm.
        shape_after_resampling: Spatial shape of the stored arrays.
        class_locations: Foreground label -> sampled voxel coordinates ``(axis0, axis1[, axis2])`` in the
            stored arrays, for foreground oversampling; empty for a label absent from the case.
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int
    case_id: str
    original_geometry: ImageGeometry
    shape_before_crop: tuple[int, ...]
    bbox_used_for_cropping: tuple[tuple[int, int], ...]
    shape_after_crop: tuple[int, ...]
    spacing_after_resampling: tuple[float, ...]
    shape_after_resampling: tuple[int, ...]
    class_locations: dict[int, tuple[tuple[int, ...], ...]] = field(default_factory=dict)

    def locations(self, label: int) -> np.ndarray:
        """Coordinates of ``label`` as an int64 ``(N, ndim)`` array (``(0, ndim)`` when absent)."""
        coords = self.class_locations.get(label, ())
        return np.asarray(coords, dtype=np.int64).reshape(len(coords), len(self.shape_after_resampling))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    # Tens of thousands of small tuples trigger the cyclic garbage collector, whose full passes walk every
    # object of the process (torch's included) and cost ~100 ms each; tuples of ints hold no cycles.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def coordinate_tuples(coords: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """``(N, ndim)`` integer array -> tuple of coordinate tuples (the ``class_locations`` value type)."""
    with _gc_paused():
        return tuple(map(tuple, coords.tolist()))


def save_case_properties(path: str | os.PathLike, properties: CaseProperties) -> None:
    """Write properties as JSON, atomically: indented fields, then one compact line per class."""
    fields = to_dict(dataclasses.replace(properties, class_locations={}))
    del fields["class_locations"]
    head = json.dumps(fields, indent=2, allow_nan=False)
    with _gc_paused():
        lines = [f'    "{label}": {json.dumps(coords, separators=(",", ":"))}'
                 for label, coords in sorted(properties.class_locations.items())]
    body = "{\n" + ",\n".join(lines) + "\n  }" if lines else "{}"
    with atomic_write(path) as handle:
        handle.write(f'{head[:-2]},\n  "class_locations": {body}\n}}\n')


def load_case_properties(path: str | os.PathLike) -> CaseProperties:
    """Read and validate properties written by :func:`save_case_properties`.

    Raises:
        ConfigError: Missing or malformed file; the message names the file and the field.
    """
    with _gc_paused():
        data: Any = read_json(path)
    if not isinstance(data, dict):
        raise ConfigError("case properties must be a JSON object", path)
    raw_locations = data.pop("class_locations", {})
    properties = from_dict(CaseProperties, data, source=path)
    if not isinstance(raw_locations, dict):
        raise ConfigError("field 'CaseProperties.class_locations': expected an object", path)
    shape = properties.shape_after_resampling
    locations = {}
    for key, coords in raw_locations.items():
        where = f"CaseProperties.class_locations.{key}"
        try:
            label = int(key)
            array = np.asarray(coords, dtype=np.int64).reshape(-1, len(shape))
        except (TypeError, ValueError):
            raise ConfigError(f"field '{where}': expected a label and a list of {len(shape)}-value "
                              "integer coordinates", path) from None
        if array.size and (array.min() < 0 or np.any(array.max(axis=0) >= np.asarray(shape))):
            raise ConfigError(f"field '{where}': coordinates outside the shape {shape}", path)
        locations[label] = coordinate_tuples(array)
    return dataclasses.replace(properties, class_locations=locations)


def properties_path(folder: Path, case_id: str) -> Path:
    """Where the properties (and "case finished" marker) of a case live."""
    return folder / f"{case_id}.json"
