"""Dataset fingerprint: per-case spacings and shapes, per-channel foreground intensity statistics."""

from __future__ import annotations

from autounet.fingerprint.bbox import BoundingBox, bbox_slices, mask_bbox, nonzero_mask
from autounet.fingerprint.extract import (
    FINGERPRINT_FILENAME,
    ensure_fingerprint,
    extract_fingerprint,
    load_fingerprint,
    save_fingerprint,
)
from autounet.fingerprint.model import ChannelIntensityStats, Fingerprint

__all__ = [
    "FINGERPRINT_FILENAME",
    "BoundingBox",
    "ChannelIntensityStats",
    "Fingerprint",
    "bbox_slices",
    "ensure_fingerprint",
    "extract_fingerprint",
    "load_fingerprint",
    "mask_bbox",
    "nonzero_mask",
    "save_fingerprint",
]
