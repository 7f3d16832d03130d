"""The relay: ``manage.py signalbox relay`` (or ``signalbox worker --relay``).

It hands to their engines the rows the sending process did not (the broker
was down, the process died before its hand-over thread ran), the rows that
fell due again (retries, delays, rescued leases: the outbox schedules them,
never the broker), and rows whose message seems lost. It also takes back
expired leases and, after the grace window, buries rows whose receiver key
no process knows. Each pass reads rows, publishes, then marks them, each
step its own short statement: no transaction is held across a network call.
When an engine refuses, the relay backs off for that engine (1 s, doubling,
at most a minute) and goes on with the others.

Between passes it sleeps until the next waiting row falls due (a retry, a
delayed row), so that row is handed over on time rather than at the next
poll; on PostgreSQL a write that sets a row due later (``NOTIFY
signalbox_relay``, with the row's engine) wakes it to look again, and
elsewhere it looks at the next due time every tenth of a second. It never
sleeps longer than ``POLL_SECONDS``: rows their sender did not hand over,
lost messages and expired leases are found by polling. Its worker record
(a heartbeat, named ``relay:…``) tells ``manage.py check`` and ``signalbox
status`` that a relay runs. A queue whose handed-over rows nobody starts is
logged once (:class:`UnconsumedQueues`).
"""

from __future__ import annotations

import logging
import math
import threading
import time

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils.translation import ngettext

from signalbox import _connections, _outage, conf, engines, outbox, registry, worker
from signalbox.engines import _handoff, engine_queue

logger = logging.getLogger("signalbox.engines")

_LONGEST_PAUSE = 60.0

_LATE = 0.001
"""Seconds the relay sleeps past a row's due time: waking a hair early would
cost a pass that finds the row not due yet, and another."""

DUE_POLL = 0.1
"""Seconds between the relay's looks at the next due time while it sleeps,
where no NOTIFY wakes it (MariaDB, MySQL, SQLite): how late a retry written
meanwhile, and due sooner, may start."""

NOTIFY_BACKSTOP = 1.0
"""Seconds between the relay's looks at the next due time while it sleeps
where NOTIFY wakes it (PostgreSQL): a wake-up lost on the way (the LISTEN
connection was being made, or dropped) makes a retry at most this late, not
a whole ``POLL_SECONDS``. One small indexed query a second."""

_SLACK = 0.005
"""Seconds by which the database's clock (milliseconds on SQLite) and the
relay's may disagree about when a pass looked."""


class Relay:
    """Hands due rows of every configured engine other than the embedded one.

    ``name`` is its worker record's (a heartbeat); by default
    ``relay:host:pid:random``.
    """

    def __init__(
        self, *, using: str = DEFAULT_DB_ALIAS, batch: int = 500, name: str = ""
    ) -> None:
        self.using = using
        self.batch = batch
        self.name = name or worker.process_name(outbox.RELAY_PREFIX)
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._listening = False  # a NOTIFY wakes it (PostgreSQL)
        self._paused_until: dict[str, float] = {}
        self._pause: dict[str, float] = {}
        self._last_bury = 0.0
        self._last_rescue = 0.0
        self._unconsumed = UnconsumedQueues()
        self._passes = _outage.Site(using, "relay passes", logger)

    def run(self) -> None:
        """Relay until :meth:`stop`; errors are logged and the loop goes on."""
        served = ", ".join(self._engines()) or "none configured"
        logger.info("Relay started; engines: %s.", served)
        listener = self._listener()
        try:
            while not self.stopping.is_set():
                # Cleared before looking, so a NOTIFY that lands during the
                # pass still shortens the sleep after it.
                self._wake.clear()
                wait = self._pass()
                self._sleep_until(time.monotonic() + wait)
        finally:
            self.stopping.set()
            if listener is not None:
                listener.join(timeout=5)
            self._forget()

    def stop(self) -> None:
        """Make :meth:`run` return after the pass it is in."""
        self.stopping.set()
        self._wake.set()

    def _pass(self) -> float:
        """One pass, then how long to sleep before the next (0: at once)."""
        started = time.monotonic()
        try:
            _outage.recheck(self.using)
            handed = self.run_once()
        except Exception as error:  # the database went away: reconnect, go on
            pause = self._passes.failed(error, "Relay pass failed; retrying.")
            connections[self.using].close()
            return min(pause, conf.get().poll.total_seconds())
        finally:
            _connections.tidy()
        self._passes.ok()
        return 0.0 if handed >= self.batch else self._until_next(started)

    def _sleep_until(self, deadline: float) -> None:
        """Sleep until ``deadline`` (monotonic), or until a row falls due
        sooner. A wake-up (a NOTIFY: a row was given a due time) looks at
        the next due time again, one query rather than a whole pass, so a
        stream of retries does not keep the relay busy when rows fall due.
        Without NOTIFY (MariaDB, MySQL, SQLite) it looks every
        :data:`DUE_POLL` seconds instead, and with it every
        :data:`NOTIFY_BACKSTOP` seconds."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            step = min(left, NOTIFY_BACKSTOP if self._listening else DUE_POLL)
            woken = self._wake.wait(step)
            if self.stopping.is_set() or not (woken or step < left):
                return
            self._wake.clear()
            due = self._next_due()
            if due is not None:
                deadline = min(deadline, time.monotonic() + max(due, 0.0) + _LATE)

    def _until_next(self, looked: float) -> float:
        """Seconds until something is for the relay to do after a pass that
        started at ``looked`` (monotonic): the next waiting row falls due, a
        paused engine may be tried again, or the leases are to be looked at;
        never more than ``POLL_SECONDS``."""
        settings = conf.get()
        now = time.monotonic()
        waits = [
            settings.poll.total_seconds(),
            self._last_rescue + settings.lease.total_seconds() / 3 - now,
            *(until - now for until in self._paused_until.values() if until > now),
        ]
        left = self._next_due()
        # A row that fell due while the pass ran is handed over at once. One
        # due before the pass looked is one it could not hand over (its mark
        # failed): the poll tries it again, not a pass at once, and another.
        if left is not None and left > looked - now - _SLACK:
            waits.append(max(left, 0.0) + _LATE)
        return max(min(waits), 0.0)

    def _next_due(self) -> float | None:
        """Seconds until the next row that an engine not paused is to be
        handed falls due (negative: overdue; 0 when the database cannot say,
        and a pass finds out why); None when none waits."""
        now = time.monotonic()
        ready = [a for a in self._engines() if self._paused_until.get(a, 0) <= now]
        if not ready:
            return None
        try:
            left = outbox.next_due(
                engines=ready, grace=conf.get().handover_grace, using=self.using
            )
        except Exception:  # the pass it leads to logs it, and reconnects
            return 0.0
        finally:
            _connections.tidy()
        return None if left is None else left.total_seconds()

    def _listener(self) -> worker.Listener | None:
        """On PostgreSQL, a thread that wakes the relay when a row of one of
        its engines is set due later."""
        if connections[self.using].vendor != "postgresql":
            return None
        served = set(self._engines())
        listener = worker.Listener(
            self.using,
            self._wake,
            self.stopping,
            channel=outbox.RELAY_CHANNEL,
            wanted=served.__contains__,
        )
        listener.start()
        self._listening = True
        return listener

    def run_once(self) -> int:
        """One pass: heartbeat and rescue, bury, then hand over what is due;
        returns how many were handed over."""
        settings = conf.get()
        now = time.monotonic()
        if now - self._last_rescue >= settings.lease.total_seconds() / 3:
            outbox.heartbeat(self.name, [], [], using=self.using)
            worker.rescue_expired(using=self.using, log=logger)
            # Once done: a pass that failed on them tries them again.
            self._last_rescue = now
        if now - self._last_bury >= 60:
            self._last_bury = now
            self._bury_unknown()
        self._unconsumed.look(now, using=self.using)
        ready = [a for a in self._engines() if self._paused_until.get(a, 0) <= now]
        if not ready:
            return 0
        due = outbox.handover_due(
            engines=ready,
            grace=settings.handover_grace,
            redeliver=settings.redeliver,
            limit=self.batch,
            using=self.using,
        )
        taken = {each.id for each in _handoff.publish(due)}
        self._back_off({each.engine for each in due if each.id not in taken}, now)
        if taken:
            logger.info(
                ngettext(
                    "Handed over %d delivery.", "Handed over %d deliveries.", len(taken)
                ),
                len(taken),
            )
        return len(taken)

    def _forget(self) -> None:
        try:
            outbox.forget_worker(self.name, using=self.using)
        except Exception as error:  # its heartbeat goes stale all the same
            if not _outage.lost(error, using=self.using, affected="relay", log=logger):
                logger.warning("Could not remove the relay's record: %s", error)
        finally:
            _connections.tidy()

    def _engines(self) -> list[str]:
        return engines.aliases(embedded=False)

    def _back_off(self, refused: set[str], now: float) -> None:
        for alias in self._engines():
            if alias in refused:
                pause = min(self._pause.get(alias, 0.5) * 2, _LONGEST_PAUSE)
                self._pause[alias] = pause
                self._paused_until[alias] = now + pause
            else:
                self._pause.pop(alias, None)

    def _bury_unknown(self) -> None:
        worker.bury_unknown(
            using=self.using,
            known_here=registry.registry.background(),
            engines=self._engines(),
            log=logger,
            who="process",
        )


class UnconsumedQueues:
    """Logs the engine queues whose handed-over rows nobody starts.

    A queue whose rows were handed over more than ``UNSTARTED_WARNING_SECONDS``
    ago and have not started gets one WARNING naming it (in the engine's own
    terms) and how to consume it; it is not named again until its rows have
    started (an INFO line says so) and it stalls anew. Looked at every half
    of that threshold, at most once a minute.
    """

    def __init__(self) -> None:
        self._stalled: set[tuple[str, str]] = set()
        self._looked = -math.inf  # monotonic

    def look(self, now: float, *, using: str) -> None:
        """Warn about the queues that stalled since the last look, if due."""
        threshold = conf.get().unstarted_warning
        if now - self._looked < min(threshold.total_seconds() / 2, 60):
            return
        self._looked = now
        stalled = outbox.unstarted(older_than=threshold, using=using)
        found = {(w.engine, w.queue): w for w in stalled}
        for key in sorted(found.keys() - self._stalled):
            where, hint = engine_queue(*key)
            count = found[key].count
            logger.warning(
                "%s: %s handed over more than %d s ago and not started. "
                "Does a worker consume that queue? Start %s.",
                where,
                ngettext("%d delivery", "%d deliveries", count) % count,
                threshold.total_seconds(),
                hint,
            )
        for key in sorted(self._stalled - found.keys()):
            where, _ = engine_queue(*key)
            logger.info("%s: its deliveries start again.", where)
        self._stalled = set(found)
