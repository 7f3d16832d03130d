"""Statements a database refuses for a moment, run again when it says so.

When two transactions wait on each other, InnoDB (MySQL/MariaDB, error 1213)
and PostgreSQL (``40P01``) roll one of them back and say it may simply run
again; a serialization failure (``40001``) says the same. A worker meets this
in normal operation on MySQL: its next claim walks the "waiting" index while
the outcome of the last delivery updates the same rows through the primary
key, and the two take their locks in opposite orders.

Every transition of the outbox is one statement (or its own short
transaction) guarded by a lease token, so running it again is safe: it
applies once or not at all. Inside a caller's transaction it is not: the
database rolled that whole transaction back, so the error goes to the caller.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import OperationalError, connections

logger = logging.getLogger("signalbox.outbox")

_P = ParamSpec("_P")
_T = TypeVar("_T")

# How many times a statement runs before its conflict goes to the caller.
ATTEMPTS = 5
# The longest pause before the next try, in seconds: each try waits a random
# part of attempt x this, so two victims of one conflict do not meet again.
_PAUSE = 0.01

_MYSQL_DEADLOCK = 1213
_POSTGRESQL_CONFLICTS = frozenset({"40P01", "40001"})


def is_conflict(error: BaseException) -> bool:
    """Whether ``error`` is a database saying "run it again": a deadlock or a
    serialization failure, on PostgreSQL or MySQL/MariaDB."""
    cause = error.__cause__ or error
    if getattr(cause, "sqlstate", None) in _POSTGRESQL_CONFLICTS:
        return True
    args: tuple[object, ...] = getattr(cause, "args", ())
    return bool(args) and args[0] == _MYSQL_DEADLOCK


def retried(
    using: str, statement: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
) -> _T:
    """Run ``statement(*args, **kwargs)``; when the database picks it as a
    deadlock's victim, run it again, up to :data:`ATTEMPTS` times.

    Inside an ``atomic()`` block on ``using`` it runs once: the conflict
    rolled back the caller's transaction, which only the caller can redo.
    """
    if connections[using].in_atomic_block:
        return statement(*args, **kwargs)
    for attempt in range(1, ATTEMPTS):
        try:
            return statement(*args, **kwargs)
        except OperationalError as error:
            if not is_conflict(error):
                raise
            logger.debug(
                "The database chose this statement as a deadlock's victim "
                "(try %d of %d); running it again.",
                attempt,
                ATTEMPTS,
                exc_info=True,
            )
            time.sleep(random.uniform(0, _PAUSE * attempt))  # noqa: S311 - jitter
    return statement(*args, **kwargs)
