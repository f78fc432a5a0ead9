"""Reading nnU-Net v2's ``dataset_fingerprint.json`` into a :class:`Fingerprint`.

nnU-Net stores per-case ``spacings`` and ``shapes_after_crop``, the median relative size after cropping,
and ``foreground_intensity_properties_per_channel`` keyed by channel index as a string. What it lacks is
filled in: case ids become ``case_000``, ``case_001``, ...; shapes before cropping repeat the shapes after
cropping; every case's relative size is the median. 2D data carry nnU-Net's sentinel (first spacing 999,
first shape 1), which is dropped to give ``ndim == 2``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from autounet.errors import ConfigError
from autounet.fingerprint.model import ChannelIntensityStats, Fingerprint

__all__ = ["fingerprint_from_nnunet", "is_nnunet_fingerprint"]

_NNUNET_KEYS = frozenset({"spacings", "shapes_after_crop", "foreground_intensity_properties_per_channel"})
_STAT_KEYS = ("mean", "median", "std", "min", "max", "percentile_00_5", "percentile_99_5")
_SENTINEL_SPACING = 999.0
# nnU-Net draws 1e8 foreground voxels in total, split evenly over the cases.
_NNUNET_TOTAL_SAMPLES = 10**8


def is_nnunet_fingerprint(data: Any) -> bool:
    """Whether parsed JSON looks like an nnU-Net v2 fingerprint (by its keys, possibly incomplete)."""
    return isinstance(data, dict) and bool(_NNUNET_KEYS & set(data)) and "schema_version" not in data


def fingerprint_from_nnunet(data: dict[str, Any], path: Path) -> Fingerprint:
    """Convert a parsed nnU-Net v2 fingerprint.

    Args:
        data: The parsed JSON object.
        path: The file it came from, for error messages.

    Raises:
        ConfigError: A key is missing or malformed, or the per-case lists disagree.
    """
    missing = sorted(_NNUNET_KEYS - set(data))
    if missing:
        raise ConfigError(f"nnU-Net fingerprint lacks the key(s) {', '.join(missing)}", path)
    spacings = [_vector(v, float, path, f"spacings[{i}]") for i, v in enumerate(_list(data, "spacings", path))]
    shapes = [_vector(v, int, path, f"shapes_after_crop[{i}]")
              for i, v in enumerate(_list(data, "shapes_after_crop", path))]
    if not spacings or len(spacings) != len(shapes):
        raise ConfigError(f"'spacings' ({len(spacings)}) and 'shapes_after_crop' ({len(shapes)}) need one "
                          "entry per case", path)
    if any(len(s) != len(spacings[0]) for s in spacings + shapes) or len(spacings[0]) not in (3, 2):
        raise ConfigError("every spacing and shape needs the same number (2 or 3) of values", path)
    spacings, shapes = _drop_2d_sentinel(spacings, shapes, path)
    relative = _number(data.get("median_relative_size_after_cropping", 1.0), path,
                       "median_relative_size_after_cropping")
    stats = _channel_stats(data["foreground_intensity_properties_per_channel"], path)
    try:
        return Fingerprint(
            schema_version=Fingerprint.SCHEMA_VERSION,
            ndim=len(spacings[0]),
            case_ids=tuple(f"case_{i:03d}" for i in range(len(spacings))),
            spacings=tuple(tuple(s) for s in spacings),
            shapes_before_crop=tuple(tuple(s) for s in shapes),
            shapes_after_crop=tuple(tuple(s) for s in shapes),
            relative_sizes_after_crop=(relative,) * len(spacings),
            foreground_intensity=stats,
            num_foreground_samples_per_case=_NNUNET_TOTAL_SAMPLES // len(spacings),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"not a usable nnU-Net fingerprint: {exc}", path) from None


def _drop_2d_sentinel(spacings: list[list[Any]], shapes: list[list[Any]],
                      path: Path) -> tuple[list[list[Any]], list[list[Any]]]:
    flagged = [len(sp) == 3 and sp[0] == _SENTINEL_SPACING and sh[0] == 1
               for sp, sh in zip(spacings, shapes, strict=True)]
    if not any(flagged):
        return spacings, shapes
    if not all(flagged):
        raise ConfigError("some cases carry nnU-Net's 2D marker (spacing 999, one slice) and others do not",
                          path)
    return [sp[1:] for sp in spacings], [sh[1:] for sh in shapes]


def _channel_stats(value: Any, path: Path) -> tuple[ChannelIntensityStats, ...]:
    field = "foreground_intensity_properties_per_channel"
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"field '{field}' must be a non-empty object keyed by channel index", path)
    expected = {str(i) for i in range(len(value))}
    if set(value) != expected:
        raise ConfigError(f"field '{field}' must have keys {sorted(expected)}, got {sorted(value)}", path)
    stats = []
    for channel in range(len(value)):
        entry = value[str(channel)]
        where = f"{field}.{channel}"
        if not isinstance(entry, dict):
            raise ConfigError(f"field '{where}' must be an object", path)
        missing = [k for k in _STAT_KEYS if k not in entry]
        if missing:
            raise ConfigError(f"field '{where}' lacks {', '.join(missing)}", path)
        stats.append(ChannelIntensityStats(**{k: _number(entry[k], path, f"{where}.{k}") for k in _STAT_KEYS}))
    return tuple(stats)


def _list(data: dict[str, Any], key: str, path: Path) -> list[Any]:
    value = data[key]
    if not isinstance(value, list):
        raise ConfigError(f"field '{key}' must be a list", path)
    return value


def _vector(value: Any, kind: type, path: Path, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"field '{where}' must be a non-empty list of numbers", path)
    out = []
    for item in value:
        number = _number(item, path, where)
        if kind is int:
            if number != int(number) or number < 1:
                raise ConfigError(f"field '{where}' must hold positive integers, got {item!r}", path)
            out.append(int(number))
        else:
            if number <= 0:
                raise ConfigError(f"field '{where}' must hold positive numbers, got {item!r}", path)
            out.append(number)
    return out


def _number(value: Any, path: Path, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"field '{where}' must be a finite number, got {value!r}", path)
    return float(value)
