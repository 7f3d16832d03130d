"""Acknowledgements written in batches, on a thread of their own: the
embedded worker's, and those an engine's task defers.

A delivery whose receiver returned is marked completed by one ``UPDATE`` per
batch: whatever finished while the previous batch was being written goes in
the next, so an idle worker acknowledges at once and a busy one amortises a
round trip (and a commit) over many deliveries. An engine's tasks gather
theirs for :data:`ACK_DELAY` first: a task ends before the next one starts,
so a batch forms only if its first waits. Until its acknowledgement is
written a delivery stays leased to its process; if the process dies first,
the lease expires and the delivery runs again, which at-least-once delivery
allows.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable

from django.db import connections
from django.utils.translation import ngettext

from signalbox import _connections, _forks, conf, outbox

logger = logging.getLogger("signalbox.worker")

ACK_DELAY = 0.02
"""Seconds an engine task's deferred completion waits, gathering the ones
that follow, before its acknowledger writes them in one statement."""

WRITE_WAIT = 5.0
"""Seconds :func:`write_acks` waits for the deferred completions of each
database to be written."""

Written = Callable[[list[outbox.Claimed], set[int]], None]
"""Told each written batch and the ids whose lease still held."""


def _nothing(batch: list[outbox.Claimed], applied: set[int]) -> None:
    """The default :data:`Written`: nobody counts."""


class Acknowledger(threading.Thread):
    """Marks completed the deliveries handed to :meth:`add`, many at a time.

    ``written`` is called after each batch with the batch and the ids the
    update applied to; the others had lost their lease. ``prepare`` runs on
    the thread before each write (the worker relaxes its commits there).
    ``gather`` says, before each batch, how many seconds to wait after its
    first acknowledgement for others to join it (none, by default), unless
    :meth:`flush` asks for it sooner. With ``retry``, a batch that cannot be
    written (the database went away) is tried again on a fresh connection
    until :meth:`close`; without, it is left to the leases at once. With
    ``idle_close``, the thread closes its connection after that many seconds
    without work. Whatever is unwritten at the end is left to the leases.
    """

    def __init__(
        self,
        using: str,
        written: Written = _nothing,
        prepare: Callable[[], None] = lambda: None,
        *,
        name: str = "signalbox-acks",
        gather: Callable[[], float] = lambda: 0.0,
        retry: bool = True,
        idle_close: float | None = None,
    ):
        super().__init__(name=name, daemon=True)
        self.using = using
        self._written = written
        self._prepare = prepare
        self._gather = gather
        self._retry = retry
        self._idle_close = idle_close
        self._pending: list[outbox.Claimed] = []
        self._since = 0.0  # monotonic: when the oldest pending one was added
        self._writing = 0
        self._hurry = False
        self._closed = False
        self._changed = threading.Condition()

    def add(self, claimed: outbox.Claimed) -> None:
        """Queue ``claimed`` for acknowledgement; returns at once."""
        with self._changed:
            if not self._pending:
                # Only the first of a batch wakes the thread: it takes every
                # one added meanwhile, and a wake-up per delivery would cost
                # a thread switch per delivery.
                self._since = time.monotonic()
                self._changed.notify_all()
            self._pending.append(claimed)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written, without gathering
        more first; False on timeout."""
        with self._changed:
            self._hurry = True
            self._changed.notify_all()
            return self._changed.wait_for(
                lambda: not self._pending and not self._writing, timeout
            )

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (for up to ``timeout``), then stop the thread."""
        self.flush(timeout)
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self.join(timeout)

    def run(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._write(batch)
        finally:
            connections.close_all()  # this thread's own

    def _next_batch(self) -> list[outbox.Claimed] | None:
        with self._changed:
            while not self._changed.wait_for(
                lambda: self._pending or self._closed, self._idle_close
            ):
                connections.close_all()  # idle: hold no connection meanwhile
            gather = self._since + self._gather() - time.monotonic()
            if gather > 0:
                self._changed.wait_for(lambda: self._hurry or self._closed, gather)
            self._hurry = False
            if not self._pending:
                return None
            batch, self._pending = self._pending, []
            self._writing += 1
            return batch

    def _write(self, batch: list[outbox.Claimed]) -> None:
        try:
            while True:
                try:
                    self._prepare()
                    applied = outbox.complete_many(batch, using=self.using)
                    break
                except Exception as error:  # reconnect and write it again
                    connections[self.using].close()
                    if self._closed or not self._retry:
                        logger.warning(
                            ngettext(
                                "Could not acknowledge %d delivery (%s); its "
                                "lease will bring it back.",
                                "Could not acknowledge %d deliveries (%s); their "
                                "leases will bring them back.",
                                len(batch),
                            ),
                            len(batch),
                            error,
                        )
                        return
                    logger.warning("Acknowledging failed (%s); retrying.", error)
                    with self._changed:
                        self._changed.wait(0.5)
            self._written(batch, applied)
        finally:
            with self._changed:
                self._writing -= 1
                self._changed.notify_all()


class DeferredAcks:
    """The acknowledgements this process's engine tasks defer: one
    :class:`Acknowledger` per database, started with the first, gathering
    for :data:`ACK_DELAY`, dropping a batch it cannot write (the leases
    bring those rows back), and holding no connection while idle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_database: dict[str, Acknowledger] = {}
        self._ended = 0.0  # monotonic: when the last delivery ended
        _forks.renew_in_children(self, DeferredAcks._forget_parent)

    def _forget_parent(self) -> None:
        # The parent's acknowledgements are its own to write (its threads may
        # have held these locks at the fork); the child starts its own.
        self._lock = threading.Lock()
        self._by_database = {}

    def streaming(self, within: float = ACK_DELAY) -> bool:
        """Whether the last delivery ended less than ``within`` ago: one that
        follows it that closely can expect others to follow, whose
        completions its own can wait for (a lone delivery writes its own)."""
        return time.monotonic() - self._ended < within

    def ended(self) -> None:
        """Note that a delivery just ended (see :meth:`streaming`)."""
        self._ended = time.monotonic()

    def defer(self, claimed: outbox.Claimed, *, using: str) -> None:
        """Have ``claimed``'s completion written within :data:`ACK_DELAY` or so."""
        with self._lock:
            acknowledger = self._by_database.get(using)
            if acknowledger is None:
                acknowledger = self._by_database[using] = Acknowledger(
                    using,
                    name="signalbox-task-acks",
                    gather=lambda: ACK_DELAY,
                    retry=False,
                    idle_close=max(conf.get().lease.total_seconds() / 3, 0.05),
                )
                acknowledger.start()
        acknowledger.add(claimed)

    def write(self) -> None:
        """Write every deferred completion now and wait for it (up to
        :data:`WRITE_WAIT` seconds per database, a write under way
        included): a process that ends right after this returns ends with
        every completion it ran written."""
        with self._lock:
            acknowledgers = list(self._by_database.values())
        for acknowledger in acknowledgers:
            acknowledger.flush(WRITE_WAIT)


deferred = DeferredAcks()
"""This process's deferred acknowledgements."""


def write_acks() -> None:
    """Write the completions this process's engine tasks deferred, and wait
    for them: at exit, and on Celery's ``worker_process_shutdown``."""
    deferred.write()
    _connections.tidy()


atexit.register(write_acks)
