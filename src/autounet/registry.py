"""Named parts that plans and recipes refer to by key (networks, objectives, normalisation schemes).

One small mechanism for every registry: duplicates are refused when a part registers, and an unknown key is
one line naming the closest known one ("did you mean"), never a dotted Python path to import.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

from autounet.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Parts of one kind by name.

    Args:
        what: What the parts are, for messages (``"network"``, ``"training objective"``).
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._parts: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding a part under ``name``.

        Raises:
            ValueError: ``name`` is already registered.
        """

        def add(part: T) -> T:
            if name in self._parts:
                raise ValueError(f"a {self.what} named '{name}' is already registered")
            self._parts[name] = part
            return part

        return add

    def names(self) -> tuple[str, ...]:
        """Registered names, sorted."""
        return tuple(sorted(self._parts))

    def __contains__(self, name: object) -> bool:
        return name in self._parts

    def get(self, name: str) -> T:
        """The part registered as ``name``.

        Raises:
            ConfigError: Unknown name; the message suggests the closest registered one.
        """
        try:
            return self._parts[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._parts, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(self.names())}"
            raise ConfigError(f"unknown {self.what} '{name}' ({hint})") from None
