"""Writing a whole dataset folder safely: build it hidden beside its final name, then rename it into place.

An interrupted run never leaves half a dataset under the final name, and an existing dataset is replaced
(with ``overwrite``) only once its successor is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from autounet.errors import DatasetError

__all__ = ["check_dataset_target", "staged_dataset"]


def check_dataset_target(final: Path, dataset_id: int, overwrite: bool, id_option: str = "-d ID") -> None:
    """Refuse to replace data without ``overwrite`` and to reuse another dataset's id.

    Raises:
        DatasetError: Another folder has the id, ``final`` is a file, or ``final`` holds data and
            ``overwrite`` is false.
    """
    prefix = f"Dataset{dataset_id:03d}_"
    if final.parent.is_dir():
        clashes = sorted(p.name for p in final.parent.iterdir()
                         if p.is_dir() and p.name.startswith(prefix) and p.name != final.name)
        if clashes:
            raise DatasetError(f"dataset id {dataset_id} is already used by {', '.join(clashes)}; choose "
                               f"another id ({id_option})", final.parent)
    if not final.exists() or overwrite:
        if final.exists() and not final.is_dir():
            raise DatasetError("exists and is not a folder; move it away first", final)
        return
    if not final.is_dir():
        raise DatasetError("exists and is not a folder; move it away first", final)
    if (final / "dataset.json").exists():
        raise DatasetError("dataset already exists; pass --overwrite to replace it", final)
    if any(final.iterdir()):
        raise DatasetError("folder exists, is not empty and has no dataset.json; pass --overwrite to replace it",
                           final)


@contextlib.contextmanager
def staged_dataset(final: Path, dataset_id: int, overwrite: bool, id_option: str = "-d ID") -> Iterator[Path]:
    """A hidden folder beside ``final`` that becomes ``final`` when the block succeeds.

    Args:
        final: The dataset folder to create or replace.
        dataset_id: Its id, checked against other folders.
        overwrite: Replace an existing dataset.
        id_option: How the user chooses another id, for the error message.

    Yields:
        The staging folder to write into.
    """
    check_dataset_target(final, dataset_id, overwrite, id_option)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkdtemp: its 0700 mode would survive the rename and hide the dataset from other users.
    staging = final.parent / f".{final.name}.{uuid.uuid4().hex[:12]}.partial"
    staging.mkdir()
    try:
        yield staging
        check_dataset_target(final, dataset_id, overwrite, id_option)  # again: writing may have taken minutes
        _move_into_place(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _move_into_place(staging: Path, final: Path) -> None:
    if not final.exists():
        os.rename(staging, final)
        return
    retired = final.parent / f".{final.name}.{uuid.uuid4().hex[:12]}.old"
    os.rename(final, retired)
    try:
        os.rename(staging, final)
    except BaseException:
        os.rename(retired, final)
        raise
    shutil.rmtree(retired, ignore_errors=True)
