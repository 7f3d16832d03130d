"""Claiming deliveries under a lease, and every transition a lease token guards."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, cast

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, JSONField, TextField
from django.db.models.functions import Cast, Now

from signalbox._states import WAITING, State
from signalbox.outbox import _claim_mysql, _libpq, _statements
from signalbox.outbox._base import Claimed, Unreadable, _rows, after
from signalbox.outbox._handover import wake_relay_for


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
    token = uuid.uuid4()
    queues, receivers, engines = list(queues), list(receivers), list(engines)
    if limit <= 0 or not queues or not receivers or not engines:
        return []
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
    token = uuid.uuid4()
    receivers = list(receivers)
    if not receivers:
        return None
    connection = connections[using]
    if connection.vendor == "postgresql":
        relax = not durable and _relaxing(connection)
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


def _held(claimed: Claimed, using: str) -> Any:
    return _rows(using).filter(
        id=claimed.id, state=State.EXECUTING, lease_token=claimed.token
    )


def _relaxing(connection: BaseDatabaseWrapper) -> bool:
    """Whether a statement on ``connection`` may relax its own commit's
    durability: only when it is its own transaction. Inside an ``atomic()``
    block (a caller's, or a receiver's) it would relax that whole transaction."""
    return not connection.in_atomic_block


def complete(claimed: Claimed, *, using: str, durable: bool = True) -> bool:
    """Mark the delivery completed, if this claim still holds it.

    ``durable=False`` lets it commit without waiting for the disk, as for
    :func:`claim_one`.
    """
    connection = connections[using]
    if connection.vendor == "postgresql":
        sql = (
            _statements.COMPLETE_ONE
            if durable or not _relaxing(connection)
            else _statements.COMPLETE_ONE_RELAXED
        )
        return bool(_libpq.run(connection, sql, [claimed.id, claimed.token]))
    return bool(
        _held(claimed, using).update(
            state=State.COMPLETED,
            finished_at=Now(),
            lease_token=None,
            lease_expires_at=None,
            reason="",
        )
    )


def complete_many(claimed: Sequence[Claimed], *, using: str) -> set[int]:
    """Mark many deliveries completed at once; returns the ids this applied to.

    Each applies only while its own claim still holds the row, as with
    :func:`complete`. On PostgreSQL it is one statement; elsewhere one
    transaction.
    """
    if not claimed:
        return set()
    connection = connections[using]
    if connection.vendor == "postgresql":
        held = [[c.id for c in claimed], [c.token for c in claimed]]
        rows = _libpq.run(connection, _statements.COMPLETE_MANY_POSTGRESQL, held)
        return {row[0] for row in rows}
    with transaction.atomic(using=using):
        return {each.id for each in claimed if complete(each, using=using)}


def fail(
    claimed: Claimed, *, error: str, reason: str, retry_in: timedelta | None, using: str
) -> bool:
    """Record an error: retry after ``retry_in``, or dead when it is None.

    Applies only if this claim still holds the delivery. A NUL in ``error``
    is stored as the four characters ``\\x00``. A retry wakes the relays
    (on PostgreSQL): an engine's row is handed over again once due.
    """
    changes: dict[str, Any] = {
        # PostgreSQL refuses NUL in text, and the error is a receiver's words.
        "error": error.replace("\x00", "\\x00"),
        "reason": reason,
        "lease_token": None,
        "lease_expires_at": None,
    }
    if retry_in is None:
        changes.update(state=State.DEAD, finished_at=Now())
    else:
        changes.update(state=State.RETRYABLE, scheduled_at=after(retry_in))
    applied = bool(_held(claimed, using).update(**changes))
    if applied and retry_in is not None:
        wake_relay_for(claimed.id, using=using)
    return applied


def retry_later(claimed: Claimed, *, delay: timedelta, using: str) -> bool:
    """Put the delivery back for ``delay`` without spending an attempt."""
    applied = bool(
        _held(claimed, using).update(
            state=State.RETRYABLE,
            attempt=F("attempt") - 1,
            scheduled_at=after(delay),
            reason="retry",
            lease_token=None,
            lease_expires_at=None,
        )
    )
    if applied:
        wake_relay_for(claimed.id, using=using)
    return applied


def release(
    claimed: Sequence[Claimed], *, using: str, interrupted: bool = False
) -> int:
    """Give back deliveries a worker shutting down will not finish.

    The attempt counted at the claim is returned, so a shutdown spends none.
    ``interrupted`` says their receivers had started (the grace period ran
    out on them): each row's ``interrupted`` count then goes up by one, for
    the next run to see.
    """
    changes: dict[str, Any] = {
        "state": State.AVAILABLE,
        "attempt": F("attempt") - 1,
        "lease_token": None,
        "lease_expires_at": None,
        "leased_by": "",
    }
    if interrupted:
        changes["interrupted"] = F("interrupted") + 1
    released = 0
    for each in claimed:
        released += _held(each, using).update(**changes)
    return released


def extend(claimed: Iterable[Claimed], *, lease: timedelta, using: str) -> int:
    """Push the lease of deliveries still running out to now + ``lease``."""
    tokens = {each.token for each in claimed}
    if not tokens:
        return 0
    return (
        _rows(using)
        .filter(state=State.EXECUTING, lease_token__in=tokens)
        .update(lease_expires_at=after(lease))
    )


def rescue(*, using: str) -> int:
    """Take back rows whose lease expired: retryable, or dead if out of attempts.

    See :func:`take_back` for what becomes of each.
    """
    return take_back(_rows(using).expired())


def take_back(rows: Any) -> int:
    """Take ``rows`` (executing) from the worker that held them, which died or
    stopped answering: each becomes retryable, or dead if out of attempts.

    The lease token is cleared, so the worker, if only paused, can record
    nothing for them. Each row's ``interrupted`` count goes up by one: its
    receiver may have been cut short. A taken-back row keeps its
    ``scheduled_at``, and so its place among the due rows: it was due when
    it was claimed, and a crash is no reason to run it behind everything
    sent since. The attempt counted at the claim stays spent, so a receiver
    that kills its worker every time still ends dead.
    """
    dead = rows.filter(attempt__gte=F("max_attempts")).update(
        state=State.DEAD,
        reason="lease_expired",
        error="The worker holding this delivery stopped answering on its last attempt.",
        finished_at=Now(),
        lease_token=None,
        lease_expires_at=None,
        interrupted=F("interrupted") + 1,
    )
    retried = rows.update(
        state=State.RETRYABLE,
        reason="lease_expired",
        # Its engine's message was spent on the lost claim, and the relay
        # looks for rows not handed over since they fell due: without a new
        # scheduled_at to say so, it must see this one as not handed over.
        handed_over_at=None,
        lease_token=None,
        lease_expires_at=None,
        interrupted=F("interrupted") + 1,
    )
    return int(dead + retried)
