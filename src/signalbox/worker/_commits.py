"""Commits that do not wait for the disk, for the worker's own bookkeeping."""

from __future__ import annotations

import weakref
from typing import Any

from django.db import connections

from signalbox import _outage


class RelaxedCommits:
    """Lets the calling thread's connection to ``using`` commit without
    waiting for the disk (PostgreSQL's ``synchronous_commit``), unless
    ``durable`` (``SYNCHRONOUS_ACKS``) says otherwise.

    Only the worker's own threads (claims, acknowledgements, heartbeat) call
    :meth:`relax`, never the threads that run receivers: a database crash
    may then forget a claim or an acknowledgement, which only makes a
    delivery run again.
    """

    def __init__(self, using: str, *, durable: bool) -> None:
        self.using = using
        self.durable = durable
        # The raw connections already relaxed (each one SET once).
        self._relaxed: weakref.WeakSet[Any] = weakref.WeakSet()

    def relax(self) -> None:
        """Relax this thread's connection (connecting if need be); once per
        connection, a no-op on other databases. First, a connection that died
        in a database outage is dropped for a new one (the worker's own
        threads call this before each of their statements)."""
        _outage.recheck(self.using)
        connection = connections[self.using]
        if connection.vendor != "postgresql" or self.durable:
            return
        connection.ensure_connection()
        raw = connection.connection
        if raw in self._relaxed:
            return
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")
        self._relaxed.add(raw)

    def restore(self) -> None:
        """Make this thread's connection durable again, if :meth:`relax`
        relaxed it: the thread that ran the worker (a test, a script) may
        outlive it, and is left as it was found."""
        connection = connections[self.using]
        if connection.connection is None or connection.connection not in self._relaxed:
            return
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit TO DEFAULT")
        except Exception:  # a broken connection is closed, and forgets it anyway
            connection.close()
