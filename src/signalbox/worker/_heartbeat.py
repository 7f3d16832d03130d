"""The embedded worker's heartbeat: a thread that keeps its leases and its
record alive, takes back what dead processes held, and buries rows nobody
can run. Each chore logs its errors and the next beat tries again: the
heartbeat never dies, and never stops because the database restarted (an
outage is logged once: see :mod:`signalbox._outage`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.db import connections

from signalbox import _connections, _outage, outbox
from signalbox.worker._housekeeping import bury_unknown, rescue_expired, rescue_gone

if TYPE_CHECKING:
    from signalbox.worker._embedded import Worker

logger = logging.getLogger("signalbox.worker")

GONE_EVERY = 1.0
"""How often, in seconds, a worker on PostgreSQL looks for workers whose
process is gone (their liveness lock free), to take back their rows."""

BURY_EVERY = 60.0
"""How often, in seconds, a worker buries rows whose receiver nobody knows."""


class Heartbeat(threading.Thread):
    """Beats every third of a lease (extend the leases, record the worker,
    rescue expired leases), and between beats looks for workers that are
    gone, every :data:`GONE_EVERY`. :meth:`beat_now` has it beat at once;
    :meth:`finish` ends it."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(name="signalbox-heartbeat", daemon=True)
        self.worker = worker
        self._beat = threading.Event()
        self._done = threading.Event()

    def beat_now(self) -> None:
        """Beat now rather than at the next third of a lease."""
        self._beat.set()

    def finish(self) -> None:
        """Stop beating; the thread ends soon after."""
        self._done.set()
        self._beat.set()

    def run(self) -> None:
        worker = self.worker
        interval = max(worker.settings.lease.total_seconds() / 3, 0.05)
        tick = min(interval, GONE_EVERY)
        last_beat = last_bury = -float("inf")
        while not self._done.is_set():
            if self._beat.is_set() or time.monotonic() - last_beat >= interval:
                self._beat.clear()
                last_beat = time.monotonic()
                for task in (self._extend, worker.rescue):
                    worker.guarded(task)
            else:
                worker.guarded(self._rescue_gone)
            if time.monotonic() - last_bury > BURY_EVERY:
                worker.guarded(self._bury_unknown)
                last_bury = time.monotonic()
            self._beat.wait(tick)
        connections.close_all()  # this thread's, before it ends

    def _extend(self) -> None:
        worker = self.worker
        worker.leases.extend()
        outbox.heartbeat(
            worker.name,
            worker.queues,
            sorted(worker.receivers),
            using=worker.using,
            liveness_key=worker.liveness.key if self._keep_liveness() else None,
        )

    def _keep_liveness(self) -> bool:
        """Whether the worker holds its liveness lock (taken again if its
        connection was lost): only on PostgreSQL, and not in burst mode."""
        worker = self.worker
        if connections[worker.using].vendor != "postgresql" or worker.burst:
            return False
        try:
            return worker.liveness.keep()
        except Exception as error:  # the record says none; the next beat tries
            if not _outage.lost(
                error, using=worker.using, affected="liveness lock", log=logger
            ):
                logger.warning("Could not hold the liveness lock: %s", error)
            return False

    def _rescue_gone(self) -> None:
        if rescue_gone(using=self.worker.using, itself=self.worker.name, log=logger):
            self.worker.wake.set()

    def _bury_unknown(self) -> None:
        bury_unknown(
            using=self.worker.using,
            known_here=self.worker.receivers,
            engines=self.worker.engines,
            log=logger,
            who="worker",
        )


def rescue(worker: Worker) -> None:
    """Take back expired leases and the rows of workers that are gone, and
    wake ``worker`` if there were any."""
    if rescue_expired(using=worker.using, log=logger):
        worker.wake.set()
    if rescue_gone(using=worker.using, itself=worker.name, log=logger):
        worker.wake.set()


def guarded(
    task: Callable[[], object], *, site: _outage.Site, prepare: Callable[[], None]
) -> None:
    """Run ``task`` (after ``prepare``) on ``site``'s database; report what it
    raises to ``site`` (a lost connection once per outage, anything else at
    ERROR), close the connection it broke, and return: the next beat tries
    again."""
    try:
        prepare()
        task()
    except Exception as error:  # logged; the next beat tries again
        site.failed(error, "Worker housekeeping (%s) failed.", task.__name__)
        connections[site.using].close()
    else:
        site.ok()
    finally:
        _connections.tidy()
