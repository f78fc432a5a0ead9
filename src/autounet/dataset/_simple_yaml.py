"""A reader for the small YAML subset that nnDetection's ``dataset.yaml`` files use, without PyYAML.

Supported: block mappings nested by indentation, block lists of scalars (``- item``), scalars (single- or
double-quoted strings, integers, floats, ``true``/``false`` in any case, ``null``/``~``/empty), JSON-style
flow collections on one line (``{"0": "CT"}``, ``[1, 2]``) and ``#`` comments. Anchors, tags, multi-line
strings and documents are rejected with a :class:`DatasetError` naming the file and line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from autounet.errors import DatasetError

__all__ = ["parse_simple_yaml"]

_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$")
_UNSUPPORTED = ("&", "*", "!", "|", ">", "---", "...", "%")
# nnDetection's files nest two levels; deeper is not such a file (and recursion has a limit).
_MAX_DEPTH = 32


def _strip_comment(line: str) -> str:
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


def _scalar(text: str, path: Path, number: int) -> Any:
    text = text.strip()
    if text in ("", "~") or text.lower() == "null":
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text[0] in "{[":
        return _json_value(text, path, number, "flow collection", "write it as a block mapping")
    if text[0] in "'\"":
        if len(text) < 2 or text[-1] != text[0]:
            raise DatasetError(f"line {number}: unterminated string {text}", path)
        inner = text[1:-1]
        return inner.replace("''", "'") if text[0] == "'" else _json_value(text, path, number, "string",
                                                                               "check its escapes")
    if text.startswith(_UNSUPPORTED):
        raise DatasetError(f"line {number}: YAML feature in {text!r} is not supported here", path)
    if _INT.match(text):
        try:
            return int(text)
        except ValueError:  # Python's limit on the digits of an integer
            raise DatasetError(f"line {number}: integer of {len(text)} characters; no count or index has that "
                               "many digits", path) from None
    return float(text) if _FLOAT.match(text) else text


def _json_value(text: str, path: Path, number: int, what: str, hint: str) -> Any:
    """``text`` parsed as JSON (flow collections and double-quoted strings are JSON too), with every way that can
    fail (bad escapes, integers of thousands of digits, deep nesting) one :class:`DatasetError`."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError, as is Python's int digit limit
        shown = text if len(text) <= 60 else f"{text[:57]}..."
        raise DatasetError(f"line {number}: {what} {shown!r} is not readable; {hint}", path) from None


def _split_key(content: str, path: Path, number: int) -> tuple[str, str]:
    if content[0] in "'\"":
        end = content.find(content[0], 1)
        rest = content[end + 1:].lstrip() if end > 0 else ""
        if not rest.startswith(":"):
            raise DatasetError(f"line {number}: expected 'key: value', got {content!r}", path)
        return content[1:end], rest[1:]
    if ": " in content:
        key, rest = content.split(": ", 1)
        return key.strip(), rest
    if content.endswith(":"):
        return content[:-1].strip(), ""
    raise DatasetError(f"line {number}: expected 'key: value', got {content!r}", path)


def parse_simple_yaml(text: str, path: Path) -> dict[str, Any]:
    """Parse the YAML subset described in the module docstring into a dict.

    Args:
        text: The file's content.
        path: The file, for error messages.

    Raises:
        DatasetError: Unsupported syntax, bad indentation or a repeated key, naming the line.
    """
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        content = _strip_comment(raw).strip()
        indent = len(raw) - len(raw.lstrip())
        if content and "\t" in raw[:indent]:
            raise DatasetError(f"line {number}: tabs are not allowed for indentation", path)
        if content:
            lines.append((number, indent, content))
    value, position = _block(lines, 0, 0, path, 0)
    if position != len(lines):
        raise DatasetError(f"line {lines[position][0]}: unexpected indentation", path)
    if not isinstance(value, dict):
        raise DatasetError("the file must hold a mapping of keys to values", path)
    return value


def _block(lines: list[tuple[int, int, str]], position: int, indent: int, path: Path,
           depth: int) -> tuple[Any, int]:
    if depth > _MAX_DEPTH:
        raise DatasetError(f"line {lines[position][0]}: nested more than {_MAX_DEPTH} levels deep", path)
    if position >= len(lines):
        return {}, position
    if lines[position][2].startswith("- ") or lines[position][2] == "-":
        items: list[Any] = []
        while position < len(lines) and lines[position][1] == indent and lines[position][2].startswith("-"):
            number, _, content = lines[position]
            items.append(_scalar(content[1:], path, number))
            position += 1
        return items, position
    mapping: dict[str, Any] = {}
    while position < len(lines) and lines[position][1] == indent:
        number, _, content = lines[position]
        key, rest = _split_key(content, path, number)
        if key in mapping:
            raise DatasetError(f"line {number}: key {key!r} appears twice", path)
        position += 1
        if rest.strip():
            mapping[key] = _scalar(rest, path, number)
        elif position < len(lines) and lines[position][1] > indent:
            mapping[key], position = _block(lines, position, lines[position][1], path, depth + 1)
        elif position < len(lines) and lines[position][1] == indent and lines[position][2].startswith("-"):
            # A list may sit at the key's indent.
            mapping[key], position = _block(lines, position, indent, path, depth + 1)
        else:
            mapping[key] = None
    if position < len(lines) and lines[position][1] > indent:
        raise DatasetError(f"line {lines[position][0]}: unexpected indentation", path)
    return mapping, position
