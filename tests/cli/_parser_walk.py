"""Walking the CLI's parser: every option of every (nested) subcommand, for tests that sweep all flags."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def typed_options(parser: argparse.ArgumentParser, keep: Callable[[argparse.Action], bool],
                  prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """(subcommand path, flag) of every option of every (nested) subcommand for which ``keep(action)`` holds."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += typed_options(sub, keep, (*prefix, name))
        elif action.option_strings and keep(action):
            found.append((prefix, action.option_strings[-1]))
    return found
