"""The body of every engine's task: run the delivery a message names.

An engine's message carries only a delivery id (and the engine's and the
database's aliases, to pass on). :func:`deliver` claims that
row under a lease, so a broker's redelivery, a second hand-over or a forged
message finds it running, finished, not yet due or missing and runs nothing;
then it runs the receiver through :func:`signalbox.worker.run_delivery`, the
embedded worker's own path, and records the outcome in the row. Retries are
recorded in the row too (``retryable``, with its backoff) and handed over
again by the relay once due: the broker never schedules anything.

While a delivery runs, a thread of this process extends its lease, so a long
receiver keeps its row and a dead process lets it go.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import uuid

from django.db import DEFAULT_DB_ALIAS, connections

from signalbox import _connections, conf, outbox, registry
from signalbox.worker import Outcome, run_delivery

logger = logging.getLogger("signalbox.engines")


def deliver(
    delivery_id: int, *, engine: str, using: str = DEFAULT_DB_ALIAS
) -> Outcome | None:
    """Run delivery ``delivery_id`` of ``engine`` if it is due; record the outcome.

    Returns the outcome, or None when the row was not there to run (already
    running, finished, not due, another engine's, an unknown receiver key, or
    no such row). Never raises for the receiver's errors, which are recorded
    in the row like the embedded worker's.
    """
    receivers = registry.registry.background()
    settings = conf.get()
    # The claim and the acknowledgement share the receiver's own connection,
    # so unlike the embedded worker's they cannot have a session of their
    # own: each is one statement that relaxes its own commit only (on
    # PostgreSQL, outside a caller's transaction). A database crash may then
    # forget it, and the delivery runs again, which at-least-once allows.
    # SYNCHRONOUS_ACKS keeps them durable.
    durable = settings.synchronous_acks
    try:
        claimed = outbox.claim_one(
            delivery_id,
            engine=engine,
            worker=_name(),
            receivers=list(receivers),
            lease=settings.lease,
            using=using,
            durable=durable,
        )
        if claimed is None:
            logger.debug("Delivery %s: nothing to run.", delivery_id)
            return None
        with keeper.holding(claimed, using):
            return run_delivery(
                claimed,
                receivers,
                using=using,
                acknowledge=functools.partial(
                    outbox.complete, using=using, durable=durable
                ),
            )
    finally:
        _connections.tidy()


def _name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class LeaseKeeper:
    """Extends, every third of a lease, the leases this process holds."""

    def __init__(self) -> None:
        self._held: dict[uuid.UUID, tuple[outbox.Claimed, str]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = -1

    def holding(self, claimed: outbox.Claimed, using: str) -> _Holding:
        """A context in which ``claimed``'s lease is kept alive."""
        return _Holding(self, claimed, using)

    def _add(self, claimed: outbox.Claimed, using: str) -> None:
        with self._lock:
            if self._pid != os.getpid():  # a forked child keeps no thread
                self._pid = os.getpid()
                self._held.clear()
                threading.Thread(
                    target=self._run, name="signalbox-leases", daemon=True
                ).start()
            self._held[claimed.token] = (claimed, using)

    def _remove(self, claimed: outbox.Claimed) -> None:
        with self._lock:
            self._held.pop(claimed.token, None)

    def _run(self) -> None:
        while True:
            self._wake.wait(max(conf.get().lease.total_seconds() / 3, 0.05))
            with self._lock:
                held = list(self._held.values())
            for using in {each_using for _, each_using in held}:
                claims = [claimed for claimed, u in held if u == using]
                try:
                    outbox.extend(claims, lease=conf.get().lease, using=using)
                except Exception as error:  # the next beat tries again
                    logger.warning("Extending leases failed: %s", error)
                finally:
                    _connections.tidy()
            if not held:
                connections.close_all()  # nothing to keep alive: no connection


class _Holding:
    def __init__(self, keeper: LeaseKeeper, claimed: outbox.Claimed, using: str):
        self.keeper, self.claimed, self.using = keeper, claimed, using

    def __enter__(self) -> None:
        self.keeper._add(self.claimed, self.using)

    def __exit__(self, *exc: object) -> None:
        self.keeper._remove(self.claimed)


keeper = LeaseKeeper()
"""This process's lease keeper."""
