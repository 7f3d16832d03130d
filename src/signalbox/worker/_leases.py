"""Keeping leases alive while their deliveries run.

:class:`Leases` is the set of claims a process holds and the one way they
are extended; the embedded worker's heartbeat extends its own, and
:data:`keeper`, a thread started with the first delivery an engine's task
runs in a process, extends those of every task of that process, every third
of a lease. A dead process extends nothing: its leases expire and its rows
run again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections

from signalbox import _connections, _forks, conf, outbox

logger = logging.getLogger("signalbox.worker")


class Leases:
    """The claims held (each with its database alias), to be extended until
    let go. Safe to use from many threads."""

    def __init__(self) -> None:
        # By id and token: one claim statement gives all its rows one token,
        # and two databases may each have a row of the same id.
        self._held: dict[tuple[int, uuid.UUID], tuple[outbox.Claimed, str]] = {}
        self._lock = threading.Lock()

    def hold(self, claimed: outbox.Claimed, using: str) -> None:
        """Keep ``claimed``'s lease alive from now on."""
        with self._lock:
            self._held[claimed.id, claimed.token] = (claimed, using)

    def hold_all(self, claims: list[outbox.Claimed], using: str) -> None:
        """Keep the leases of ``claims`` alive from now on."""
        with self._lock:
            for claimed in claims:
                self._held[claimed.id, claimed.token] = (claimed, using)

    def let_go(self, claimed: outbox.Claimed) -> bool:
        """Stop keeping ``claimed``'s lease; whether it was held."""
        with self._lock:
            return self._held.pop((claimed.id, claimed.token), None) is not None

    def claims(self) -> list[outbox.Claimed]:
        """The claims held now, in the order they were taken."""
        with self._lock:
            return [claimed for claimed, _ in self._held.values()]

    def __len__(self) -> int:
        return len(self._held)

    def extend(self) -> None:
        """Push every held lease out to now + ``LEASE_SECONDS``, one statement
        per database. Raises what the database raised (after trying every
        database), for the caller to log: the next beat tries again."""
        with self._lock:
            held = list(self._held.values())
        by_database: dict[str, list[outbox.Claimed]] = {}
        for claimed, using in held:
            by_database.setdefault(using, []).append(claimed)
        failed: Exception | None = None
        for using, claims in by_database.items():
            try:
                outbox.extend(claims, lease=conf.get().lease, using=using)
            except Exception as error:  # the other databases still get theirs
                failed = error
        if failed is not None:
            raise failed

    def _forget_parent(self) -> None:
        # A forked child holds none of its parent's rows, and the parent's
        # threads may have held this lock at the fork.
        self._lock, self._held = threading.Lock(), {}


class LeaseKeeper:
    """Extends, every third of a lease, the leases this process's engine
    tasks hold (see :meth:`holding`), on a thread started with the first."""

    def __init__(self) -> None:
        self.leases = Leases()
        self._lock = threading.Lock()
        self._pid = -1
        _forks.renew_in_children(self, LeaseKeeper._forget_parent)

    def _forget_parent(self) -> None:
        # A child keeps neither the thread nor its leases; the first delivery
        # it runs starts its own.
        self._lock, self._pid = threading.Lock(), -1
        self.leases._forget_parent()

    @contextmanager
    def holding(self, claimed: outbox.Claimed, using: str) -> Iterator[None]:
        """A context in which ``claimed``'s lease is kept alive."""
        self._start()
        self.leases.hold(claimed, using)
        try:
            yield
        finally:
            self.leases.let_go(claimed)

    def _start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # the first in this process
                self._pid = os.getpid()
                threading.Thread(
                    target=self._run, name="signalbox-leases", daemon=True
                ).start()

    def _run(self) -> None:
        while True:
            time.sleep(max(conf.get().lease.total_seconds() / 3, 0.05))
            try:
                self.leases.extend()
            except Exception as error:  # the next beat tries again
                logger.warning("Extending leases failed: %s", error)
            finally:
                _connections.tidy()
            if not len(self.leases):
                connections.close_all()  # nothing to keep alive: no connection


keeper = LeaseKeeper()
"""This process's lease keeper for engine tasks."""
