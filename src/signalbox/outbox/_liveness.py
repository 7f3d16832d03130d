"""Knowing at once, on PostgreSQL, that a worker process is gone.

Each embedded worker holds a session-level advisory lock for as long as its
process lives, on a connection it keeps for that alone (:class:`LivenessLock`),
and records the lock's key in its worker record. The server
frees a session's locks when the session ends, and a ``kill -9``, a crash or
a lost machine ends it: whoever can then take that lock knows its holder is
gone, and takes back the rows it held without waiting for their leases.

A worker record without a key (a burst worker, SQLite or MySQL, an older
version, an engine's task) is never judged this way: its leases alone tell.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from django.db import connections

from signalbox.outbox._base import _rows, _workers
from signalbox.outbox._conflicts import retried
from signalbox.outbox._leases import take_back

_GONE = (
    "SELECT name, liveness_key FROM signalbox_workerrecord "
    "WHERE liveness_key IS NOT NULL AND name <> %s "
    "AND pg_try_advisory_lock(liveness_key)"
)
"""The workers whose lock nobody holds: each lock it takes is the checker's
until it lets go, which it does at once."""


def liveness_key(name: str) -> int:
    """The advisory lock key of the worker named ``name``: 64 bits of its
    name's hash, so that two live workers share one with odds of 2**-64."""
    digest = hashlib.blake2b(
        name.encode(), digest_size=8, person=b"signalbox-live"
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


def hold_liveness(connection: Any, key: int) -> bool:
    """Take the lock ``key`` on ``connection``, a psycopg connection kept open
    for the worker's life; False if someone else holds it.

    The lock is the session's: it lasts until the connection closes, which
    is when the process dies at the latest.
    """
    row = connection.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
    return bool(row and row[0])


class LivenessLock:
    """The liveness lock ``key`` of one worker, on a connection of its own to
    the database ``using`` (PostgreSQL).

    Its own: the lock must outlive every other connection of the worker (a
    LISTEN connection ends with the shutdown's first step, while receivers
    still run in the grace period), and no checker may run on the session
    that holds it (a session can always take its own lock again).
    """

    def __init__(self, using: str, key: int) -> None:
        self.using = using
        self.key = key
        self._connection: Any = None

    def keep(self) -> bool:
        """Whether the lock is held, after taking it again on a fresh
        connection if the last one was lost. Raises if the server is away."""
        if self._connection is not None:
            try:
                self._connection.execute("SELECT 1")
                return True
            except Exception:  # lost, and the lock with it: take it again
                self.close()
        import psycopg

        params = connections[self.using].get_connection_params()
        self._connection = psycopg.connect(**params, autocommit=True)
        if not hold_liveness(self._connection, self.key):
            self.close()
            return False
        return True

    def close(self) -> None:
        """Let the lock go, with its connection."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


def rescue_gone(*, using: str, itself: str = "") -> int:
    """Take back the rows of workers whose liveness lock is free, as
    :func:`~signalbox.outbox.rescue` takes back expired leases; returns how
    many. Their worker records are removed. ``itself``, the calling worker's
    name, is never judged: it knows it is alive. Nothing on other databases.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute(_GONE, [itself])
        gone = cursor.fetchall()
        if not gone:
            return 0
        cursor.execute(
            "SELECT pg_advisory_unlock(key) FROM unnest(%s::bigint[]) AS key",
            [[key for _, key in gone]],
        )
    names = [name for name, _ in gone]
    gone_rows = _rows(using).executing().filter(leased_by__in=names)
    taken = retried(using, take_back, gone_rows)
    _workers(using).filter(name__in=names).delete()
    return taken
