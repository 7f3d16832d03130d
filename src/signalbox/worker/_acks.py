"""Writing the worker's acknowledgements in batches, on a thread of their own.

A delivery whose receiver returned is marked completed by one ``UPDATE`` per
batch: whatever finished while the previous batch was being written goes in
the next, so an idle worker acknowledges at once and a busy one amortises a
round trip (and a commit) over many deliveries. Until its acknowledgement is
written a delivery stays leased to the worker, whose heartbeat keeps the
lease alive; if the worker dies first, the lease expires and the delivery
runs again, which at-least-once delivery allows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import connections
from django.utils.translation import ngettext

from signalbox import outbox

logger = logging.getLogger("signalbox.worker")

Written = Callable[[list[outbox.Claimed], set[int]], None]
"""Told each written batch and the ids whose lease still held."""


class Acknowledger(threading.Thread):
    """Marks completed the deliveries handed to :meth:`add`, many at a time.

    ``written`` is called after each batch with the batch and the ids the
    update applied to; the others had lost their lease. A batch that cannot
    be written (the database went away) is tried again on a fresh
    connection until :meth:`close`; what is still unwritten then is left to
    the leases.
    """

    def __init__(self, using: str, written: Written, prepare: Callable[[], None]):
        super().__init__(name="signalbox-acks", daemon=True)
        self.using = using
        self._written = written
        self._prepare = prepare
        self._pending: list[outbox.Claimed] = []
        self._writing = 0
        self._closed = False
        self._changed = threading.Condition()

    def add(self, claimed: outbox.Claimed) -> None:
        """Queue ``claimed`` for acknowledgement; returns at once."""
        with self._changed:
            self._pending.append(claimed)
            self._changed.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written; False on timeout."""
        with self._changed:
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
            self._changed.wait_for(lambda: self._pending or self._closed)
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
                    if self._closed:
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
