"""The ``signalbox`` command's shared option handling: Django's common options
on every subcommand, what ``-v`` does to signalbox's loggers, and number types."""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
from collections.abc import Iterator

from django.core.management.base import CommandParser

LOG_LEVELS = {0: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}
"""What ``-v`` makes of the ``signalbox`` loggers' level; 1 leaves LOGGING's."""


@contextlib.contextmanager
def logging_at(verbosity: int) -> Iterator[None]:
    """Apply ``-v`` to the ``signalbox`` loggers while a subcommand runs: what
    a worker or a relay logs is most of what they say.

    0 shows warnings and errors only, 1 leaves the level LOGGING set, 2 shows
    INFO (start-up, hand-overs, stops) and 3 DEBUG too. At 2 and 3, when no
    handler would show signalbox's records (Django's default LOGGING has none
    for them), one on stderr does, so that ``-v 2`` always shows more. Both
    are undone on the way out.
    """
    level = LOG_LEVELS.get(verbosity)
    if level is None:
        yield
        return
    logger = logging.getLogger("signalbox")
    previous, added = logger.level, None
    if level < logging.WARNING and not logger.hasHandlers():
        added = logging.StreamHandler()
        added.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        logger.addHandler(added)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)
        if added is not None:
            logger.removeHandler(added)


def common_options(parser: CommandParser) -> CommandParser:
    """Django's common options (``-v``, ``--settings``, ``--traceback``, …) as
    a parent parser for the subcommands.

    argparse gives everything after a subcommand's name to that subcommand's
    parser, which refuses options it was not given: ``signalbox relay -v 2``
    failed. These are copies of the options ``parser`` holds when
    ``add_arguments`` runs (Django adds its own first), whatever the Django
    version offers. Their default is "absent", so a subcommand given none
    keeps what was given before its name (``signalbox -v 2 relay``), or
    Django's default.
    """
    common = CommandParser(add_help=False)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        copied = copy.copy(action)
        copied.default = argparse.SUPPRESS
        common._add_action(copied)
    return common


def positive(value: str) -> int:
    """``value`` as a whole number of at least 1, for argparse's ``type=``."""
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number
