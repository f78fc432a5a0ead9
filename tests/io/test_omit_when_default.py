"""Optional dataclass fields left out of the JSON while they hold their default."""

from __future__ import annotations

from dataclasses import dataclass, field

from autounet.io.serialization import OMIT_WHEN_DEFAULT, from_dict, to_dict


@dataclass(frozen=True)
class _Record:
    name: str
    extra: tuple[int, ...] = field(default=(), metadata=OMIT_WHEN_DEFAULT)
    note: str | None = field(default=None, metadata=OMIT_WHEN_DEFAULT)
    kept: int = 0


def test_default_fields_with_the_marker_are_left_out() -> None:
    plain = _Record("a")
    assert to_dict(plain) == {"name": "a", "kept": 0}
    assert from_dict(_Record, to_dict(plain)) == plain
    full = _Record("b", (1, 2), "x", 3)
    assert to_dict(full) == {"name": "b", "extra": [1, 2], "note": "x", "kept": 3}
    assert from_dict(_Record, to_dict(full)) == full
