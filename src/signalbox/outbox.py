"""Moving deliveries through their states, in the database.

Every transition is one short statement that names the lease token it
expects, so a worker whose lease was taken over (it was paused, or lost its
connection) changes nothing: :func:`complete`, :func:`fail`, :func:`retry_later`
and :func:`release` return whether they applied. Times come from the
database's clock (``Now()``), never from a worker's.

The claim is the one place that needs SQL the ORM cannot write: on PostgreSQL
a single ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``;
on MySQL/MariaDB ``select_for_update(skip_locked=True)`` in a transaction; on
SQLite, which has one writer at a time, a plain ``UPDATE`` of a sub-select.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import connections, models, transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q, TextField, Value
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Cast, Now

from signalbox._states import WAITING, State

if TYPE_CHECKING:
    from signalbox.models import DeliveryQuerySet, WorkerRecord

NOTIFY_CHANNEL = "signalbox"


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """What a send asks the outbox to deliver to one background receiver."""

    signal: str
    receiver: str
    payload: dict[str, Any]
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 20
    delay: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Unreadable:
    """The payload of a claimed row that could not be read back as JSON.

    The database holds it (PostgreSQL's jsonb nests deeper than Python's
    parser goes, for one), so it cannot be handed to a receiver: running it
    records a ``decode_error`` saying why.
    """

    error: str


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a worker holds, with the token that proves it."""

    id: int
    signal: str
    receiver: str
    payload: Any
    attempt: int
    max_attempts: int
    enqueued_at: datetime
    token: uuid.UUID


def _rows(using: str) -> DeliveryQuerySet:
    from signalbox.models import Delivery  # the app registry must be ready first

    return Delivery.objects.using(using)


def _workers(using: str) -> models.QuerySet[WorkerRecord]:
    from signalbox.models import WorkerRecord

    return WorkerRecord.objects.using(using)


def after(delay: timedelta) -> ExpressionWrapper[CombinedExpression]:
    """The database's clock plus ``delay``, as an expression."""
    return ExpressionWrapper(Now() + Value(delay), output_field=DateTimeField())


def ago(age: timedelta) -> ExpressionWrapper[CombinedExpression]:
    """The database's clock minus ``age``, as an expression."""
    return ExpressionWrapper(Now() - Value(age), output_field=DateTimeField())


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


def enqueue(rows: Sequence[NewDelivery], *, using: str) -> list[int]:
    """Write ``rows`` in the caller's transaction on ``using``, in one INSERT.

    A rollback discards them; the commit makes them visible to workers (on
    PostgreSQL a trigger sends ``NOTIFY signalbox``, which is delivered at
    the commit). Returns the new ids; inside :func:`batch` the rows wait for
    the batch's end, and no ids are returned.
    """
    pending = _batch.get()
    if pending is not None:
        pending.setdefault(using, []).extend(rows)
        return []
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
    return [obj.pk for obj in created]


def claim(
    *,
    worker: str,
    queues: Iterable[str],
    receivers: Iterable[str],
    limit: int,
    lease: timedelta,
    using: str,
) -> list[Claimed]:
    """Take up to ``limit`` due rows of ``queues`` whose keys are ``receivers``.

    Each claimed row is ``executing``, its attempt counted, leased to
    ``worker`` until the database's now + ``lease``, under one fresh token.
    Rows are taken by priority, then due time, then id. Concurrent claims on
    PostgreSQL and MySQL/MariaDB skip each other's rows; SQLite serialises them.
    """
    token = uuid.uuid4()
    queues, receivers = list(queues), list(receivers)
    if limit <= 0 or not queues or not receivers:
        return []
    connection = connections[using]
    if connection.vendor == "postgresql":
        return _claim_postgresql(worker, queues, receivers, limit, lease, token, using)
    due = _rows(using).due().filter(queue__in=queues, receiver__in=receivers)
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
            state=State.EXECUTING,
            attempt=F("attempt") + 1,
            lease_token=token,
            leased_by=worker,
            lease_expires_at=after(lease),
            attempted_at=Now(),
        )
    return _claimed(_rows(using).filter(lease_token=token), token, using)


_CLAIM_POSTGRESQL = """
UPDATE signalbox_delivery SET
    state = 'executing', attempt = attempt + 1, lease_token = %s, leased_by = %s,
    lease_expires_at = statement_timestamp() + %s, attempted_at = statement_timestamp()
WHERE id IN (
    SELECT id FROM signalbox_delivery
    WHERE state IN ('scheduled', 'available', 'retryable')
      AND scheduled_at <= statement_timestamp()
      AND {queue} AND receiver = ANY(%s)
    ORDER BY priority, scheduled_at, id
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
RETURNING id, signal, receiver, payload, attempt, max_attempts, enqueued_at
"""


def _claim_postgresql(
    worker: str,
    queues: list[str],
    receivers: list[str],
    limit: int,
    lease: timedelta,
    token: uuid.UUID,
    using: str,
) -> list[Claimed]:
    connection = connections[using]
    # One queue (the usual case) is an equality, so the claim can walk the
    # partial "due" index in order instead of sorting every waiting row.
    one_queue = len(queues) == 1
    sql = _CLAIM_POSTGRESQL.format(
        queue="queue = %s" if one_queue else "queue = ANY(%s)"
    )
    queue: object = queues[0] if one_queue else queues
    params: list[Any] = [token, worker, lease, queue, receivers, limit]
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            params,
        )
        rows = cursor.fetchall()
    claimed = [
        Claimed(
            id=row[0],
            signal=row[1],
            receiver=row[2],
            payload=_payload(row[3], using),
            attempt=row[4],
            max_attempts=row[5],
            enqueued_at=row[6],
            token=token,
        )
        for row in rows
    ]
    return sorted(claimed, key=lambda c: c.id)


def _claimed(rows: Any, token: uuid.UUID, using: str) -> list[Claimed]:
    rows = rows.defer("payload").annotate(raw=Cast("payload", TextField()))
    return [
        Claimed(
            id=row.id,
            signal=row.signal,
            receiver=row.receiver,
            payload=_payload(row.raw, using),
            attempt=row.attempt,
            max_attempts=row.max_attempts,
            enqueued_at=row.enqueued_at,
            token=token,
        )
        for row in rows.order_by("id")
    ]


def _payload(raw: Any, using: str) -> Any:
    """Read one claimed row's payload; what cannot be read becomes :class:`Unreadable`.

    Row by row, after the claim: a payload that failed to parse inside the
    claim failed the whole batch, whose rows then sat leased until their
    leases expired, again on every claim, until they all ran out of attempts.
    """
    from signalbox.models import Delivery

    field = Delivery._meta.get_field("payload")
    try:
        return field.from_db_value(raw, None, connections[using])  # type: ignore[arg-type]
    except (RecursionError, ValueError) as error:
        return Unreadable(f"{type(error).__name__}: {error}")


def _held(claimed: Claimed, using: str) -> Any:
    return _rows(using).filter(
        id=claimed.id, state=State.EXECUTING, lease_token=claimed.token
    )


def complete(claimed: Claimed, *, using: str) -> bool:
    """Mark the delivery completed, if this claim still holds it."""
    return bool(
        _held(claimed, using).update(
            state=State.COMPLETED,
            finished_at=Now(),
            lease_token=None,
            lease_expires_at=None,
            reason="",
        )
    )


def fail(
    claimed: Claimed, *, error: str, reason: str, retry_in: timedelta | None, using: str
) -> bool:
    """Record an error: retry after ``retry_in``, or dead when it is None.

    Applies only if this claim still holds the delivery.
    """
    changes: dict[str, Any] = {
        "error": error,
        "reason": reason,
        "lease_token": None,
        "lease_expires_at": None,
    }
    if retry_in is None:
        changes.update(state=State.DEAD, finished_at=Now())
    else:
        changes.update(state=State.RETRYABLE, scheduled_at=after(retry_in))
    return bool(_held(claimed, using).update(**changes))


def retry_later(claimed: Claimed, *, delay: timedelta, using: str) -> bool:
    """Put the delivery back for ``delay`` without spending an attempt."""
    return bool(
        _held(claimed, using).update(
            state=State.RETRYABLE,
            attempt=F("attempt") - 1,
            scheduled_at=after(delay),
            reason="retry",
            lease_token=None,
            lease_expires_at=None,
        )
    )


def release(claimed: Sequence[Claimed], *, using: str) -> int:
    """Give back deliveries that never started (a worker shutting down).

    The attempt counted at the claim is returned, so a shutdown spends none.
    """
    released = 0
    for each in claimed:
        released += _held(each, using).update(
            state=State.AVAILABLE,
            attempt=F("attempt") - 1,
            lease_token=None,
            lease_expires_at=None,
            leased_by="",
        )
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
    """Take back rows whose lease expired: retryable, or dead if out of attempts."""
    expired = _rows(using).expired()
    dead = expired.filter(attempt__gte=F("max_attempts")).update(
        state=State.DEAD,
        reason="lease_expired",
        error="The worker holding this delivery stopped answering on its last attempt.",
        finished_at=Now(),
        lease_token=None,
        lease_expires_at=None,
    )
    retried = expired.update(
        state=State.RETRYABLE,
        reason="lease_expired",
        scheduled_at=Now(),
        lease_token=None,
        lease_expires_at=None,
    )
    return dead + retried


def bury_unknown(*, known: Iterable[str], grace: timedelta, using: str) -> int:
    """Mark dead the due rows whose key no live worker knows, past ``grace``."""
    return (
        _rows(using)
        .due()
        .exclude(receiver__in=list(known))
        .filter(enqueued_at__lt=ago(grace))
        .update(
            state=State.DEAD,
            reason="unknown_receiver",
            error="No running worker knows this receiver key (it was never imported).",
            finished_at=Now(),
        )
    )


def retry_dead(filter_: Q, *, using: str) -> int:
    """Make dead rows matching ``filter_`` available again, with fresh attempts."""
    return (
        _rows(using)
        .dead()
        .filter(filter_)
        .update(
            state=State.AVAILABLE,
            attempt=0,
            scheduled_at=Now(),
            finished_at=None,
            reason="",
        )
    )


def prune(*, completed: timedelta, dead: timedelta, using: str) -> tuple[int, int]:
    """Delete finished rows older than their retention; returns (completed, dead).

    Rows that have not finished are never touched.
    """
    rows = _rows(using)
    done, _ = rows.completed().filter(finished_at__lt=ago(completed)).delete()
    buried, _ = rows.dead().filter(finished_at__lt=ago(dead)).delete()
    return done, buried


def heartbeat(
    name: str, queues: list[str], receivers: list[str], *, using: str
) -> None:
    """Record that worker ``name`` is alive and which keys it runs."""
    _workers(using).update_or_create(
        name=name,
        defaults={"queues": queues, "receivers": receivers, "seen_at": Now()},
    )


def forget_worker(name: str, *, using: str) -> None:
    """Remove a stopped worker's record."""
    _workers(using).filter(name=name).delete()


def due_for(queues: Iterable[str], receivers: Iterable[str], *, using: str) -> bool:
    """Whether any row of ``queues`` with one of ``receivers``' keys is due."""
    return (
        _rows(using)
        .due()
        .filter(queue__in=list(queues), receiver__in=list(receivers))
        .exists()
    )


def known_receivers(*, stale_after: timedelta, using: str) -> set[str]:
    """Every key some worker seen within ``stale_after`` can run."""
    live = _workers(using).filter(seen_at__gte=ago(stale_after))
    return {key for keys in live.values_list("receivers", flat=True) for key in keys}
