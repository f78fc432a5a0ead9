"""Error types for faults the user can fix.

Every error carries the file it concerns (when there is one) and a sentence saying what is wrong and,
where possible, what to do. The CLI prints ``str(error)`` as a single line and exits non-zero.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AutounetError",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "ImageIOError",
    "PlanError",
]


class AutounetError(Exception):
    """Base class of all user-facing autounet errors.

    Args:
        problem: What is wrong, and what to do about it, in one sentence.
        path: The file or folder the problem concerns, if any.
    """

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.problem = problem
        self.path = Path(path) if path is not None else None
        super().__init__(self.__str__())

    def __str__(self) -> str:
        # One line, always: newlines in a problem text would break the CLI's one-line contract.
        problem = " ".join(self.problem.split())
        return f"{self.path}: {problem}" if self.path is not None else problem


class DatasetError(AutounetError):
    """A raw dataset (folder layout, dataset.json, image files) is malformed."""


class ImageIOError(DatasetError):
    """An image file cannot be read or written, or its contents are unusable."""


class ConfigError(AutounetError):
    """A configuration or JSON file (plans, fingerprint, recipe, splits) is malformed."""


class PlanError(AutounetError):
    """Experiment planning cannot produce a valid configuration."""


class CheckpointError(AutounetError):
    """A checkpoint or trained-model folder is missing, incomplete or incompatible."""
