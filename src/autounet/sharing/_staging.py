"""Staging folders for export and install: where half-written work lives until one rename publishes it.

A staging folder is named ``.autounet-staging-<host>-<pid>-<random>``: hidden, unmistakable for a result
(no dataset, configuration or zip is named like that), and it says which process owns it. A ``kill -9``
leaves one behind; the next export or install into the same folder removes it once its owner is gone
(same host and the pid no longer runs) or it is older than :data:`STALE_AFTER_S` (another host, or a reused
pid), so nothing is ever left for a later run to trip over. Folders of the older name
``.autounet-install-<8 random characters>`` (no owner recorded) are removed by the age rule alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["STAGING_PREFIX", "STALE_AFTER_S", "is_staging_name", "remove_stale_staging", "staging_folder"]

logger = logging.getLogger(__name__)

STAGING_PREFIX = ".autounet-staging-"
STALE_AFTER_S = 24 * 3600.0
_NAME = re.compile(rf"^{re.escape(STAGING_PREFIX)}(?P<host>[A-Za-z0-9]*)-(?P<pid>[0-9]+)-[0-9a-f]+$")
# What install-model staged in before (tempfile.mkdtemp names, no owner): removed by age alone.
_OLD_NAME = re.compile(r"^\.autounet-install-[A-Za-z0-9_]{8}$")


def _host() -> str:
    """This machine's name reduced to letters and digits (it is part of a file name), at most 32 of them."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32]


def is_staging_name(name: str) -> bool:
    """Whether ``name`` is the name of a staging folder (which is never a result)."""
    return bool(_NAME.match(name))


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) terminates the process on Windows; the age rule decides there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def remove_stale_staging(parent: Path, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the staging folders in ``parent`` that no running process owns any more.

    Args:
        parent: The folder an export or install stages in.
        max_age_s: Staging folders not modified for this long are removed whoever owns them.

    Returns:
        The folders removed.
    """
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    host, now = _host(), time.time()
    for path in parent.iterdir():
        match = _NAME.match(path.name)
        if (match is None and not _OLD_NAME.match(path.name)) or not path.is_dir() or path.is_symlink():
            continue
        try:
            age = now - path.stat().st_mtime
        except OSError:  # removed meanwhile by another process
            continue
        orphaned = match is not None and match["host"] == host and not _pid_alive(int(match["pid"]))
        if orphaned or age > max_age_s:
            shutil.rmtree(path, ignore_errors=True)
            logger.info("removed %s, left behind by an interrupted run", path)
            removed.append(path)
    return removed


@contextlib.contextmanager
def staging_folder(parent: Path) -> Iterator[Path]:
    """Create a fresh staging folder in ``parent`` (after removing stale ones) and remove it on leaving.

    Args:
        parent: Where to stage: the folder of the final result, so publishing it is a rename on one file
            system. Created if missing.

    Yields:
        The empty staging folder.
    """
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(parent)
    folder = parent / f"{STAGING_PREFIX}{_host()}-{os.getpid()}-{secrets.token_hex(4)}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
