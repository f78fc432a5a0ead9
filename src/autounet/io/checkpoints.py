"""Checkpoints: state dicts and plain metadata only, written atomically, loaded with ``weights_only=True``.

In ``io`` because training writes them and inference reads them, and inference must not import training.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from autounet.errors import CheckpointError

__all__ = ["CHECKPOINT_FORMAT", "check_axes", "check_matches", "check_weights", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "autounet-checkpoint-v1"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically.

    A ``kill -9`` at any moment leaves the previous checkpoint intact: the new one is written to a
    temporary file in the same folder, flushed to disk, then renamed over the old one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint without unpickling arbitrary objects.

    Raises:
        CheckpointError: Missing, truncated or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint not found", path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
        raise CheckpointError(f"cannot read checkpoint ({exc.__class__.__name__}); it may be truncated or "
                              "not an autounet checkpoint", path) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError("not an autounet checkpoint", path)
    return state


def check_weights(state: dict[str, Any], key: str, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The network weights of a loaded checkpoint, checked: names mapped to finite tensors.

    ``weights_only`` loading keeps code out, but the file may still hold other objects where weights belong
    (lists, numbers, strings) or weights a failed run left NaN; either would fail (or predict nonsense) deep
    inside the network.

    Args:
        state: The loaded checkpoint.
        key: Where it keeps the weights (``network`` for autounet, ``network_weights`` for nnU-Net).
        path: The checkpoint file, named in the error.

    Raises:
        CheckpointError: The key is missing, or an entry is not a tensor or holds NaN or infinite values.
    """
    weights = state.get(key)
    if not isinstance(weights, dict) or not weights:
        raise CheckpointError(f"the checkpoint holds no '{key}' weights (a mapping of names to tensors)", path)
    for name, value in weights.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"'{key}' entry {name!r} holds a {type(value).__name__}, not a tensor; the file is "
                                  "not a checkpoint of a network", path)
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"weight '{name}' holds NaN or infinite values (did training diverge?)", path)
    return weights


def check_matches(weights: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
                  path: str | os.PathLike) -> None:
    """Checked weights against the network they are loaded into: the same names, each of the same shape.

    ``load_state_dict`` would fail too, but with a multi-line message listing every name; a checkpoint of
    another configuration, dataset or network in the wrong folder deserves one line that says so.

    Raises:
        CheckpointError: A name is missing or unexpected, or a shape differs (the first such is named).
    """
    missing = [name for name in expected if name not in weights]
    unexpected = [name for name in weights if name not in expected]
    wrong = [name for name in expected
             if name in weights and tuple(weights[name].shape) != tuple(expected[name].shape)]
    if missing or unexpected or wrong:
        first = (f"weight '{wrong[0]}' has shape {list(weights[wrong[0]].shape)}, the network's "
                 f"{list(expected[wrong[0]].shape)}" if wrong else
                 f"weight '{missing[0]}' is missing" if missing else f"weight '{unexpected[0]}' is not the network's")
        raise CheckpointError(f"the weights do not fit this network ({first}; {len(missing)} missing, "
                              f"{len(unexpected)} unexpected, {len(wrong)} of another shape): the checkpoint is of "
                              "another configuration, dataset or network", path)


def check_axes(value: Any, ndim: int, what: str, path: str | os.PathLike) -> tuple[int, ...]:
    """Axis indices recorded in a checkpoint (e.g. the mirror axes), checked: distinct integers in ``0..ndim-1``.

    Raises:
        CheckpointError: Anything else, naming the file and ``what``.
    """
    if value is None:
        return ()
    items = list(value) if isinstance(value, (list, tuple)) else None
    if items is None or any(isinstance(a, bool) or not isinstance(a, int) or not 0 <= a < ndim for a in items) \
            or len(set(items)) != len(items):
        raise CheckpointError(f"{what} must be distinct axis indices below {ndim}, got {value!r}", path)
    return tuple(int(a) for a in items)
