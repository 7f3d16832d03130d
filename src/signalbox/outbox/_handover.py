"""Which committed rows an engine (Celery, RQ, …) may not have yet, and marking
the ones handed to it.

A row of an engine other than the embedded worker is handed over once its
transaction commits. Whatever was not (the broker was down, the process
died), and whatever fell due again (a retry, a rescued lease), the relay
finds here and hands over; a message that seems lost is handed over again
after ``redeliver``, then twice that, and so on. A duplicate message runs
nothing: the engine's task claims the row by id, under a lease.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connections
from django.db.models import Case, F, Min, Q, Value, When
from django.db.models.functions import Now

from signalbox._states import WAITING, State
from signalbox.outbox import _libpq, _statements
from signalbox.outbox._base import RELAY_CHANNEL, Handover, _rows, ago

_MOST_DOUBLINGS = 6  # a lost message is looked for again at most 64x later


def handover_due(
    *,
    engines: Iterable[str],
    grace: timedelta,
    redeliver: timedelta,
    limit: int,
    using: str,
) -> list[Handover]:
    """Up to ``limit`` due rows of ``engines`` their engine may not have.

    That is a row never handed over and older than ``grace`` (which leaves
    the sending process time to hand it over itself), a row never handed
    over that is not its sender's to hand over (a delayed row, a retry: the
    relay's alone, so no grace), a row not handed over since it last fell
    due, and a row handed over ``handovers`` times, the last one more than
    ``redeliver * 2 ** (handovers - 1)`` ago.
    """
    due = _rows(using).due().filter(engine__in=list(engines))
    # The sender hands over only the rows it wrote available; a retry that
    # ran before the sender's mark was written has no mark either, and
    # waited out the grace (ten seconds) after its backoff.
    senders = Q(enqueued_at__gte=ago(grace), state=State.AVAILABLE)
    never = Q(handed_over_at__isnull=True) & ~senders
    again = Q(handed_over_at__lt=F("scheduled_at"))
    late = Q(handed_over_at__lt=ago(redeliver))
    rows = (
        due.filter(never | again | late)
        .annotate(now=Now())
        .order_by("priority", "scheduled_at", "id")
        .values_list(
            "id",
            "engine",
            "queue",
            "priority",
            "handed_over_at",
            "scheduled_at",
            "handovers",
            "attempt",
            "now",
        )[:limit]
    )
    found = []
    for pk, engine, queue, priority, handed, scheduled, handovers, tried, now in rows:
        if handed is not None and handed >= scheduled:
            doublings = min(max(handovers - 1, 0), _MOST_DOUBLINGS)
            if handed > now - redeliver * 2**doublings:
                continue  # handed over lately enough: its message may yet come
        found.append(Handover(pk, engine, queue, priority, using, tried))
    return found


def next_due(
    *, engines: Iterable[str], grace: timedelta, using: str
) -> timedelta | None:
    """How long until the next row of ``engines`` that the relay is to hand
    over falls due, by the database's clock (negative: how long ago it fell
    due); None when there is none.

    That is a waiting row not handed over since it fell due, and not its
    sender's to hand over (written available within ``grace``): a retry, a
    delayed row, a row its sender could not hand over. The relay sleeps
    that long (within its cap), so a retry or a delayed row is handed over
    when it falls due, not at the next poll. A row handed over already
    waits for its redelivery, which the relay's poll finds.
    """
    found = (
        _rows(using)
        .waiting()
        .filter(engine__in=list(engines))
        .exclude(not_the_relays(grace))
        .aggregate(
            at=Min("scheduled_at"),
            # Never null when ``at`` is not (rows were read).
            now=Min(Now()),
        )
    )
    at: datetime | None = found["at"]
    now: datetime | None = found["now"]
    if at is None or now is None:
        return None
    return at - now


def wake_relay(engines: Iterable[str], *, using: str) -> None:
    """Wake the relays (on PostgreSQL) for new rows of ``engines`` that fall
    due later; sent at the commit of the caller's transaction, if any."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return  # the relay polls the next due time there
    with connection.cursor() as cursor:
        for alias in sorted(set(engines)):
            cursor.execute("SELECT pg_notify(%s, %s)", [RELAY_CHANNEL, alias])


def wake_relay_for(delivery_id: int, *, using: str) -> None:
    """Wake the relays (on PostgreSQL) for the row ``delivery_id``, which was
    just given a new due time (a retry); its engine's alias says which."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_notify(%s, engine) FROM signalbox_delivery WHERE id = %s",
            [RELAY_CHANNEL, delivery_id],
        )


def mark_handed_over(handovers: Iterable[Handover], *, using: str) -> int:
    """Record that the rows of ``handovers`` were handed to their engine just now.

    Rows that are no longer waiting, or were attempted since they were read
    (the engine ran them, and a retry may already be due), are left alone:
    marking those would hide the retry from the relay for ``redeliver``.
    Returns how many rows were marked.
    """
    handovers = list(handovers)
    if not handovers:
        return 0
    connection = connections[using]
    if connection.vendor == "postgresql":
        sql = (
            _statements.MARK_HANDED_OVER
            if connection.in_atomic_block
            else _statements.MARK_HANDED_OVER_RELAXED
        )
        handed = [[h.id for h in handovers], [h.attempt for h in handovers]]
        return len(_libpq.run(connection, sql, handed))
    by_attempt: dict[int, list[int]] = {}
    for each in handovers:
        by_attempt.setdefault(each.attempt, []).append(each.id)
    if not by_attempt:
        return 0
    unchanged = Q()
    for attempt, ids in by_attempt.items():
        unchanged |= Q(id__in=ids, attempt=attempt)
    fresh = Q(handed_over_at__isnull=True) | Q(handed_over_at__lt=F("scheduled_at"))
    return (
        _rows(using)
        .filter(unchanged, state__in=WAITING)
        .update(
            handovers=Case(When(fresh, then=Value(1)), default=F("handovers") + 1),
            handed_over_at=Now(),
        )
    )


def not_the_relays(grace: timedelta) -> Q:
    """Rows no relay needs to hand over now: written available within
    ``grace`` (their sender's to hand over), or handed over since they fell
    due (they wait in their engine's queue)."""
    senders = Q(enqueued_at__gte=ago(grace), state=State.AVAILABLE)
    return senders | Q(handed_over_at__gte=F("scheduled_at"))
