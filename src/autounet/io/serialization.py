"""Typed dataclasses <-> JSON, with validation on load.

Plans, fingerprints, case properties and every other configuration are frozen dataclasses carrying a
``schema_version``. Loading checks every field against its type hint and rejects unknown keys, missing
keys and files from a newer schema, naming the file and the field, so a hand-edited JSON fails loudly
and early instead of deep inside training.

A field declared with ``metadata=OMIT_WHEN_DEFAULT`` is left out of :func:`to_dict` while it holds its
default: an optional addition to a file layout then leaves the files that do not use it byte-identical,
and older readers (which reject unknown keys) still read them.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from autounet.errors import ConfigError
from autounet.io.jsonio import read_json, write_json

__all__ = ["OMIT_WHEN_DEFAULT", "from_dict", "load_dataclass", "save_dataclass", "to_dict"]

OMIT_WHEN_DEFAULT: dict[str, bool] = {"omit_when_default": True}

T = TypeVar("T")
# A bare container annotation (``extra: dict``) means "of anything".
_BARE_CONTAINERS: dict[type, Any] = {list: list[Any], tuple: tuple[Any, ...], dict: dict[Any, Any]}


def to_dict(obj: Any) -> Any:
    """Convert a dataclass (recursively, with tuples, lists and dicts inside) to JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if not _omitted(obj, f)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if hasattr(obj, "tolist") and callable(obj.tolist):
        # NumPy scalars and arrays; ``item()`` would fail on arrays of more than one element.
        return obj.tolist()
    return obj


def _omitted(obj: Any, field: dataclasses.Field) -> bool:
    if not field.metadata.get("omit_when_default"):
        return False
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    return getattr(obj, field.name) == default


def from_dict(cls: type[T], data: Any, source: str | os.PathLike | None = None, where: str = "") -> T:
    """Build a dataclass of type ``cls`` from JSON data, validating every field.

    Args:
        cls: The dataclass type.
        data: Parsed JSON.
        source: File the data came from, for error messages.
        where: Dotted field path prefix, for error messages.

    Raises:
        ConfigError: A field is missing, unknown, of the wrong type, or the schema version is newer than
            this autounet understands.
    """
    return _convert(cls, data, source, where or cls.__name__)


def save_dataclass(path: str | os.PathLike, obj: Any) -> None:
    """Write a dataclass as indented JSON, atomically."""
    write_json(path, to_dict(obj))


def load_dataclass(cls: type[T], path: str | os.PathLike) -> T:
    """Read and validate a dataclass JSON file written by :func:`save_dataclass`."""
    return from_dict(cls, read_json(path), source=path)


def _fail(source: str | os.PathLike | None, where: str, problem: str) -> ConfigError:
    return ConfigError(f"field '{where}': {problem}", Path(source) if source is not None else None)


def _convert(tp: Any, value: Any, source: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, source, where)
    if origin is Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, source, where)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise _fail(source, where, f"does not match any allowed type ({'; '.join(errors)})")
    if isinstance(tp, type) and tp in _BARE_CONTAINERS:
        return _convert(_BARE_CONTAINERS[tp], value, source, where)
    if origin is Literal:
        # Compare types too: 1 == True == 1.0 in Python, but a JSON true is no Literal[1].
        if not any(value == a and type(value) is type(a) for a in args):
            raise _fail(source, where, f"must be one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _fail(source, where, f"expected a list, got {type(value).__name__}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise _fail(source, where, f"expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, source, f"{where}[{i}]")
                         for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item_type = args[0] if args else Any
        items = [_convert(item_type, v, source, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise _fail(source, where, f"expected an object, got {type(value).__name__}")
        key_type, value_type = args if args else (Any, Any)
        out = {}
        for k, v in value.items():
            key = _convert_key(key_type, k, source, where)
            out[key] = _convert(value_type, v, source, f"{where}.{k}")
        return out
    return _convert_scalar(tp, value, source, where)


def _convert_key(key_type: Any, key: str, source: Any, where: str) -> Any:
    if key_type is int:
        try:
            return int(key)
        except ValueError:
            raise _fail(source, where, f"key {key!r} must be an integer") from None
    return key


def _convert_scalar(tp: Any, value: Any, source: Any, where: str) -> Any:
    if tp is type(None):
        if value is not None:
            raise _fail(source, where, "must be null")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(source, where, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(source, where, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(source, where, f"expected a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise _fail(source, where, "a number beyond a float's range") from None
    if tp is str:
        if not isinstance(value, str):
            raise _fail(source, where, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported field type {tp!r} at {where}")


def _convert_dataclass(cls: Any, value: Any, source: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise _fail(source, where, f"expected an object, got {type(value).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    # The version comes first: a file from a newer autounet usually has new keys too, and "upgrade" is
    # the useful message then, not "unknown key".
    supported = getattr(cls, "SCHEMA_VERSION", None)
    if supported is not None and "schema_version" in fields:
        version = value.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise _fail(source, f"{where}.schema_version", "missing or not an integer")
        if version > supported:
            raise _fail(source, f"{where}.schema_version",
                        f"version {version} is newer than this autounet supports ({supported}); "
                        "upgrade autounet")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise _fail(source, f"{where}.{unknown[0]}",
                    "unknown key (misspelt, or written by a newer autounet?)")
    kwargs = {}
    for name, field in fields.items():
        if name not in value:
            has_default = (field.default is not dataclasses.MISSING
                           or field.default_factory is not dataclasses.MISSING)
            if has_default:
                continue
            raise _fail(source, f"{where}.{name}", "missing")
        kwargs[name] = _convert(hints[name], value[name], source, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise _fail(source, where, str(exc)) from None
