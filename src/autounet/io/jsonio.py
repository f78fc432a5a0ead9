"""JSON reading and atomic writing.

Every file autounet writes goes to a temporary name in the same folder and is moved into place with
``os.replace``, so a crash or ``kill -9`` leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from autounet.errors import ConfigError

__all__ = ["atomic_write", "nan_to_none", "read_json", "write_json"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; move it onto ``path`` only when the block succeeds.

    Args:
        path: Final destination. Its folder is created if missing.
        mode: ``"w"`` for text or ``"wb"`` for bytes.

    Yields:
        The open temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = _create_temporary(path)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _create_temporary(path: Path) -> tuple[int, str]:
    # Not tempfile.mkstemp: it creates files with mode 0600 whatever the umask, so every file written
    # through here would be unreadable for the rest of a group sharing a data folder. O_EXCL with a
    # random name is just as safe against collisions, and mode 0666 lets the umask decide as for open().
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp_name = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp_name, flags, 0o666), tmp_name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def nan_to_none(value: Any) -> Any:
    """Replace NaN floats (recursively) by ``None``: JSON has no NaN, and a NaN metric means "undefined"."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(v) for v in value]
    return value


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented, key-sorted-as-given JSON, atomically."""
    with atomic_write(path) as handle:
        json.dump(data, handle, indent=2, allow_nan=False)
        handle.write("\n")


# Bounds on JSON from outside (plans, dataset.json, postprocessing, manifests, case properties): the largest
# files autounet writes are case properties of many-label datasets, a few tens of MB; nothing nests deeper than
# a handful of levels. Beyond these a file is refused before it can exhaust memory or the recursion limit.
MAX_JSON_BYTES = 512 * 2**20
MAX_JSON_DEPTH = 64
# Object keys name things (labels, channels, files, fields): beyond this length one is not a name, and a key of
# thousands of digits would fail Python's int conversion wherever an index is read from it.
MAX_JSON_KEY = 4096


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, bounded in size (:data:`MAX_JSON_BYTES`), nesting (:data:`MAX_JSON_DEPTH`) and key
    length (:data:`MAX_JSON_KEY`).

    Raises:
        ConfigError: The file is missing, unreadable, too large, nested too deeply, with a key too long or not
            valid JSON; the message names the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ConfigError(f"{size / 2**20:.0f} MiB is more than any autounet JSON file holds "
                              f"({MAX_JSON_BYTES // 2**20} MiB at most); not reading it", path)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file ({exc.__class__.__name__}: {exc})", path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                          path) from None
    except RecursionError:
        raise ConfigError(f"JSON nested too deeply (more than {MAX_JSON_DEPTH} levels)", path) from None
    except ValueError as exc:  # an integer literal of thousands of digits (Python's int conversion limit)
        raise ConfigError(f"not usable JSON: {str(exc).split(';')[0]}", path) from None
    _check_shape(data, path)
    return data


def _check_shape(data: Any, path: Path) -> None:
    """Refuse nesting deeper than :data:`MAX_JSON_DEPTH` and object keys longer than :data:`MAX_JSON_KEY`
    (iteratively, in one walk: no recursion limit to hit, and one pass over large coordinate lists)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if long := next((key for key in value if len(key) > MAX_JSON_KEY), None):
                raise ConfigError(f"an object key of {len(long)} characters ({long[:20]}...); keys are names, at "
                                  f"most {MAX_JSON_KEY} characters", path)
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise ConfigError(f"JSON nested too deeply (more than {MAX_JSON_DEPTH} levels)", path)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
