"""The relay: ``manage.py signalbox relay`` (or ``signalbox worker --relay``).

It hands to their engines the rows the sending process did not (the broker
was down, the process died before its hand-over thread ran), the rows that
fell due again (retries, delays, rescued leases: the outbox schedules them,
never the broker), and rows whose message seems lost. It also takes back
expired leases and, after the grace window, buries rows whose receiver key
no process knows. Each pass reads rows, publishes, then marks them, each
step its own short statement: no transaction is held across a network call.
When an engine refuses, the relay backs off for that engine (1 s, doubling,
at most a minute) and goes on with the others. A queue whose handed-over
rows nobody starts is logged once (:class:`UnconsumedQueues`).
"""

from __future__ import annotations

import logging
import math
import threading
import time

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils.translation import ngettext

from signalbox import _connections, conf, engines, outbox, registry
from signalbox.engines import _handoff
from signalbox.observe import status

logger = logging.getLogger("signalbox.engines")

_LONGEST_PAUSE = 60.0


class Relay:
    """Hands due rows of every configured engine other than the embedded one."""

    def __init__(self, *, using: str = DEFAULT_DB_ALIAS, batch: int = 500) -> None:
        self.using = using
        self.batch = batch
        self.stopping = threading.Event()
        self._paused_until: dict[str, float] = {}
        self._pause: dict[str, float] = {}
        self._last_bury = 0.0
        self._last_rescue = 0.0
        self._unconsumed = UnconsumedQueues()

    def run(self) -> None:
        """Relay until :meth:`stop`; errors are logged and the loop goes on."""
        served = ", ".join(self._engines()) or "none configured"
        logger.info("Relay started; engines: %s.", served)
        while not self.stopping.is_set():
            try:
                busy = self.run_once() >= self.batch
            except Exception as error:  # the database went away: reconnect, go on
                logger.warning("Relay pass failed (%s); retrying.", error)
                connections[self.using].close()
                busy = False
            finally:
                _connections.tidy()
            if not busy:
                self.stopping.wait(conf.get().poll.total_seconds())

    def stop(self) -> None:
        """Make :meth:`run` return after the pass it is in."""
        self.stopping.set()

    def run_once(self) -> int:
        """One pass: rescue, bury, then hand over what is due; returns how many."""
        settings = conf.get()
        now = time.monotonic()
        if now - self._last_rescue >= settings.lease.total_seconds() / 3:
            self._last_rescue = now
            rescued = outbox.rescue(using=self.using)
            if rescued:
                logger.warning(
                    ngettext(
                        "Took back %d delivery whose lease expired.",
                        "Took back %d deliveries whose lease expired.",
                        rescued,
                    ),
                    rescued,
                )
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
        settings = conf.get()
        known = outbox.known_receivers(stale_after=settings.lease * 2, using=self.using)
        buried = outbox.bury_unknown(
            known=known | set(registry.registry.background()),
            grace=settings.unknown_receiver_grace,
            using=self.using,
            engines=self._engines(),
        )
        if buried:
            logger.error(
                ngettext(
                    "%d delivery names a receiver no process knows; marked dead.",
                    "%d deliveries name receivers no process knows; marked dead.",
                    buried,
                ),
                buried,
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
        found = {(w.engine, w.queue): w for w in status.unstarted(using=using)}
        for key in sorted(found.keys() - self._stalled):
            where, hint = status.engine_queue(*key)
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
            where, _ = status.engine_queue(*key)
            logger.info("%s: its deliveries start again.", where)
        self._stalled = set(found)
