"""The embedded worker: ``python manage.py signalbox worker``.

A :class:`Worker` claims due deliveries in batches (leased to it, under a
token), runs them on a pool of threads (coroutine receivers on one event
loop), keeps their leases alive while they run, and records each outcome.
It wakes on PostgreSQL's ``NOTIFY`` and otherwise polls. The first SIGTERM or
SIGINT stops claiming, lets running deliveries finish within the grace
period, gives back the rest without spending their attempts, and exits 0; a
second one exits at once (leases bring back whatever was held).

Background loops (heartbeat, lease rescue, listener) log their errors and go
on: a worker never dies silently, and never stops because the database
restarted.
"""

from __future__ import annotations

import _thread
import asyncio
import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.db import DEFAULT_DB_ALIAS, connections

from signalbox import conf, outbox, registry
from signalbox.worker._listen import Listener
from signalbox.worker._run import Outcome, run_delivery

__all__ = ["Outcome", "Worker", "run_delivery"]

logger = logging.getLogger("signalbox.worker")


@dataclass
class Counts:
    """What a worker has done so far, by outcome."""

    by_outcome: dict[Outcome, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_outcome.values())


class Worker:
    """Runs background receivers from the outbox until told to stop.

    ``queues`` limits the queues it claims from; ``concurrency`` is how many
    deliveries run at once; ``burst`` makes :meth:`run` return once nothing is
    due and nothing runs; ``max_deliveries`` makes it stop after that many.
    """

    def __init__(
        self,
        *,
        queues: Sequence[str] = ("default",),
        concurrency: int = 4,
        burst: bool = False,
        max_deliveries: int | None = None,
        using: str = DEFAULT_DB_ALIAS,
        name: str | None = None,
    ) -> None:
        self.queues = list(queues)
        self.concurrency = concurrency
        self.burst = burst
        self.max_deliveries = max_deliveries
        self.using = using
        self.name = (
            name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self.settings = conf.get()
        self.counts = Counts()
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._work: queue.Queue[outbox.Claimed | None] = queue.Queue()
        self._held: dict[int, outbox.Claimed] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._done = threading.Event()
        self._receivers = registry.registry.background()

    # -- the main loop --------------------------------------------------------

    def run(self) -> Counts:
        """Work until stopped (or, in burst mode, until nothing is due)."""
        self._guarded(self._rescue)  # before the first claim: burst mode needs it
        threads = self._start_threads()
        logger.info(
            "Worker %s runs %d receivers on queues %s, %d at a time.",
            self.name,
            len(self._receivers),
            ",".join(self.queues),
            self.concurrency,
        )
        try:
            while not self.stopping.is_set():
                if not self._step():
                    break
        finally:
            self._shut_down(threads)
        return self.counts

    def stop(self) -> None:
        """Stop claiming; :meth:`run` then drains and returns."""
        self.stopping.set()
        self._wake.set()

    def _step(self) -> bool:
        """Claim what fits, then wait for work or a wake-up; False when done."""
        free = self.concurrency - len(self._held)
        if self.max_deliveries is not None:
            free = min(free, self.max_deliveries - self.counts.total - len(self._held))
        claimed: list[outbox.Claimed] = []
        if free > 0:
            # Cleared before the claim, so a NOTIFY that lands during the
            # query still wakes the wait below.
            self._wake.clear()
            claimed = self._claim(free)
            for each in claimed:
                self._held[each.id] = each
                self._work.put(each)
        if self._finished():
            return False
        if len(claimed) < free or free <= 0:
            self._wake.wait(self.settings.poll.total_seconds())
        return True

    def _finished(self) -> bool:
        if self.max_deliveries is not None and self.counts.total >= self.max_deliveries:
            return True
        return self.burst and not self._held and not self._due()

    def _due(self) -> bool:
        try:
            return outbox.due_for(self.queues, list(self._receivers), using=self.using)
        except Exception:  # the database went away: say "maybe", look again
            connections[self.using].close()
            return True

    def _claim(self, limit: int) -> list[outbox.Claimed]:
        try:
            return outbox.claim(
                worker=self.name,
                queues=self.queues,
                receivers=list(self._receivers),
                limit=limit,
                lease=self.settings.lease,
                using=self.using,
            )
        except Exception as error:  # the database went away: reconnect, go on
            logger.warning("Claiming failed (%s); retrying.", error)
            connections[self.using].close()
            self.stopping.wait(1.0)
            return []

    # -- running deliveries ---------------------------------------------------

    def _run_pool(self) -> None:
        while True:
            claimed = self._work.get()
            if claimed is None:
                connections.close_all()  # this thread's, before it ends
                return
            outcome = self._run_one(claimed)
            with self._lock:
                self._held.pop(claimed.id, None)
                if outcome is not None:
                    self.counts.by_outcome[outcome] = (
                        self.counts.by_outcome.get(outcome, 0) + 1
                    )
            self._wake.set()

    def _run_one(self, claimed: outbox.Claimed) -> Outcome | None:
        try:
            return run_delivery(
                claimed, self._receivers, using=self.using, call=self._call
            )
        except Exception:  # recording the outcome failed; the lease brings it back
            logger.exception("Delivery %s: could not record its outcome.", claimed.id)
            connections[self.using].close()
            return None
        finally:
            _tidy_connections()

    def _call(
        self,
        receiver: Callable[..., Any],
        kwargs: dict[str, Any],
        timeout: timedelta | None,
    ) -> Any:
        if not iscoroutinefunction(receiver):
            return receiver(**kwargs)
        coroutine = receiver(**kwargs)
        if timeout is not None:
            coroutine = asyncio.wait_for(coroutine, timeout.total_seconds())
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    # -- background threads ---------------------------------------------------

    def _start_threads(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(
                target=self._run_pool, name=f"signalbox-run-{n}", daemon=True
            )
            for n in range(self.concurrency)
        ]
        threads.append(
            threading.Thread(
                target=self._loop.run_forever, name="signalbox-loop", daemon=True
            )
        )
        threads.append(
            threading.Thread(
                target=self._keep_alive, name="signalbox-heartbeat", daemon=True
            )
        )
        if connections[self.using].vendor == "postgresql" and not self.burst:
            threads.append(Listener(self.using, self._wake, self.stopping))
        for thread in threads:
            thread.start()
        return threads

    def _keep_alive(self) -> None:
        interval = max(self.settings.lease.total_seconds() / 3, 0.05)
        last_bury = 0.0
        while not self._done.is_set():
            for task in (self._extend, self._rescue):
                self._guarded(task)
            if time.monotonic() - last_bury > 60:
                self._guarded(self._bury_unknown)
                last_bury = time.monotonic()
            if self._done.wait(interval):
                connections.close_all()  # this thread's, before it ends
                return

    def _guarded(self, task: Callable[[], object]) -> None:
        try:
            task()
        except Exception as error:  # logged; the next beat tries again
            logger.warning("Worker housekeeping (%s) failed: %s", task.__name__, error)
            connections[self.using].close()
        finally:
            _tidy_connections()

    def _extend(self) -> None:
        outbox.extend(
            list(self._held.values()), lease=self.settings.lease, using=self.using
        )
        outbox.heartbeat(
            self.name, self.queues, sorted(self._receivers), using=self.using
        )

    def _rescue(self) -> None:
        rescued = outbox.rescue(using=self.using)
        if rescued:
            logger.warning("Took back %d deliveries whose lease expired.", rescued)
            self._wake.set()

    def _bury_unknown(self) -> None:
        known = outbox.known_receivers(
            stale_after=self.settings.lease * 2, using=self.using
        )
        buried = outbox.bury_unknown(
            known=known | set(self._receivers),
            grace=self.settings.unknown_receiver_grace,
            using=self.using,
        )
        if buried:
            logger.error(
                "%d deliveries name receivers no worker knows; marked dead.", buried
            )

    # -- stopping -------------------------------------------------------------

    def _shut_down(self, threads: list[threading.Thread]) -> None:
        self._give_back(self._unstarted(), "not started")
        deadline = time.monotonic() + self.settings.shutdown_grace.total_seconds()
        while self._held and time.monotonic() < deadline:
            self._wake.wait(0.05)
            self._wake.clear()
        self._give_back(
            list(self._held.values()), "still running after the grace period"
        )
        for _ in range(self.concurrency):
            self._work.put(None)
        self._done.set()
        self._loop.call_soon_threadsafe(self._loop.stop)
        for thread in threads:
            if thread.name in ("signalbox-loop", "signalbox-heartbeat"):
                thread.join(timeout=5)
        self._loop.close()
        self._guarded(lambda: outbox.forget_worker(self.name, using=self.using))
        logger.info(
            "Worker %s stopped after %d deliveries.", self.name, self.counts.total
        )

    def _unstarted(self) -> list[outbox.Claimed]:
        unstarted: list[outbox.Claimed] = []
        while True:
            try:
                claimed = self._work.get_nowait()
            except queue.Empty:
                return unstarted
            if claimed is not None:
                unstarted.append(claimed)

    def _give_back(self, claimed: list[outbox.Claimed], why: str) -> None:
        if not claimed:
            return
        try:
            released = outbox.release(claimed, using=self.using)
        except Exception:  # the leases will expire and bring them back
            logger.exception("Could not give back %d deliveries.", len(claimed))
            return
        with self._lock:
            for each in claimed:
                self._held.pop(each.id, None)
        logger.warning("Gave back %d deliveries (%s).", released, why)


def _tidy_connections() -> None:
    """Keep this thread's connections between deliveries, unless one is broken.

    Opening a connection per delivery (what ``close_old_connections()`` does
    with Django's default ``CONN_MAX_AGE = 0``) cost more than the delivery;
    a connection is closed only when an error left it unusable, or a receiver
    left it outside autocommit.
    """
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        broken = connection.errors_occurred and not connection.is_usable()
        if broken or not connection.get_autocommit():
            connection.close()
        else:
            connection.errors_occurred = False


def install_signal_handlers(worker: Worker) -> None:
    """First SIGTERM/SIGINT: stop gracefully. Second: exit at once."""

    def handle(signum: int, frame: object) -> None:
        if worker.stopping.is_set():
            os._exit(1)
        # A handler runs between two bytecodes of the main thread, which may
        # be holding the very lock that Event.set() (and logging) take, say
        # on its way out of _wake.wait(): taking it here would deadlock the
        # worker for good. A thread of its own takes it once the main thread
        # lets go (_thread's start takes no lock the main thread may hold).
        _thread.start_new_thread(_stop, (worker, signum))

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _stop(worker: Worker, signum: int) -> None:
    logger.info(
        "Received %s; finishing running deliveries.", signal.Signals(signum).name
    )
    worker.stop()
