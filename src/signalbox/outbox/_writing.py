"""Writing deliveries in the sender's transaction: the request path."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from django.db import connections

from signalbox import _statements
from signalbox._states import State
from signalbox.outbox._base import NewDelivery, after

_batch: contextvars.ContextVar[dict[str, list[NewDelivery]] | None] = (
    contextvars.ContextVar("signalbox_outbox_batch", default=None)
)


@contextmanager
def batch() -> Iterator[None]:
    """Collect what :func:`enqueue` is given, and write it on the way out.

    Each database's rows go in one INSERT, in order, when the block ends
    (also when it raises: rows handed over before the error were, as far as
    the sender can tell, already written). A signal sent to several
    background receivers thus costs one statement.
    """
    pending: dict[str, list[NewDelivery]] = {}
    token = _batch.set(pending)
    try:
        yield
    finally:
        _batch.reset(token)
        for using, rows in pending.items():
            enqueue(rows, using=using)


def enqueue(rows: Sequence[NewDelivery], *, using: str, ids: bool = False) -> list[int]:
    """Write ``rows`` in the caller's transaction on ``using``, in one INSERT.

    A rollback discards them; the commit makes them visible to workers (on
    PostgreSQL the statement also sends ``NOTIFY signalbox``, which is
    delivered at the commit). With ``ids=True`` returns the new rows' ids, in order (it
    costs a ``RETURNING``); otherwise, and always inside :func:`batch`, whose
    rows wait for the batch's end, returns ``[]``.
    """
    pending = _batch.get()
    if pending is not None:
        pending.setdefault(using, []).extend(rows)
        return []
    if not rows:
        return []
    connection = connections[using]
    statement = None
    if not any(row.delay for row in rows):
        statement = _statements.insert(
            connection.vendor,
            [
                (r.signal, r.receiver, r.queue, r.priority, r.payload, r.max_attempts)
                for r in rows
            ],
            ids,
        )
    if statement is None:
        return _enqueue_with_orm(rows, using, ids)
    # The send's own statement, on the request path: written out rather than
    # built by the ORM, which costs more than the INSERT itself.
    with _statements.statement_cursor(connection) as cursor:
        cursor.execute(*statement)
        return [each[0] for each in cursor.fetchall()] if ids else []


def _enqueue_with_orm(rows: Sequence[NewDelivery], using: str, ids: bool) -> list[int]:
    from signalbox.models import Delivery

    objs = [
        Delivery(
            signal=row.signal,
            receiver=row.receiver,
            payload=row.payload,
            queue=row.queue,
            priority=row.priority,
            max_attempts=row.max_attempts,
            state=State.SCHEDULED if row.delay else State.AVAILABLE,
            **({"scheduled_at": after(row.delay)} if row.delay else {}),
        )
        for row in rows
    ]
    created = Delivery.objects.using(using).bulk_create(objs)
    return [obj.pk for obj in created] if ids else []
