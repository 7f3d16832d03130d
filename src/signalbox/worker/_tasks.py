"""Running the delivery an engine's message names, in whatever process the
engine's worker runs the task: the runtime half of
:func:`signalbox.engines.remote.deliver`, which checks the message first.

:func:`run_task` claims the row under a lease, so a broker's redelivery, a
second hand-over or a forged message finds it running, finished, not yet
due, another engine's or missing and runs nothing; then it runs the
receiver through :func:`~signalbox.worker.run_delivery`, the embedded
worker's own path, with :data:`~signalbox.worker._keeper.keeper` keeping the
lease alive meanwhile, and records the outcome in the row (a completion
that comes in a stream may be deferred, see :mod:`signalbox.worker._keeper`).

A row whose receiver key this process does not know is left as it is, for a
worker that knows it (the relay hands it over again, and buries it after
``UNKNOWN_RECEIVER_GRACE_SECONDS`` if no process it can see knows the key,
as the embedded worker does), with a warning once per key and process.

When the database cannot be reached, a task runs nothing and returns: the
outage is one WARNING and one INFO per process (:mod:`signalbox._outage`),
not a traceback per message, and the relay hands the row over again.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable

from django.db import connections

from signalbox import _connections, _outage, conf, outbox, registry
from signalbox.registry import Found
from signalbox.worker._keeper import keeper
from signalbox.worker._names import thread_name
from signalbox.worker._run import Outcome, run_delivery

# An engine task's lines go where they always went, beside its engine's.
logger = logging.getLogger("signalbox.engines")


def run_task(
    delivery_id: int, *, engine: str, using: str, defer_ack: bool = False
) -> Outcome | None:
    """Claim delivery ``delivery_id`` of ``engine`` if it is due, run it and
    record the outcome; None when there was nothing to run (already running,
    finished, not due, another engine's, an unknown receiver key, or no such
    row). Never raises for the receiver's errors, which are recorded in the
    row like the embedded worker's, nor for a lost database connection
    (None; the outage is logged once, and the relay hands the row over
    again); raises any other database error.

    ``defer_ack=True`` lets a completion that follows another delivery's
    end closely (a stream) be written :data:`~signalbox.worker._keeper.ACK_DELAY`
    later, together with the others of that stream, on the keeper's thread;
    until then the row stays leased to this process. Failures, retries and
    ``atomic=True`` completions are always written before this returns.
    """
    settings = conf.get()
    receivers, keys = _background()
    defer = defer_ack and keeper.streaming() and _can_defer(using)
    # The claim and the acknowledgement share the receiver's own connection,
    # so unlike the embedded worker's they cannot have a session of their
    # own: each is one statement that relaxes its own commit only (on
    # PostgreSQL, outside a caller's transaction). A database crash may then
    # forget it, and the delivery runs again, which at-least-once allows.
    # SYNCHRONOUS_ACKS keeps them durable.
    durable = settings.synchronous_acks
    try:
        _outage.recheck(using)
        claimed = outbox.claim_one(
            delivery_id,
            engine=engine,
            worker=thread_name(),
            receivers=keys,
            lease=settings.lease,
            using=using,
            durable=durable,
        )
        if keys:  # then the claim's statement reached the database
            _outage.back(using)
        if claimed is None:
            _explain_miss(delivery_id, engine, receivers, using)
            return None
        acknowledge: Callable[[outbox.Claimed], bool | None] = (
            functools.partial(keeper.defer, using=using)
            if defer
            else functools.partial(outbox.complete, using=using, durable=durable)
        )
        with keeper.holding(claimed, using):
            return run_delivery(
                claimed, receivers, using=using, acknowledge=acknowledge
            )
    except Exception as error:
        if not _outage.lost(error, using=using, affected="engine tasks", log=logger):
            raise
        return None
    finally:
        keeper.ended()
        _connections.tidy()


def _explain_miss(
    delivery_id: int, engine: str, receivers: dict[str, list[Found]], using: str
) -> None:
    """Say why a message found nothing to run, when it is worth a warning."""
    try:
        owner = outbox.due_owner(delivery_id, using=using)
    except Exception as error:  # only an explanation is lost: nothing ran anyway
        logger.debug("Delivery %s: nothing to run (%s).", delivery_id, error)
        return
    if owner is None:  # running, finished, not due or missing: a stale message
        logger.debug("Delivery %s: nothing to run.", delivery_id)
    elif owner[0] != engine:
        logger.warning("A message named another engine's delivery; nothing ran.")
    elif owner[1] not in receivers:
        _unknown_receiver(delivery_id, owner[1])


_warned: dict[str, object] = {}
"""The receiver keys this process has warned about (see _unknown_receiver)."""
os.register_at_fork(after_in_child=_warned.clear)


def _unknown_receiver(delivery_id: int, key: str) -> None:
    # Once per key and process: a stream of its deliveries would flood the log.
    first = object()
    if _warned.setdefault(key, first) is not first:
        return
    logger.warning(
        "Delivery %s is for receiver %s, which this process does not know (it "
        "is not connected here): it is left for a worker that knows it. Later "
        "deliveries of this receiver are left without a word.",
        delivery_id,
        key,
    )


_known: tuple[int, dict[str, list[Found]], list[str]] = (-1, {}, [])


def _background() -> tuple[dict[str, list[Found]], list[str]]:
    """The registry's background receivers and their keys, read again only
    after a receiver was connected or disconnected (a reading walks every
    signal's receivers, and a stream of deliveries would do it for each).
    What it holds stays alive until then, as the embedded worker keeps its
    own reading for the whole of its life."""
    global _known
    changes = registry.registry.changes
    if _known[0] != changes:
        receivers = registry.registry.background()
        _known = (changes, receivers, list(receivers))
    return _known[1], _known[2]


def _can_defer(using: str) -> bool:
    connection = connections[using]
    return connection.vendor == "postgresql" and not connection.in_atomic_block
