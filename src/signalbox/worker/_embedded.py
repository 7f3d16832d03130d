"""The embedded worker: ``python manage.py signalbox worker``.

A :class:`Worker` claims due deliveries in batches (leased to it, under a
token), runs them on a pool of threads (coroutine receivers on one event
loop), keeps their leases alive while they run (its heartbeat), and records
each outcome. It wakes on PostgreSQL's ``NOTIFY`` and otherwise polls. The
first SIGTERM or SIGINT stops claiming, lets running deliveries finish
within the grace period, gives back the rest without spending their
attempts, and exits 0; a second one exits at once (leases bring back
whatever was held): see :mod:`signalbox.worker._stopping`. A database
outage is a WARNING when it begins and an INFO when it ends, with quiet
retries between (see :mod:`signalbox._outage`).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils.translation import ngettext

from signalbox import _connections, _outage, conf, outbox, registry
from signalbox.worker import _heartbeat, _stopping
from signalbox.worker._acks import Acknowledger
from signalbox.worker._commits import RelaxedCommits
from signalbox.worker._describe import Hint, any_worker, describe
from signalbox.worker._in_transaction import run_in_transaction
from signalbox.worker._leases import Leases
from signalbox.worker._listen import Listener
from signalbox.worker._names import process_name
from signalbox.worker._pace import Pace
from signalbox.worker._run import Call, Outcome, call_on, call_receiver, run_delivery

logger = logging.getLogger("signalbox.worker")

DEFAULT_CONCURRENCY = 8
"""How many deliveries a worker runs at once unless told otherwise: chosen for
receivers that wait on the network (docs/background.md, "Choosing --concurrency")."""


@dataclass
class Counts:
    """What a worker has done so far, by outcome."""

    by_outcome: dict[Outcome, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_outcome.values())


def embedded_aliases() -> list[str]:
    """The aliases of ``SIGNALBOX["ENGINES"]`` whose BACKEND is named as
    signalbox's embedded engine: what a :class:`Worker` serves when its
    caller does not say (the ``signalbox worker`` command always says,
    from the engines it loads)."""
    engines = conf.get().engines
    return [alias for alias, each in engines.items() if each.backend == conf.EMBEDDED]


class Worker:
    """Runs background receivers from the outbox until told to stop.

    ``queues`` limits the queues it claims from; ``concurrency`` is how many
    deliveries run at once; ``burst`` makes :meth:`run` return once nothing is
    due and nothing runs; ``max_deliveries`` makes it stop after that many.
    ``engines`` are the engine aliases whose rows it claims (by default
    :func:`embedded_aliases`); ``hint`` says how to start what runs another
    engine's deliveries, for the lines :meth:`describe` writes.
    """

    def __init__(
        self,
        *,
        queues: Sequence[str] = ("default",),
        concurrency: int = DEFAULT_CONCURRENCY,
        burst: bool = False,
        max_deliveries: int | None = None,
        using: str = DEFAULT_DB_ALIAS,
        name: str | None = None,
        engines: Sequence[str] | None = None,
        hint: Hint = any_worker,
    ) -> None:
        self.queues = list(queues)
        self.concurrency = concurrency
        self.burst = burst
        self.max_deliveries = max_deliveries
        self.using = using
        self.name = name or process_name()
        self.settings = conf.get()
        self.counts = Counts()
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.work: queue.Queue[list[outbox.Claimed] | None] = queue.Queue()
        # Claimed until the outcome is recorded (the heartbeat extends these).
        self.leases = Leases()
        # Claimed and not yet run to an outcome: what occupies the pool.
        self.unfinished = 0
        # Run, with the acknowledgement left to the acknowledger.
        self._acknowledging: set[int] = set()
        # How long a delivery takes, and so how much to claim at once.
        self.pace = Pace(concurrency)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None  # run() makes it
        self._call: Call = call_receiver  # run() calls on its loop instead
        self._heartbeat = _heartbeat.Heartbeat(self)
        # The advisory lock this worker holds while it lives, on PostgreSQL
        # and not in burst mode: see signalbox.outbox._liveness.
        self.liveness = outbox.LivenessLock(using, outbox.liveness_key(self.name))
        self.receivers = registry.registry.background()
        # The aliases whose rows this worker claims.
        self.engines = list(embedded_aliases() if engines is None else engines)
        self._hint = hint
        self.commits = RelaxedCommits(using, durable=self.settings.synchronous_acks)
        self._bookkeeping = self.commits.relax
        self._acks = Acknowledger(using, self._acknowledged, self._bookkeeping)
        self._claims = _outage.Site(using, "claims", logger)
        self._housekeeping = _outage.Site(using, "heartbeat and rescue", logger)

    # -- the main loop --------------------------------------------------------

    def run(self) -> Counts:
        """Work until stopped (or, in burst mode, until nothing is due).

        Called inside an ``atomic()`` block on its database (a
        ``django.test.TestCase``, say), the worker works in that transaction
        instead: see :func:`~signalbox.worker._in_transaction.run_in_transaction`.
        """
        if connections[self.using].in_atomic_block:
            return run_in_transaction(self)
        self.guarded(self.rescue)  # before the first claim: burst mode needs it
        threads = self._start_threads()
        for line in self.describe():
            logger.info("%s", line)
        try:
            while not self.stopping.is_set():
                if not self._step():
                    break
        finally:
            _stopping.shut_down(self, threads)
        return self.counts

    def describe(self) -> list[str]:
        """What this worker runs, and which receivers it leaves to other
        engines with how to run them: the lines :meth:`run` logs first."""
        return describe(
            name=self.name,
            receivers=self.receivers,
            engines=self.engines,
            queues=self.queues,
            concurrency=self.concurrency,
            hint=self._hint,
        )

    def stop(self) -> None:
        """Stop claiming; :meth:`run` then drains and returns."""
        self.stopping.set()
        self.wake.set()

    def _step(self) -> bool:
        """Claim what fits, then wait for work or a wake-up; False when done."""
        # Cleared before looking, so a NOTIFY or a completion that lands
        # while this looks (or during the claim query) still ends the wait.
        self.wake.clear()
        capacity = self.pace.capacity()
        free = self.free(capacity)
        claimed: list[outbox.Claimed] = []
        # A claim costs a round trip whatever it takes, so while the pool is
        # busy it waits until half of its capacity is free, and takes that
        # many at once.
        if free > 0 and (free * 2 >= capacity or not self.unfinished):
            claimed = self._claim(free)
            with self._lock:
                self.leases.hold_all(claimed, self.using)
                self.unfinished += len(claimed)
            for chunk in self.pace.chunks(claimed):
                self.work.put(chunk)
        if self._finished():
            return False
        if len(claimed) < free or not claimed:
            self.wake.wait(self.settings.poll.total_seconds())
        return True

    def free(self, capacity: int) -> int:
        """How many more deliveries may be claimed now, of ``capacity``."""
        free = capacity - self.unfinished
        if self.max_deliveries is not None:
            # Under the lock: a delivery let go is counted in the same breath.
            with self._lock:
                done = self.counts.total + len(self.leases)
            free = min(free, self.max_deliveries - done)
        return free

    def _finished(self) -> bool:
        if self.max_deliveries is not None and self.counts.total >= self.max_deliveries:
            return True
        return self.burst and not len(self.leases) and not self._due()

    def _due(self) -> bool:
        try:
            self._bookkeeping()
            return outbox.due_for(
                self.queues,
                list(self.receivers),
                using=self.using,
                engines=self.engines,
            )
        except Exception:  # the database went away: say "maybe", look again
            connections[self.using].close()
            return True

    def _claim(self, limit: int) -> list[outbox.Claimed]:
        try:
            self._bookkeeping()
            claimed = outbox.claim(
                worker=self.name,
                queues=self.queues,
                receivers=list(self.receivers),
                limit=limit,
                lease=self.settings.lease,
                using=self.using,
                engines=self.engines,
            )
        except Exception as error:  # the database went away: reconnect, go on
            pause = self._claims.failed(error, "Claiming failed; retrying.")
            connections[self.using].close()
            # The listener sets wake once it is connected again (and stop()).
            self.wake.wait(pause)
            return []
        self._claims.ok()
        return claimed

    # -- running deliveries ---------------------------------------------------

    def _run_pool(self) -> None:
        while True:
            chunk = self.work.get()
            if chunk is None:
                connections.close_all()  # this thread's, before it ends
                return
            # A piece of several rows is one of fast deliveries: it is run
            # to its end (it counts as started), shutting down or not.
            for claimed in chunk:
                self._run_timed(claimed)

    def _run_timed(self, claimed: outbox.Claimed) -> None:
        """Run one delivery, note how long it took, and count it."""
        started = time.perf_counter_ns()
        outcome = self._run_one(claimed)
        took = time.perf_counter_ns() - started
        with self._lock:
            self.pace.note(took)
            self.unfinished -= 1
            if claimed.id in self._acknowledging:
                self._acknowledging.discard(claimed.id)  # counted once written
            else:
                self.leases.let_go(claimed)
                self.count(outcome, 1)
            wake = self._loop_waits_for_this()
        if wake:
            self.wake.set()

    def _loop_waits_for_this(self) -> bool:
        """Whether the main loop must look again now that a delivery finished.

        Only when it would act on it: claim (half the capacity is free), see
        the pool empty (burst mode's end, the shutdown's drain), or count
        towards ``max_deliveries``. Waking it after every delivery cost a
        thread switch per delivery, the most expensive thing a fast receiver
        did. Called under ``_lock``.
        """
        if not self.unfinished or self.max_deliveries is not None:
            return True
        return self.pace.worth_claiming(self.unfinished)

    def count(self, outcome: Outcome | None, number: int) -> None:
        """Add ``number`` deliveries to those with ``outcome`` (None: none)."""
        if outcome is not None and number:
            self.counts.by_outcome[outcome] = (
                self.counts.by_outcome.get(outcome, 0) + number
            )

    def _acknowledge(self, claimed: outbox.Claimed) -> None:
        with self._lock:
            self._acknowledging.add(claimed.id)
        self._acks.add(claimed)

    def _acknowledged(self, batch: list[outbox.Claimed], applied: set[int]) -> None:
        with self._lock:
            for each in batch:
                self.leases.let_go(each)
            self.count(Outcome.COMPLETED, len(applied))
            self.count(Outcome.LEASE_LOST, len(batch) - len(applied))
        if len(applied) < len(batch):
            lost = len(batch) - len(applied)
            logger.warning(
                ngettext(
                    "%d completed delivery had lost its lease; another worker "
                    "runs it again.",
                    "%d completed deliveries had lost their lease; another worker "
                    "runs them again.",
                    lost,
                ),
                lost,
            )
        self.wake.set()

    def _run_one(self, claimed: outbox.Claimed) -> Outcome | None:
        try:
            _outage.recheck(self.using)
            return run_delivery(
                claimed,
                self.receivers,
                using=self.using,
                call=self._call,
                acknowledge=self._acknowledge,
            )
        except Exception as error:  # recording it failed; the lease brings it back
            if not _outage.lost(
                error, using=self.using, affected="recording outcomes", log=logger
            ):
                logger.exception(
                    "Delivery %s: could not record its outcome.", claimed.id
                )
            connections[self.using].close()
            return None
        finally:
            _connections.tidy()

    # -- background threads ---------------------------------------------------

    def _start_threads(self) -> list[threading.Thread]:
        self._loop = asyncio.new_event_loop()
        self._call = call_on(self._loop)
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
        threads.append(self._heartbeat)
        if connections[self.using].vendor == "postgresql" and not self.burst:
            threads.append(Listener(self.using, self.wake, self.stopping))
        threads.append(self._acks)
        for thread in threads:
            thread.start()
        return threads

    def guarded(self, task: Callable[[], object]) -> None:
        """Run a housekeeping ``task``; log what it raises and go on."""
        _heartbeat.guarded(task, site=self._housekeeping, prepare=self._bookkeeping)

    def rescue(self) -> None:
        """Take back expired leases and dead workers' rows; wake if any."""
        _heartbeat.rescue(self)

    # -- stopping (the sequence is _stopping.shut_down's) ---------------------

    def forget_unfinished(self, number: int) -> None:
        """``number`` claimed deliveries will not run here after all."""
        with self._lock:
            self.unfinished -= number

    def end_acknowledging(self) -> list[outbox.Claimed]:
        """Write the acknowledgements still queued and stop writing them;
        the claims still held that were not acknowledged: still running."""
        self._acks.close()
        with self._lock:
            return [
                each
                for each in self.leases.claims()
                if each.id not in self._acknowledging
            ]

    def end_threads(self) -> asyncio.AbstractEventLoop:
        """Tell the pool, the heartbeat and the event loop to end; the loop."""
        for _ in range(self.concurrency):
            self.work.put(None)
        self._heartbeat.finish()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        return self._loop
