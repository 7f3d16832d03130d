"""The harness: what a scenario needs, in one import.

A scenario resets its database, starts real ``python -m django signalbox
worker`` processes (:mod:`.processes`; the worker is a black box: only its
rows, the ledger and its process behaviour are looked at), sends through
real signals from producer threads (below), hurts things with
:mod:`.faults`, waits for the outbox to drain and calls :func:`check`
(:mod:`.invariants`), which prints one JSON line of figures and fails on any
violation. Sizes come from ``SIGNALBOX_RELIABILITY`` (``ci`` or ``full``).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, InterfaceError, connections, transaction

from tests.reliability import receivers
from tests.reliability.db import (
    prepare,
    reset,
    scalar,
    sql,
    unfinished,
    vendor,
    wait_drained,
    wait_for,
)
from tests.reliability.invariants import (
    FULL,
    RESULTS,
    Faults,
    Result,
    check,
    now,
    percentile,
)
from tests.reliability.processes import ROOT, SRC, Worker, Workers, wait_registered

__all__ = [
    "FULL",
    "RESULTS",
    "ROOT",
    "SRC",
    "Faults",
    "Producer",
    "Result",
    "Worker",
    "Workers",
    "calm",
    "check",
    "now",
    "percentile",
    "prepare",
    "reset",
    "scalar",
    "send",
    "send_committed",
    "size",
    "sql",
    "unfinished",
    "vendor",
    "wait_drained",
    "wait_for",
    "wait_registered",
]


CALM_LEASE = 5.0
"""The lease of scenarios that inject no fault. With the 1 s lease that lets
crash scenarios heal quickly, a two-core machine loaded by other work let
leases lapse under live workers (on SQLite their heartbeats queue for the one
write lock), and the duplicates that followed were the lease's, not a fault's."""


def calm(workers: Workers) -> float:
    """Give ``workers`` the calm lease; returns it, for :func:`check`."""
    workers.env["SIGNALBOX_REL_LEASE"] = str(CALM_LEASE)
    return CALM_LEASE


def size(ci: int, full: int) -> int:
    """A scenario's size: ``full`` under ``make soak``, else ``ci``."""
    return full if FULL else ci


# -- producers ----------------------------------------------------------------

_ids = itertools.count(1)
_ids_lock = threading.Lock()


def next_send_id() -> int:
    with _ids_lock:
        return next(_ids)


class _Rollback(Exception):
    pass


def send(
    alias: str, signal_name: str, count: int = 1, *, producer: str = "driver", **kwargs
) -> list[int]:
    """Send ``count`` times in the current transaction; note each in the sends table.

    The sends rows are the transaction's last statement, so ``written_at`` is
    an instant before the commit.
    """
    sig = getattr(receivers, signal_name)
    expected = receivers.EXPECTED[signal_name]
    delay = (
        receivers.SOON.total_seconds()
        if signal_name == "soon_sent"
        else 3600.0
        if signal_name == "far_sent"
        else 0.0
    )
    ids = [next_send_id() for _ in range(count)]
    for send_id in ids:
        sig.send(sender=None, send_id=send_id, using=alias, **kwargs)
    rows = ", ".join(["(%s, %s, %s, %s, %s)"] * len(ids))
    params: list[Any] = []
    for send_id in ids:
        params += [send_id, producer, signal_name, expected, delay]
    sql(
        alias,
        "INSERT INTO reliability_sends (send_id, producer, signal, expected, delay_s) "
        f"VALUES {rows}",
        params,
    )
    return ids


def send_committed(alias: str, signal_name: str, count: int, batch: int = 500, **kw):
    """Send ``count`` times, ``batch`` sends per committed transaction."""
    ids: list[int] = []
    while len(ids) < count:
        with transaction.atomic(using=alias):
            ids += send(alias, signal_name, min(batch, count - len(ids)), **kw)
    return ids


@dataclass(eq=False)
class Producer(threading.Thread):
    """Sends in transactions until ``count`` are done or ``stop`` is set.

    Every ``rollback_every``-th transaction is rolled back on purpose, and a
    transaction may linger ``linger`` seconds after its sends before it
    commits (so an execution before the commit would show). Database errors
    (the server restarting, the connection killed) are counted and the
    producer goes on with a new connection: whether such a transaction
    committed is for the sends table to say.
    """

    alias: str
    signals: Sequence[str]
    count: int
    per_transaction: int = 1
    rollback_every: int = 0
    linger: float = 0.0
    pause: float = 0.0
    kwargs: dict[str, Any] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    committed: int = 0
    rolled_back: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True, name=f"producer-{id(self)}")

    def run(self) -> None:
        try:
            for n in itertools.count(1):
                if self.stop.is_set() or self.committed >= self.count:
                    return
                self._one(n)
                if self.pause:
                    time.sleep(self.pause)
        finally:
            connections.close_all()

    def _one(self, n: int) -> None:
        name = self.signals[n % len(self.signals)]
        size = min(self.per_transaction, self.count - self.committed)
        try:
            with transaction.atomic(using=self.alias):
                send(self.alias, name, size, producer=self.name, **self.kwargs)
                if self.linger:
                    time.sleep(self.linger)
                if self.rollback_every and n % self.rollback_every == 0:
                    raise _Rollback
            self.committed += size
        except _Rollback:
            self.rolled_back += size
        except (DatabaseError, InterfaceError) as error:
            self.errors.append(f"{type(error).__name__}: {error}".strip())
            connections[self.alias].close()
            time.sleep(0.05)


def run_producers(producers: Iterable[Producer], timeout: float) -> None:
    producers = list(producers)
    for producer in producers:
        producer.start()
    for producer in producers:
        producer.join(timeout)
        assert not producer.is_alive(), "a producer did not finish"
