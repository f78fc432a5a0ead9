"""Cross-validation splits, identical to nnU-Net v2's ``splits_final.json``.

The default split is 5-fold cross-validation over the **sorted** case ids, exactly as scikit-learn's
``KFold(n_splits=5, shuffle=True, random_state=12345)`` makes it (the algorithm is reimplemented here with
NumPy's ``RandomState``, so splits agree case for case with nnU-Net's). The file layout is nnU-Net's: a JSON
list with one ``{"train": [...], "val": [...]}`` object per fold, so a ``splits_final.json`` from nnU-Net can
be used unchanged and a hand-edited file is honoured as written. Being nnU-Net's bare list, the file carries
no ``schema_version``.

Unlike nnU-Net, asking for a fold the file does not contain is an error, never a silent random 80:20 split.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from autounet.errors import ConfigError, DatasetError
from autounet.io.jsonio import read_json, write_json

__all__ = ["Fold", "fold_cases", "load_or_create_splits", "make_splits"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fold:
    """The training and validation cases of one fold.

    Attributes:
        train: Case ids to train on.
        val: Case ids to validate on.
    """

    train: tuple[str, ...]
    val: tuple[str, ...]


def make_splits(case_ids: Sequence[str], num_folds: int = 5, seed: int = 12345) -> list[Fold]:
    """K-fold cross-validation over the sorted case ids, identical to nnU-Net v2's default split.

    The ids are sorted, permuted with ``numpy.random.RandomState(seed).shuffle``, and cut into ``num_folds``
    consecutive chunks (the first ``n % num_folds`` one case larger); each chunk is one fold's validation
    set. Within a fold, both lists keep the sorted order.

    Args:
        case_ids: Training case ids (any order; duplicates are not allowed).
        num_folds: Number of folds, at least 2.
        seed: Shuffle seed; nnU-Net uses 12345.

    Raises:
        ValueError: ``num_folds < 2`` or duplicate case ids.
        DatasetError: Fewer cases than folds (nnU-Net fails there too): every fold needs a validation case.
    """
    if num_folds < 2:
        raise ValueError(f"num_folds must be at least 2, got {num_folds}")
    ids = sorted(case_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("case ids must be unique")
    if len(ids) < num_folds:
        raise DatasetError(f"{num_folds}-fold cross-validation needs at least {num_folds} training cases, the "
                           f"dataset has {len(ids)}; train on fold 'all' or write your own split file")
    order = np.arange(len(ids))
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(num_folds, len(ids) // num_folds, dtype=int)
    sizes[: len(ids) % num_folds] += 1
    folds = []
    start = 0
    for size in sizes:
        is_val = np.zeros(len(ids), dtype=bool)
        is_val[order[start:start + size]] = True
        start += int(size)
        folds.append(Fold(train=tuple(ids[i] for i in np.flatnonzero(~is_val)),
                          val=tuple(ids[i] for i in np.flatnonzero(is_val))))
    return folds


def load_or_create_splits(path: str | os.PathLike, case_ids: Sequence[str], num_folds: int = 5) -> list[Fold]:
    """Read the split file, or create the default split and write it when the file does not exist.

    An existing file (autounet's or nnU-Net's ``splits_final.json``) is used as written: any number of folds,
    cases may be left out. Writing is atomic and deterministic, so folds started in parallel agree.

    Args:
        path: The split file.
        case_ids: All training case ids of the dataset.
        num_folds: Folds of a newly created split.

    Raises:
        ConfigError: The file is not valid JSON, not a list of ``{"train": [...], "val": [...]}`` objects,
            names unknown or repeated cases, has a fold with an empty list, or has a case in both the train
            and the val list of a fold; the message names the file and the fold.
        DatasetError: No file exists and there are fewer cases than folds.
    """
    path = Path(path)
    if not path.exists():
        try:
            splits = make_splits(case_ids, num_folds)
        except DatasetError as exc:
            raise DatasetError(exc.problem, path) from None
        write_json(path, [{"train": list(f.train), "val": list(f.val)} for f in splits])
        logger.info("created a %d-fold cross-validation split of %d cases in %s", num_folds, len(case_ids), path)
        return splits
    splits = _parse_splits(read_json(path), set(case_ids), path)
    logger.info("using the %d-fold split in %s", len(splits), path)
    return splits


def fold_cases(splits: Sequence[Fold], fold: int | Literal["all"], all_case_ids: Sequence[str], *,
               source: str | os.PathLike | None = None) -> Fold:
    """The cases of one fold.

    Args:
        splits: Folds from :func:`load_or_create_splits`.
        fold: Fold index, or ``"all"``: train on every case and validate on every case (as nnU-Net; the
            validation score is then not a held-out estimate).
        all_case_ids: All training case ids, used for ``"all"``.
        source: The split file, for error messages.

    Raises:
        ConfigError: The fold index does not exist in ``splits``.
    """
    if fold == "all":
        ids = tuple(sorted(all_case_ids))
        return Fold(train=ids, val=ids)
    if isinstance(fold, bool) or not isinstance(fold, int):
        raise ConfigError(f"fold must be an integer or 'all', got {fold!r}")
    name = Path(source).name if source is not None else "the split file"
    if not 0 <= fold < len(splits):
        have = f"{len(splits)} folds (0-{len(splits) - 1})" if splits else "no folds"
        raise ConfigError(f"{name} has {have}; fold {fold} does not exist. Use an existing fold or add it to "
                          f"the file", source)
    return splits[fold]


def _parse_splits(data: Any, known: set[str], path: Path) -> list[Fold]:
    if not isinstance(data, list) or not data:
        raise ConfigError('the split file must hold a non-empty list of {"train": [...], "val": [...]} objects',
                          path)
    return [_parse_fold(entry, index, known, path) for index, entry in enumerate(data)]


def _parse_fold(entry: Any, index: int, known: set[str], path: Path) -> Fold:
    if not isinstance(entry, dict) or set(entry) != {"train", "val"}:
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise ConfigError(f'fold {index} must be an object with exactly the keys "train" and "val", got {keys}',
                          path)
    lists = {}
    for key in ("train", "val"):
        values = entry[key]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"fold {index}: '{key}' must be a list of case ids (strings)", path)
        if not values:
            raise ConfigError(f"fold {index}: '{key}' is empty", path)
        if len(set(values)) != len(values):
            repeated = sorted(v for v, count in Counter(values).items() if count > 1)
            raise ConfigError(f"fold {index}: '{key}' lists {_few(repeated)} more than once", path)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"fold {index}: '{key}' names {len(unknown)} case(s) not in the dataset: "
                              f"{_few(unknown)}", path)
        lists[key] = values
    overlap = sorted(set(lists["train"]) & set(lists["val"]))
    if overlap:
        raise ConfigError(f"fold {index}: {len(overlap)} case(s) are in both 'train' and 'val': {_few(overlap)}",
                          path)
    return Fold(train=tuple(lists["train"]), val=tuple(lists["val"]))


def _few(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")
