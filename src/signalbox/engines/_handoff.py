"""Handing committed deliveries to their engines, on a thread of the sender's process.

A commit's ``on_commit`` hook only appends to this process's queue, so a send
never waits for a broker, and a broker that is down can neither raise into
the request nor hang it. The thread publishes what has gathered, engine by
engine, then marks the rows handed over. A failed publish is logged and
dropped: the rows stay in the outbox, and the relay hands them over later.
The thread is started on first use in each process (a worker forked after
that starts its own).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Sequence

from django.db import connections

from signalbox import _connections, engines, outbox

logger = logging.getLogger("signalbox.engines")


def publish(handovers: Sequence[outbox.Handover]) -> list[outbox.Handover]:
    """Give ``handovers`` to their engines and mark the ones taken; return those.

    An engine that fails is logged, and its rows are left for the relay. Used
    by the hand-over thread and by the relay alike.
    """
    by_engine: dict[str, list[outbox.Handover]] = defaultdict(list)
    for each in handovers:
        by_engine[each.engine].append(each)
    taken: list[outbox.Handover] = []
    for alias, group in by_engine.items():
        try:
            engines.get(alias).publish(group)
        except Exception as error:  # the rows stay; the relay hands them over
            logger.warning(
                "Engine %r did not take %d deliveries (%s: %s); they stay in "
                "the outbox for `signalbox relay`.",
                alias,
                len(group),
                type(error).__name__,
                error,
            )
            continue
        taken += group
    _mark(taken)
    return taken


def _mark(taken: Sequence[outbox.Handover]) -> None:
    by_database: dict[str, list[outbox.Handover]] = defaultdict(list)
    for each in taken:
        by_database[each.using].append(each)
    for using, ids in by_database.items():
        try:
            outbox.mark_handed_over(ids, using=using)
        except Exception as error:  # unmarked rows are handed over again, harmlessly
            logger.warning(
                "Could not mark %d deliveries handed over: %s", len(ids), error
            )
            connections[using].close()


class Publisher:
    """This process's hand-over thread and the queue that feeds it."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._pending: list[outbox.Handover] = []
        self._busy = False
        self._pid = -1

    def submit(self, handovers: Sequence[outbox.Handover]) -> None:
        """Queue ``handovers``; returns at once."""
        with self._changed:
            if self._pid != os.getpid():
                self._start()
            self._pending.extend(handovers)
            self._changed.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far was handed over (or dropped)."""
        with self._changed:
            return self._changed.wait_for(
                lambda: not self._pending and not self._busy, timeout
            )

    def _start(self) -> None:
        # A forked child inherits the queue but not the thread: start afresh.
        self._pending, self._busy, self._pid = [], False, os.getpid()
        threading.Thread(
            target=self._run, name="signalbox-handoff", daemon=True
        ).start()

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._pending))
                batch, self._pending, self._busy = self._pending, [], True
            try:
                publish(batch)
            except Exception:  # never let the thread die; the relay has the rows
                logger.exception("Handing over %d deliveries failed.", len(batch))
            finally:
                with self._changed:
                    idle = not self._pending
                # Handed over in bursts, from a web process: keep the
                # connection while busy, give it back when idle.
                if idle:
                    connections.close_all()
                else:
                    _connections.tidy()
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()


publisher = Publisher()
"""The one hand-over thread of this process."""


@atexit.register
def _flush_at_exit() -> None:
    # A process that exits right after a commit (a script, a test run) gets
    # two seconds to hand over; whatever is left, the relay hands over.
    if publisher._pid == os.getpid():
        publisher.flush(2.0)
