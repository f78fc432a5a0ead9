"""Image input/output with exact geometry, JSON helpers and typed-dataclass serialisation."""

from __future__ import annotations

from autounet.io.geometry import ImageGeometry
from autounet.io.images import (
    SUPPORTED_ENDINGS,
    format_for,
    read_image,
    read_segmentation,
    split_ending,
    write_image,
    write_segmentation,
)
from autounet.io.jsonio import atomic_write, read_json, write_json
from autounet.io.serialization import from_dict, load_dataclass, save_dataclass, to_dict

__all__ = [
    "SUPPORTED_ENDINGS",
    "ImageGeometry",
    "atomic_write",
    "format_for",
    "from_dict",
    "load_dataclass",
    "read_image",
    "read_json",
    "read_segmentation",
    "save_dataclass",
    "split_ending",
    "to_dict",
    "write_image",
    "write_json",
    "write_segmentation",
]
