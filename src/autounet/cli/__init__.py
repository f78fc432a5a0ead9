"""Command-line interface: ``autounet COMMAND``; see :func:`autounet.cli.main.main`."""

from __future__ import annotations

__all__: list[str] = []
