"""Acknowledgements written in batches, on a thread of their own: the
embedded worker's, and those an engine's task defers (whose thread also
keeps their leases: see :mod:`signalbox.worker._keeper`).

A delivery whose receiver returned is marked completed by one ``UPDATE`` per
batch: whatever finished while the previous batch was being written goes in
the next, so an idle worker acknowledges at once and a busy one amortises a
round trip (and a commit) over many deliveries. An engine's tasks gather
theirs for a moment first: a task ends before the next one starts, so a
batch forms only if its first waits. Until its acknowledgement is
written a delivery stays leased to its process; if the process dies first,
the lease expires and the delivery runs again, which at-least-once delivery
allows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.db import connections
from django.utils.translation import ngettext

from signalbox import _outage, outbox

logger = logging.getLogger("signalbox.worker")

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
    until :meth:`close`; without, it is left to the leases at once. Given
    ``beat``, the thread also calls it every ``every()`` seconds (between
    batches); when it returns False (nothing left to keep alive) and nothing
    waits, the thread lets its connections go until there is work again.
    Whatever is unwritten at the end is left to the leases. A lost database
    connection is said once per outage, naming ``affected`` (see
    :mod:`signalbox._outage`); retries back off meanwhile.
    """

    def __init__(
        self,
        using: str,
        written: Written = _nothing,
        prepare: Callable[[], None] = lambda: None,
        *,
        name: str = "signalbox-acks",
        affected: str = "acknowledgements",
        gather: Callable[[], float] = lambda: 0.0,
        retry: bool = True,
        beat: Callable[[], bool] | None = None,
        every: Callable[[], float] = lambda: 1.0,
    ):
        super().__init__(name=name, daemon=True)
        self.using = using
        self._written = written
        self._prepare = prepare
        self._gather = gather
        self._retry = retry
        self._beat = beat
        self._every = every
        self._site = _outage.Site(using, affected, logger)
        self._last_beat = time.monotonic()
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
            if self._pending:
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
                if batch:
                    self._write(batch)
                if self._beat is not None and self._until_beat() == 0:
                    self._last_beat = time.monotonic()
                    if not self._beat() and not self._pending:
                        connections.close_all()  # idle: no connection meanwhile
        finally:
            connections.close_all()  # this thread's own

    def _next_batch(self) -> list[outbox.Claimed] | None:
        """What to write next; empty when it is time to beat, None once
        closed with nothing left."""
        with self._changed:
            ready = self._changed.wait_for(
                lambda: self._pending or self._closed, self._until_beat()
            )
            if not ready:
                return []
            gather = self._since + self._gather() - time.monotonic()
            if gather > 0:
                self._changed.wait_for(lambda: self._hurry or self._closed, gather)
            self._hurry = False
            if not self._pending:
                return None
            batch, self._pending = self._pending, []
            self._writing += 1
            return batch

    def _until_beat(self) -> float | None:
        """Seconds until the next beat (``every()`` is read each time, so a
        new setting applies at once); None without a beat."""
        if self._beat is None:
            return None
        return max(self._last_beat + self._every() - time.monotonic(), 0.0)

    def _write(self, batch: list[outbox.Claimed]) -> None:
        try:
            while True:
                try:
                    self._prepare()
                    applied = outbox.complete_many(batch, using=self.using)
                    self._site.ok()
                    break
                except Exception as error:  # reconnect and write it again
                    connections[self.using].close()
                    if self._closed or not self._retry:
                        self._gave_up(batch, error)
                        return
                    pause = self._site.failed(error, "Acknowledging failed; retrying.")
                    with self._changed:
                        self._changed.wait(pause)
            self._written(batch, applied)
        finally:
            with self._changed:
                self._writing -= 1
                self._changed.notify_all()

    def _gave_up(self, batch: list[outbox.Claimed], error: Exception) -> None:
        # Without retries (an engine task's deferred completions) a batch
        # goes unwritten at every failure: in an outage, that is the
        # outage's to say, once. A worker's last batch is said all the same.
        if not self._retry and _outage.lost(
            error, using=self.using, affected=self._site.affected, log=logger
        ):
            return
        logger.warning(
            ngettext(
                "Could not acknowledge %d delivery (%s); its lease will bring it back.",
                "Could not acknowledge %d deliveries (%s); their leases will bring "
                "them back.",
                len(batch),
            ),
            len(batch),
            error,
        )
