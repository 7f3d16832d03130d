"""Writing deliveries in the sender's transaction: the request path."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from django.db import connections

from signalbox._states import State
from signalbox.outbox import _libpq, _statements
from signalbox.outbox._base import NewDelivery, after

Written = Callable[[list[int]], None]
"""Told the ids of the rows one :func:`enqueue` call wrote, in order."""

# What one enqueue() call asked for: its rows, its `then`, and whether they
# wake the embedded workers.
_Call = tuple[Sequence[NewDelivery], Written | None, bool]

_batch: contextvars.ContextVar[dict[str, list[_Call]] | None] = contextvars.ContextVar(
    "signalbox_outbox_batch", default=None
)


@contextmanager
def batch() -> Iterator[None]:
    """Collect what :func:`enqueue` is given, and write it on the way out.

    Each database's rows go in one INSERT, in order, when the block ends
    (also when it raises: rows handed over before the error were, as far as
    the sender can tell, already written), and each call's ``then`` hears of
    its own rows. A signal sent to several background receivers thus costs
    one statement.
    """
    pending: dict[str, list[_Call]] = {}
    token = _batch.set(pending)
    try:
        yield
    finally:
        _batch.reset(token)
        for using, calls in pending.items():
            _write([row for rows, _, _ in calls for row in rows], using, calls)


def enqueue(
    rows: Sequence[NewDelivery],
    *,
    using: str,
    ids: bool = False,
    then: Written | None = None,
    wake: bool = True,
) -> list[int]:
    """Write ``rows`` in the caller's transaction on ``using``, in one INSERT.

    A rollback discards them; the commit makes them visible to workers. With
    ``wake`` (the default), on PostgreSQL the statement also sends ``NOTIFY
    signalbox``, delivered at the commit, which wakes idle embedded workers;
    rows for an engine that is handed them after the commit need no such
    wake-up (no embedded worker claims them), so they pass ``wake=False``.
    ``then``, if given, is called with the new rows' ids right after they are
    written (still inside the transaction). With ``ids=True`` the ids are also
    returned, in order (a ``RETURNING``, which costs); otherwise, and always
    inside :func:`batch`, whose rows wait for the batch's end, ``[]`` is
    returned.
    """
    pending = _batch.get()
    if pending is not None:
        pending.setdefault(using, []).append((rows, then, wake))
        return []
    if not rows:
        return []
    written = _write(rows, using, [(rows, then, wake)], ids)
    return written if ids else []


def _write(
    rows: Sequence[NewDelivery],
    using: str,
    calls: list[_Call],
    ids: bool = False,
) -> list[int]:
    ids = ids or any(then is not None for _, then, _ in calls)
    wake = any(wakes for _, _, wakes in calls)
    connection = connections[using]
    values = None
    if connection.vendor in _statements.INSERT_VENDORS and not any(
        row.delay for row in rows
    ):
        compact = _statements.compact
        values = [
            (
                r.signal,
                r.receiver,
                r.engine,
                r.queue,
                r.priority,
                compact(r.payload),
                r.max_attempts,
            )
            for r in rows
        ]
    if values is None:
        written = _write_with_orm(rows, using, ids)
    # The send's own statement, on the request path: written out rather than
    # built by the ORM, which costs more than the INSERT itself.
    elif (written_here := _libpq.insert(connection, values, ids, wake)) is not None:
        written = written_here
    else:
        statement = _statements.insert(connection.vendor, values, ids, wake)
        assert statement is not None  # an INSERT_VENDORS vendor has one
        with _statements.statement_cursor(connection) as cursor:
            cursor.execute(*statement)
            written = [each[0] for each in cursor.fetchall()] if ids else []
    start = 0
    for call_rows, then, _ in calls:
        if then is not None:
            then(written[start : start + len(call_rows)])
        start += len(call_rows)
    return written


def _write_with_orm(rows: Sequence[NewDelivery], using: str, ids: bool) -> list[int]:
    from signalbox.models import Delivery

    objs = [
        Delivery(
            signal=row.signal,
            receiver=row.receiver,
            payload=row.payload,
            engine=row.engine,
            queue=row.queue,
            priority=row.priority,
            max_attempts=row.max_attempts,
            state=State.SCHEDULED if row.delay else State.AVAILABLE,
            **({"scheduled_at": after(row.delay)} if row.delay else {}),
        )
        for row in rows
    ]
    if ids and not connections[using].features.can_return_rows_from_bulk_insert:
        # MySQL cannot say which ids a multi-row INSERT made: one at a time.
        for obj in objs:
            obj.save(using=using, force_insert=True)
        return [obj.pk for obj in objs]
    created = Delivery.objects.using(using).bulk_create(objs)
    return [obj.pk for obj in created] if ids else []
