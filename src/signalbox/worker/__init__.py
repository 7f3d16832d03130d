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
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils.translation import ngettext

from signalbox import _connections, conf, engines, outbox, registry
from signalbox.exceptions import ConfigurationError
from signalbox.policy import Policy
from signalbox.worker._acks import Acknowledger
from signalbox.worker._listen import Listener
from signalbox.worker._run import Outcome, call_receiver, run_delivery

__all__ = ["DEFAULT_CONCURRENCY", "Outcome", "Worker", "run_delivery"]

logger = logging.getLogger("signalbox.worker")

DEFAULT_CONCURRENCY = 8
"""How many deliveries a worker runs at once unless told otherwise: chosen for
receivers that wait on the network (docs/background.md, "Choosing --concurrency")."""

_FAST_NS = 10_000_000
"""Deliveries that take less than this (on average) are claimed ahead."""

_AHEAD_NS = 20_000_000
"""How long, at most, a row claimed ahead should wait for a free thread."""

_MOST_AHEAD = 200
"""The most rows claimed ahead of the pool: a claim then takes about half."""

_HAND_OFF_NS = 1_000_000
"""About how much work one hand-over to a pool thread carries (see _chunks)."""

_GONE_EVERY = 1.0
"""How often, in seconds, a worker on PostgreSQL looks for workers whose
process is gone (their liveness lock free), to take back their rows."""


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
        concurrency: int = DEFAULT_CONCURRENCY,
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
        self._work: queue.Queue[list[outbox.Claimed] | None] = queue.Queue()
        # Claimed until the outcome is recorded (the heartbeat extends these).
        self._held: dict[int, outbox.Claimed] = {}
        # Claimed and not yet run to an outcome: what occupies the pool.
        self._unfinished = 0
        # Run, with the acknowledgement left to the acknowledger.
        self._acknowledging: set[int] = set()
        # A moving average of how long a delivery takes; unknown at first.
        self._pace_ns = _FAST_NS
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None  # run() makes it
        self._done = threading.Event()
        # Set to have the heartbeat thread beat now (and when it must end).
        self._beat = threading.Event()
        # The advisory lock this worker holds while it lives, on PostgreSQL
        # and not in burst mode: see signalbox.outbox._liveness.
        self._liveness = outbox.LivenessLock(using, outbox.liveness_key(self.name))
        self._receivers = registry.registry.background()
        # The aliases whose rows this worker claims: the embedded engine's.
        self._engines = engines.aliases(embedded=True)
        self._acks = Acknowledger(using, self._acknowledged, self._bookkeeping)
        self._relaxed: weakref.WeakSet[Any] = weakref.WeakSet()

    # -- the main loop --------------------------------------------------------

    def run(self) -> Counts:
        """Work until stopped (or, in burst mode, until nothing is due).

        Called inside an ``atomic()`` block on its database (a
        ``django.test.TestCase``, say), the worker works in that transaction
        instead: see :meth:`_run_in_transaction`.
        """
        if connections[self.using].in_atomic_block:
            return self._run_in_transaction()
        self._guarded(self._rescue)  # before the first claim: burst mode needs it
        threads = self._start_threads()
        for line in self.describe():
            logger.info("%s", line)
        try:
            while not self.stopping.is_set():
                if not self._step():
                    break
        finally:
            self._shut_down(threads)
        return self.counts

    def _run_in_transaction(self) -> Counts:
        """Run deliveries one at a time on this thread, in its open transaction.

        The rows that transaction wrote (and the claims it makes) are seen by
        its own connection only: the worker's threads, each on a connection
        of its own, would find no row to acknowledge (PostgreSQL), or wait
        for the caller's write lock forever (SQLite). So everything happens
        here, on the caller's connection: each claim, each run, each outcome
        under the claim's lease token as always, and each receiver in a
        savepoint, so a receiver's database error cannot break the caller's
        transaction. No heartbeat is needed: no other worker can claim what
        this uncommitted transaction holds. Errors reach the caller, whose
        transaction they concern.
        """
        logger.info(
            "Worker %s runs %s on queues %s in the caller's transaction, one "
            "at a time.",
            self.name,
            _receivers(len(self._receivers)),
            ",".join(self.queues),
        )
        self._rescue()
        while not self.stopping.is_set():
            claimed = outbox.claim(
                worker=self.name,
                queues=self.queues,
                receivers=list(self._receivers),
                limit=max(self._free(self.concurrency), 0),
                lease=self.settings.lease,
                using=self.using,
                engines=self._engines,
            )
            for each in claimed:
                outcome = run_delivery(
                    each, self._receivers, using=self.using, call=self._in_savepoint
                )
                self._count(outcome, 1)
            if self._finished_in_transaction():
                break
            if not claimed:
                self._wake.wait(self.settings.poll.total_seconds())
        logger.info(
            "Worker %s stopped after %d deliveries.", self.name, self.counts.total
        )
        return self.counts

    def _finished_in_transaction(self) -> bool:
        if self.max_deliveries is not None and self.counts.total >= self.max_deliveries:
            return True
        return self.burst and not outbox.due_for(
            self.queues, list(self._receivers), using=self.using, engines=self._engines
        )

    def _in_savepoint(
        self,
        receiver: Callable[..., Any],
        kwargs: dict[str, Any],
        timeout: timedelta | None,
    ) -> Any:
        with transaction.atomic(using=self.using):
            return call_receiver(receiver, kwargs, timeout)

    def describe(self) -> list[str]:
        """What this worker runs, and which receivers it leaves to other
        engines with how to run them: the lines :meth:`run` logs first."""
        keys, queues = _by_engine(self._receivers)
        mine = {key for alias in self._engines for key in keys.get(alias, ())}
        lines = [
            f"Worker {self.name} runs {_receivers(len(mine))} of engine "
            f"{', '.join(map(repr, self._engines))} on queues "
            f"{','.join(self.queues)}, {self.concurrency} at a time."
            if self._engines
            else f"Worker {self.name} runs no receivers: no engine in "
            f"SIGNALBOX['ENGINES'] is the embedded worker."
        ]
        for alias in sorted(keys.keys() - set(self._engines)):
            count = len(keys[alias])
            handed = ngettext(
                "%s is handed to engine %r, not run by this worker",
                "%s are handed to engine %r, not run by this worker",
                count,
            ) % (_receivers(count), alias)
            lines.append(
                f"{handed}: start {_hint(alias, sorted(queues[alias]))}, and "
                f"`manage.py signalbox relay` for their retries and delays."
            )
        return lines

    def stop(self) -> None:
        """Stop claiming; :meth:`run` then drains and returns."""
        self.stopping.set()
        self._wake.set()

    def _step(self) -> bool:
        """Claim what fits, then wait for work or a wake-up; False when done."""
        # Cleared before looking, so a NOTIFY or a completion that lands
        # while this looks (or during the claim query) still ends the wait.
        self._wake.clear()
        capacity = self._capacity()
        free = self._free(capacity)
        claimed: list[outbox.Claimed] = []
        # A claim costs a round trip whatever it takes, so while the pool is
        # busy it waits until half of its capacity is free, and takes that
        # many at once.
        if free > 0 and (free * 2 >= capacity or not self._unfinished):
            claimed = self._claim(free)
            with self._lock:
                for each in claimed:
                    self._held[each.id] = each
                self._unfinished += len(claimed)
            for chunk in self._chunks(claimed):
                self._work.put(chunk)
        if self._finished():
            return False
        if len(claimed) < free or not claimed:
            self._wake.wait(self.settings.poll.total_seconds())
        return True

    def _chunks(self, claimed: list[outbox.Claimed]) -> list[list[outbox.Claimed]]:
        """``claimed`` cut into the pieces one pool thread takes at a time.

        One row each, unless deliveries finish in well under a millisecond:
        then each piece carries about ``_HAND_OFF_NS`` of work (and no more
        than an even share of the claim). A hand-over wakes a thread, which
        then fights the others for the GIL: for a fast receiver that cost
        more than the delivery, and more the more threads the pool has.
        """
        share = -(-len(claimed) // self.concurrency)  # rounded up
        size = max(min(_HAND_OFF_NS // max(self._pace_ns, 1), share), 1)
        return [claimed[n : n + size] for n in range(0, len(claimed), size)]

    def _capacity(self) -> int:
        """How many deliveries may be claimed and not yet finished.

        The pool's size, and more while deliveries finish within
        ``_FAST_NS``: as many as the pool runs in ``_AHEAD_NS`` at the pace
        seen so far (at least its size again, at most ``_MOST_AHEAD``). A
        claim costs a round trip and a statement whatever it takes, so fast
        receivers are fed by few large claims, and the rows claimed ahead
        wait only moments. Slow receivers get no rows claimed ahead, so an
        idle worker elsewhere takes them instead.
        """
        if self._pace_ns >= _FAST_NS:
            return self.concurrency
        ahead = self.concurrency * _AHEAD_NS // max(self._pace_ns, 1)
        return self.concurrency + min(max(ahead, self.concurrency), _MOST_AHEAD)

    def _free(self, capacity: int) -> int:
        free = capacity - self._unfinished
        if self.max_deliveries is not None:
            left = self.max_deliveries - self.counts.total - len(self._held)
            free = min(free, left)
        return free

    def _finished(self) -> bool:
        if self.max_deliveries is not None and self.counts.total >= self.max_deliveries:
            return True
        return self.burst and not self._held and not self._due()

    def _due(self) -> bool:
        try:
            self._bookkeeping()
            return outbox.due_for(
                self.queues,
                list(self._receivers),
                using=self.using,
                engines=self._engines,
            )
        except Exception:  # the database went away: say "maybe", look again
            connections[self.using].close()
            return True

    def _bookkeeping(self) -> None:
        """Let this thread's connection commit without waiting for the disk.

        Only the worker's own threads (claims, acknowledgements, heartbeat)
        call this, never the threads that run receivers: a database crash
        may then forget a claim or an acknowledgement, which only makes a
        delivery run again. ``SYNCHRONOUS_ACKS`` turns it off.
        """
        connection = connections[self.using]
        if connection.vendor != "postgresql" or self.settings.synchronous_acks:
            return
        connection.ensure_connection()
        raw = connection.connection
        if raw in self._relaxed:
            return
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")
        self._relaxed.add(raw)

    def _claim(self, limit: int) -> list[outbox.Claimed]:
        try:
            self._bookkeeping()
            return outbox.claim(
                worker=self.name,
                queues=self.queues,
                receivers=list(self._receivers),
                limit=limit,
                lease=self.settings.lease,
                using=self.using,
                engines=self._engines,
            )
        except Exception as error:  # the database went away: reconnect, go on
            logger.warning("Claiming failed (%s); retrying.", error)
            connections[self.using].close()
            self.stopping.wait(1.0)
            return []

    # -- running deliveries ---------------------------------------------------

    def _run_pool(self) -> None:
        while True:
            chunk = self._work.get()
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
            self._pace_ns += (took - self._pace_ns) // 8
            self._unfinished -= 1
            if claimed.id in self._acknowledging:
                self._acknowledging.discard(claimed.id)  # counted once written
            else:
                self._held.pop(claimed.id, None)
                self._count(outcome, 1)
            wake = self._loop_waits_for_this()
        if wake:
            self._wake.set()

    def _loop_waits_for_this(self) -> bool:
        """Whether the main loop must look again now that a delivery finished.

        Only when it would act on it: claim (half the capacity is free), see
        the pool empty (burst mode's end, the shutdown's drain), or count
        towards ``max_deliveries``. Waking it after every delivery cost a
        thread switch per delivery, the most expensive thing a fast receiver
        did. Called under ``_lock``.
        """
        if not self._unfinished or self.max_deliveries is not None:
            return True
        capacity = self._capacity()
        return (capacity - self._unfinished) * 2 >= capacity

    def _count(self, outcome: Outcome | None, number: int) -> None:
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
                self._held.pop(each.id, None)
            self._count(Outcome.COMPLETED, len(applied))
            self._count(Outcome.LEASE_LOST, len(batch) - len(applied))
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
        self._wake.set()

    def _run_one(self, claimed: outbox.Claimed) -> Outcome | None:
        try:
            return run_delivery(
                claimed,
                self._receivers,
                using=self.using,
                call=self._call,
                acknowledge=self._acknowledge,
            )
        except Exception:  # recording the outcome failed; the lease brings it back
            logger.exception("Delivery %s: could not record its outcome.", claimed.id)
            connections[self.using].close()
            return None
        finally:
            _connections.tidy()

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
        assert self._loop is not None  # run() made it before the pool started
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    # -- background threads ---------------------------------------------------

    def _start_threads(self) -> list[threading.Thread]:
        self._loop = asyncio.new_event_loop()
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
        threads.append(self._acks)
        for thread in threads:
            thread.start()
        return threads

    def _keep_alive(self) -> None:
        """Beat every third of a lease (extend, record, rescue), and between
        beats look for workers that are gone, every :data:`_GONE_EVERY`."""
        interval = max(self.settings.lease.total_seconds() / 3, 0.05)
        tick = min(interval, _GONE_EVERY)
        last_beat = last_bury = -float("inf")
        while not self._done.is_set():
            if self._beat.is_set() or time.monotonic() - last_beat >= interval:
                self._beat.clear()
                last_beat = time.monotonic()
                for task in (self._extend, self._rescue):
                    self._guarded(task)
            else:
                self._guarded(self._rescue_gone)
            if time.monotonic() - last_bury > 60:
                self._guarded(self._bury_unknown)
                last_bury = time.monotonic()
            self._beat.wait(tick)
        connections.close_all()  # this thread's, before it ends

    def _guarded(self, task: Callable[[], object]) -> None:
        try:
            self._bookkeeping()
            task()
        except Exception as error:  # logged; the next beat tries again
            logger.warning("Worker housekeeping (%s) failed: %s", task.__name__, error)
            connections[self.using].close()
        finally:
            _connections.tidy()

    def _extend(self) -> None:
        outbox.extend(
            list(self._held.values()), lease=self.settings.lease, using=self.using
        )
        outbox.heartbeat(
            self.name,
            self.queues,
            sorted(self._receivers),
            using=self.using,
            liveness_key=self._liveness.key if self._keep_liveness() else None,
        )

    def _rescue(self) -> None:
        if rescue_expired(using=self.using, log=logger):
            self._wake.set()
        self._rescue_gone()

    def _keep_liveness(self) -> bool:
        """Whether this worker holds its liveness lock (taken again if its
        connection was lost): only on PostgreSQL, and not in burst mode."""
        if connections[self.using].vendor != "postgresql" or self.burst:
            return False
        try:
            return self._liveness.keep()
        except Exception as error:  # the record says none; the next beat tries
            logger.warning("Could not hold the liveness lock: %s", error)
            return False

    def _rescue_gone(self) -> None:
        rescued = outbox.rescue_gone(using=self.using, itself=self.name)
        if rescued:
            logger.warning(
                ngettext(
                    "Took back %d delivery from a worker whose process is gone.",
                    "Took back %d deliveries from a worker whose process is gone.",
                    rescued,
                ),
                rescued,
            )
            self._wake.set()

    def _bury_unknown(self) -> None:
        known = outbox.known_receivers(
            stale_after=self.settings.lease * 2, using=self.using
        )
        buried = outbox.bury_unknown(
            known=known | set(self._receivers),
            grace=self.settings.unknown_receiver_grace,
            using=self.using,
            engines=self._engines,
        )
        if buried:
            logger.error(
                ngettext(
                    "%d delivery names a receiver no worker knows; marked dead.",
                    "%d deliveries name receivers no worker knows; marked dead.",
                    buried,
                ),
                buried,
            )

    # -- stopping -------------------------------------------------------------

    def _shut_down(self, threads: list[threading.Thread]) -> None:
        self.stopping.set()  # also when run() ends on its own (burst, max)
        self._give_back(self._unstarted(), "not started")
        deadline = time.monotonic() + self.settings.shutdown_grace.total_seconds()
        while self._unfinished and time.monotonic() < deadline:
            self._wake.wait(0.05)
            self._wake.clear()
        self._acks.close()
        with self._lock:
            running = [
                each
                for each in self._held.values()
                if each.id not in self._acknowledging
            ]
        self._give_back(
            running, "still running after the grace period", interrupted=True
        )
        for _ in range(self.concurrency):
            self._work.put(None)
        self._done.set()
        self._beat.set()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        # Joined, so that run() returns with every connection it opened
        # closed. A receiver still running past the grace period is left to
        # finish on its daemon thread (its row was given back): its thread is
        # not waited for, or the exit would come later than the grace says.
        deadline = time.monotonic() + 5
        for thread in threads:
            budget = max(deadline - time.monotonic(), 0)
            if running and thread.name.startswith("signalbox-run"):
                budget = min(budget, 0.1)
            thread.join(timeout=budget)
        if not self._loop.is_running():
            self._loop.close()
        self._guarded(lambda: outbox.forget_worker(self.name, using=self.using))
        # Last: until its record is gone, a free lock would say it had died.
        self._liveness.close()
        self._restore_durability()
        logger.info(
            ngettext(
                "Worker %s stopped after %d delivery.",
                "Worker %s stopped after %d deliveries.",
                self.counts.total,
            ),
            self.name,
            self.counts.total,
        )

    def _restore_durability(self) -> None:
        # run() may have been called on a thread whose connection outlives
        # the worker (a test, a script): leave it as it was found.
        connection = connections[self.using]
        if connection.connection is None or connection.connection not in self._relaxed:
            return
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit TO DEFAULT")
        except Exception:  # a broken connection is closed, and forgets it anyway
            connection.close()

    def _unstarted(self) -> list[outbox.Claimed]:
        unstarted: list[outbox.Claimed] = []
        while True:
            try:
                claimed = self._work.get_nowait()
            except queue.Empty:
                with self._lock:
                    self._unfinished -= len(unstarted)
                return unstarted
            if claimed is not None:
                unstarted += claimed

    def _give_back(
        self, claimed: list[outbox.Claimed], why: str, *, interrupted: bool = False
    ) -> None:
        if not claimed:
            return
        try:
            released = outbox.release(
                claimed, using=self.using, interrupted=interrupted
            )
        except Exception:  # the leases will expire and bring them back
            logger.exception(
                ngettext(
                    "Could not give back %d delivery.",
                    "Could not give back %d deliveries.",
                    len(claimed),
                ),
                len(claimed),
            )
            return
        with self._lock:
            for each in claimed:
                self._held.pop(each.id, None)
        logger.warning(
            ngettext(
                "Gave back %d delivery (%s).", "Gave back %d deliveries (%s).", released
            ),
            released,
            why,
        )


def rescue_expired(*, using: str, log: logging.Logger) -> int:
    """Take back the rows whose lease expired (``outbox.rescue``), say how many
    on ``log`` when there were any, and return that count: the worker's and the
    relay's rescue alike."""
    rescued = outbox.rescue(using=using)
    if rescued:
        log.warning(
            ngettext(
                "Took back %d delivery whose lease expired.",
                "Took back %d deliveries whose lease expired.",
                rescued,
            ),
            rescued,
        )
    return rescued


def _by_engine(
    receivers: dict[str, list[registry.Found]],
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The receiver keys, and the queues they name, of each engine alias."""
    keys: dict[str, set[str]] = {}
    queues: dict[str, set[str]] = {}
    for key, found in receivers.items():
        for each in found:
            policy = each.info.policy or Policy()
            keys.setdefault(policy.engine, set()).add(key)
            queues.setdefault(policy.engine, set()).add(policy.queue)
    return keys, queues


def _receivers(count: int) -> str:
    return ngettext("%d receiver", "%d receivers", count) % count


def _hint(alias: str, queues: list[str]) -> str:
    try:
        return engines.get(alias).worker_hint(queues)
    except ConfigurationError:  # no longer configured
        return f"a worker of engine {alias!r}"


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
