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
            stored arrays, for foreground oversampling; empty for a label absent from the case. For a case
            with several label maps, those of the first.
        further_map_class_locations: The same for each further label map of a case with several (one per
            task after the first); empty for every nnU-Net v2 dataset.
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
    further_map_class_locations: tuple[dict[int, tuple[tuple[int, ...], ...]], ...] = ()

    def locations(self, label: int, label_map: int = 0) -> np.ndarray:
        """Coordinates of ``label`` in label map ``label_map`` (0: the first) as an int64 ``(N, ndim)`` array
        (``(0, ndim)`` when absent)."""
        source = self.class_locations if label_map == 0 else self.further_map_class_locations[label_map - 1]
        coords = source.get(label, ())
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
    """Write properties as JSON, atomically: indented fields, then one compact line per class (and, for cases
    with several label maps, per class of every further map)."""
    fields = to_dict(dataclasses.replace(properties, class_locations={}, further_map_class_locations=()))
    del fields["class_locations"], fields["further_map_class_locations"]
    head = json.dumps(fields, indent=2, allow_nan=False)
    parts = [f'  "class_locations": {_locations_text(properties.class_locations, "  ")}']
    if properties.further_map_class_locations:  # absent for one label map: such files stay as they were
        maps = ",\n    ".join(_locations_text(m, "    ") for m in properties.further_map_class_locations)
        parts.append(f'  "further_map_class_locations": [\n    {maps}\n  ]')
    with atomic_write(path) as handle:
        handle.write(head[:-2] + ",\n" + ",\n".join(parts) + "\n}\n")


def _locations_text(locations: dict[int, tuple[tuple[int, ...], ...]], indent: str) -> str:
    with _gc_paused():
        lines = [f'{indent}  "{label}": {json.dumps(coords, separators=(",", ":"))}'
                 for label, coords in sorted(locations.items())]
    return "{\n" + ",\n".join(lines) + f"\n{indent}}}" if lines else "{}"


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
    raw_further = data.pop("further_map_class_locations", [])
    properties = from_dict(CaseProperties, data, source=path)
    if not isinstance(raw_further, list):
        raise ConfigError("field 'CaseProperties.further_map_class_locations': expected a list", path)
    shape = properties.shape_after_resampling
    locations = _parse_locations(raw_locations, shape, "CaseProperties.class_locations", path)
    further = tuple(_parse_locations(raw, shape, f"CaseProperties.further_map_class_locations.{index}", path)
                    for index, raw in enumerate(raw_further))
    return dataclasses.replace(properties, class_locations=locations, further_map_class_locations=further)


def _parse_locations(raw_locations: Any, shape: tuple[int, ...], field_name: str,
                     path: str | os.PathLike) -> dict[int, tuple[tuple[int, ...], ...]]:
    if not isinstance(raw_locations, dict):
        raise ConfigError(f"field '{field_name}': expected an object", path)
    locations = {}
    for key, coords in raw_locations.items():
        where = f"{field_name}.{key}"
        try:
            label = int(key)
            array = np.asarray(coords, dtype=np.int64).reshape(-1, len(shape))
        except (TypeError, ValueError, OverflowError):  # OverflowError: a number beyond int64
            raise ConfigError(f"field '{where}': expected a label and a list of {len(shape)}-value "
                              "integer coordinates", path) from None
        if array.size and (array.min() < 0 or np.any(array.max(axis=0) >= np.asarray(shape))):
            raise ConfigError(f"field '{where}': coordinates outside the shape {shape}", path)
        locations[label] = coordinate_tuples(array)
    return locations


def properties_path(folder: Path, case_id: str) -> Path:
    """Where the properties (and "case finished" marker) of a case live."""
    return folder / f"{case_id}.json"
