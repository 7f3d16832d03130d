"""Claiming deliveries under a lease: the claim of many rows per vendor, the
claim of one row by id (an engine's task), and reading the claimed rows back.

Every claim sets what ``_statements.taken()`` says and takes what
``_states.due()`` calls due; the transitions a lease token guards after it
are in :mod:`._leases`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, cast

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import JSONField, TextField
from django.db.models.functions import Cast

from signalbox._states import WAITING
from signalbox.outbox import _claim_mysql, _libpq, _statements
from signalbox.outbox._base import Claimed, Unreadable, _rows
from signalbox.outbox._conflicts import retried


def claim(
    *,
    worker: str,
    queues: Iterable[str],
    receivers: Iterable[str],
    limit: int,
    lease: timedelta,
    using: str,
    engines: Iterable[str] = ("default",),
) -> list[Claimed]:
    """Take up to ``limit`` due rows of ``queues`` whose keys are ``receivers``.

    Only rows of the ``engines`` aliases are taken (the embedded worker's).
    Each claimed row is ``executing``, its attempt counted, leased to
    ``worker`` until the database's now + ``lease``, under one fresh token.
    Rows are taken by priority, then due time, then id. Concurrent claims on
    PostgreSQL and MySQL/MariaDB skip each other's rows; SQLite serialises them.
    """
    queues, receivers, engines = list(queues), list(receivers), list(engines)
    if limit <= 0 or not queues or not receivers or not engines:
        return []
    return retried(
        using, _claim, worker, engines, queues, receivers, limit, lease, using
    )


def _claim(
    worker: str,
    engines: list[str],
    queues: list[str],
    receivers: list[str],
    limit: int,
    lease: timedelta,
    using: str,
) -> list[Claimed]:
    token = uuid.uuid4()
    connection = connections[using]
    if connection.vendor == "postgresql":
        return _claim_postgresql(
            worker, engines, queues, receivers, limit, lease, token, using
        )
    if connection.vendor == "mysql":
        taken = _claim_mysql.claim(
            worker, engines, queues, receivers, limit, lease, token, using
        )
        # By id: there is no index on the token.
        rows = _rows(using).filter(id__in=taken, lease_token=token)
        return _claimed(rows, token, using) if taken else []
    due = (
        _rows(using)
        .due()
        .filter(engine__in=engines, queue__in=queues, receiver__in=receivers)
    )
    due = due.order_by("priority", "scheduled_at", "id")
    with transaction.atomic(using=using):
        if connection.features.has_select_for_update_skip_locked:
            ids: Any = list(
                due.select_for_update(skip_locked=True).values_list("id", flat=True)[
                    :limit
                ]
            )
        else:
            ids = due.values("id")[:limit]
        _rows(using).filter(id__in=ids, state__in=WAITING).update(
            **_statements.taken(token, worker, lease)
        )
    return _claimed(_rows(using).filter(lease_token=token), token, using)


def _claim_postgresql(
    worker: str,
    engines: list[str],
    queues: list[str],
    receivers: list[str],
    limit: int,
    lease: timedelta,
    token: uuid.UUID,
    using: str,
) -> list[Claimed]:
    sql = _statements.CLAIM_POSTGRESQL.format(
        engine="engine = %s" if len(engines) == 1 else "engine = ANY(%s)",
        queue="queue = %s" if len(queues) == 1 else "queue = ANY(%s)",
    )
    engine: object = engines[0] if len(engines) == 1 else engines
    queue: object = queues[0] if len(queues) == 1 else queues
    sets = _statements.taken_params(token, worker, lease)
    params: list[Any] = [*sets, engine, queue, receivers, limit]
    return _returned(sql, params, token, connections[using])


def _returned(
    sql: str, params: list[Any], token: uuid.UUID, connection: BaseDatabaseWrapper
) -> list[Claimed]:
    rows = _libpq.run(connection, sql, params)
    claimed = [
        Claimed(
            id=row[0],
            signal=row[1],
            receiver=row[2],
            payload=_payload(row[3], connection),
            attempt=row[4],
            max_attempts=row[5],
            enqueued_at=row[6],
            token=token,
            interrupted=row[7],
        )
        for row in rows
    ]
    return sorted(claimed, key=lambda c: c.id)


def claim_one(
    delivery_id: int,
    *,
    engine: str,
    worker: str,
    receivers: Iterable[str],
    lease: timedelta,
    using: str,
    durable: bool = True,
) -> Claimed | None:
    """Take the delivery ``delivery_id`` if it is due, for ``engine``, with a
    key in ``receivers``; None otherwise.

    This is how an engine's task starts: its message names only the id, so a
    broker's redelivery, a duplicate hand-over or a forged message finds the
    row running, finished, not due, someone else's or missing, and takes
    nothing. The claim is counted and leased as :func:`claim`'s are.
    ``durable=False`` lets the claim commit without waiting for the disk, on
    PostgreSQL and outside a transaction only (see :func:`_relaxing`).
    """
    receivers = list(receivers)
    if not receivers:
        return None
    return retried(
        using, _claim_one, delivery_id, engine, worker, receivers, lease, using, durable
    )


def _claim_one(
    delivery_id: int,
    engine: str,
    worker: str,
    receivers: list[str],
    lease: timedelta,
    using: str,
    durable: bool,
) -> Claimed | None:
    token = uuid.uuid4()
    connection = connections[using]
    if connection.vendor == "postgresql":
        relax = not durable and relaxing(connection)
        sql = _statements.CLAIM_ONE_RELAXED if relax else _statements.CLAIM_ONE
        sets = _statements.taken_params(token, worker, lease)
        params = [*sets, delivery_id, engine, receivers]
        found = _returned(sql, params, token, connection)
        return found[0] if found else None
    with transaction.atomic(using=using):
        taken = (
            _rows(using)
            .due()
            .filter(id=delivery_id, engine=engine, receiver__in=receivers)
            .update(**_statements.taken(token, worker, lease))
        )
    if not taken:
        return None
    found = _claimed(
        _rows(using).filter(id=delivery_id, lease_token=token), token, using
    )
    return found[0] if found else None


def due_owner(delivery_id: int, *, using: str) -> tuple[str, str] | None:
    """The engine alias and receiver key of delivery ``delivery_id`` if it is
    due, else None: why :func:`claim_one` took nothing, when it was not that
    the row was running, finished, not yet due or missing."""
    return (
        _rows(using)
        .due()
        .filter(id=delivery_id)
        .values_list("engine", "receiver")
        .first()
    )


def _claimed(rows: Any, token: uuid.UUID, using: str) -> list[Claimed]:
    rows = rows.defer("payload").annotate(raw=Cast("payload", TextField()))
    connection = connections[using]
    return [
        Claimed(
            id=row.id,
            signal=row.signal,
            receiver=row.receiver,
            payload=_payload(row.raw, connection),
            attempt=row.attempt,
            max_attempts=row.max_attempts,
            enqueued_at=row.enqueued_at,
            token=token,
            interrupted=row.interrupted,
        )
        for row in rows.order_by("id")
    ]


def _payload(raw: Any, connection: BaseDatabaseWrapper) -> Any:
    """Read one claimed row's payload; what cannot be read becomes :class:`Unreadable`.

    Row by row, after the claim: a payload that failed to parse inside the
    claim failed the whole batch, whose rows then sat leased until their
    leases expired, again on every claim, until they all ran out of attempts.
    """
    try:
        return _payload_field().from_db_value(raw, None, connection)  # type: ignore[arg-type]
    except (RecursionError, ValueError) as error:
        return Unreadable(f"{type(error).__name__}: {error}")


@functools.cache
def _payload_field() -> JSONField[Any]:
    from signalbox.models import Delivery

    return cast("JSONField[Any]", Delivery._meta.get_field("payload"))


def relaxing(connection: BaseDatabaseWrapper) -> bool:
    """Whether a statement on ``connection`` may relax its own commit's
    durability: only when it is its own transaction. Inside an ``atomic()``
    block (a caller's, or a receiver's) it would relax that whole transaction."""
    return not connection.in_atomic_block
