"""A declared shape for parsed JSON written by other programs, checked once before any field is used.

autounet's own files are typed dataclasses (:mod:`autounet.io.serialization`). Files of other tools (nnU-Net's
``plans.json``) are plain dicts read by key; checking them against a small declaration right after parsing turns
every missing key or wrong type into one :class:`~autounet.errors.ConfigError` naming the file and the field,
instead of a ``KeyError`` or ``TypeError`` wherever the field is first used.

A declaration is built from: a Python type (``str``, ``bool``, ``dict``, ``list``; ``object`` for anything),
:class:`Number`, :class:`ListOf`, :class:`Fields` (an object with required and optional keys), :class:`MapOf`
(an object whose every value has one shape) and :class:`OneOf` (the first option that fits).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autounet.errors import ConfigError

__all__ = ["Fields", "ListOf", "MapOf", "Number", "OneOf", "Spec", "check_json"]


@dataclass(frozen=True)
class Number:
    """A finite JSON number (never ``true``/``false``, NaN or infinite) within bounds.

    Attributes:
        integer: Whole numbers only.
        minimum: Smallest allowed value (inclusive), or ``None``.
        maximum: Largest allowed value (inclusive), or ``None``.
        positive: Must be > 0.
    """

    integer: bool = False
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False


@dataclass(frozen=True)
class ListOf:
    """A JSON list whose items all have one shape.

    Attributes:
        item: The items' shape.
        min_length: Fewest items allowed.
        max_length: Most items allowed, or ``None``.
    """

    item: Spec
    min_length: int = 0
    max_length: int | None = None


@dataclass(frozen=True)
class Fields:
    """A JSON object with named keys; keys not declared are allowed (and not checked).

    Attributes:
        required: Keys that must be present, with their shapes.
        optional: Keys that may be absent (or ``null``), with their shapes when present.
    """

    required: Mapping[str, Spec] = field(default_factory=dict)
    optional: Mapping[str, Spec] = field(default_factory=dict)


@dataclass(frozen=True)
class MapOf:
    """A JSON object whose every value has one shape (keys are any strings).

    Attributes:
        value: The values' shape.
        min_length: Fewest entries allowed.
    """

    value: Spec
    min_length: int = 0


@dataclass(frozen=True)
class OneOf:
    """Any of several shapes (e.g. one integer or a list of them).

    Attributes:
        options: The allowed shapes, tried in order.
        description: How the error message names the expected value.
    """

    options: tuple[Spec, ...]
    description: str


Spec = type | Number | ListOf | Fields | MapOf | OneOf
"""The shape of one JSON value."""

_TYPE_NAMES = {str: "a string", bool: "true or false", dict: "an object", list: "a list"}


def check_json(value: Any, spec: Spec, source: str | os.PathLike | None, where: str) -> None:
    """Check parsed JSON against a declared shape.

    Args:
        value: The parsed value.
        spec: Its declared shape.
        source: The file it came from, named in the error.
        where: The value's dotted field path, named in the error (e.g. ``configurations.2d``); empty for the
            top level of a file.

    Raises:
        ConfigError: The first field that is missing or does not fit, naming the file and the field path.
    """
    problem = _problem(value, spec, where)
    if problem is not None:
        field_path, text = problem
        raise ConfigError(f"field '{field_path}' {text}", Path(source) if source is not None else None)


def _problem(value: Any, spec: Spec, where: str) -> tuple[str, str] | None:
    """``(field path, what is wrong)`` of the first misfit, or ``None``."""
    if isinstance(spec, type):
        if spec is object or (isinstance(value, spec) and not (spec is not bool and isinstance(value, bool))):
            return None
        return where, f"must be {_TYPE_NAMES.get(spec, spec.__name__)}, got {_shown(value)}"
    if isinstance(spec, Number):
        return _number_problem(value, spec, where)
    if isinstance(spec, ListOf):
        if not isinstance(value, list):
            return where, f"must be a list, got {_shown(value)}"
        if len(value) < spec.min_length or (spec.max_length is not None and len(value) > spec.max_length):
            most = "" if spec.max_length is None else f" and at most {spec.max_length}"
            return where, f"must hold at least {spec.min_length}{most} item(s), got {len(value)}"
        return next((p for i, item in enumerate(value) if (p := _problem(item, spec.item, f"{where}[{i}]"))), None)
    if isinstance(spec, OneOf):
        if any(_problem(value, option, where) is None for option in spec.options):
            return None
        return where, f"must be {spec.description}, got {_shown(value)}"
    if not isinstance(value, dict):
        return where, f"must be an object, got {_shown(value)}"
    if isinstance(spec, MapOf):
        if len(value) < spec.min_length:
            return where, f"must hold at least {spec.min_length} entr{'y' if spec.min_length == 1 else 'ies'}"
        return next((p for key, item in value.items() if (p := _problem(item, spec.value, _join(where, key)))), None)
    for key, item_spec in spec.required.items():
        if key not in value:
            return _join(where, key), "is missing"
        if (problem := _problem(value[key], item_spec, _join(where, key))) is not None:
            return problem
    for key, item_spec in spec.optional.items():
        if value.get(key) is not None and (problem := _problem(value[key], item_spec, _join(where, key))) is not None:
            return problem
    return None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _number_problem(value: Any, spec: Number, where: str) -> tuple[str, str] | None:
    kind = "an integer" if spec.integer else "a finite number"
    # (An integer is never infinite, and ``math.isfinite`` overflows on one beyond a float's range.)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not math.isfinite(value)):
        return where, f"must be {kind}, got {_shown(value)}"
    if spec.integer and value != int(value):
        return where, f"must be {kind}, got {_shown(value)}"
    low = spec.minimum
    if spec.positive and value <= 0:
        return where, f"must be > 0, got {_shown(value)}"
    if low is not None and value < low:
        return where, f"must be >= {low:g}, got {_shown(value)}"
    if spec.maximum is not None and value > spec.maximum:
        return where, f"must be <= {spec.maximum:g}, got {_shown(value)}"
    return None


def _shown(value: Any) -> str:
    """A short rendering of an offending value for the one-line message."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
