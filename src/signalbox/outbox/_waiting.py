"""Rows that wait where nobody may be looking: handed to an engine and not
started for long, or due for a worker that does not run them.

Neither is an error the outbox can see from one row: a message sits in a
broker queue that no worker consumes, or a ``signalbox worker`` runs other
queues or another engine. These queries let ``signalbox status``, the relay
and the embedded worker say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db.models import Count, F, Min, Q, QuerySet

from signalbox.outbox._base import _rows, ago

if TYPE_CHECKING:
    from signalbox.models import Delivery


@dataclass(frozen=True, slots=True)
class Waiting:
    """Rows of one engine and one signalbox queue that wait."""

    engine: str
    queue: str
    count: int
    due_since: datetime
    """When the oldest of them fell due."""


def unstarted(*, older_than: timedelta, using: str) -> list[Waiting]:
    """Per engine and queue, the waiting rows handed to their engine since they
    fell due, more than ``older_than`` ago, that no worker has started.

    A row handed over again (its message seemed lost) was first handed over
    at least ``REDELIVER_SECONDS`` ago, so it counts whatever its last
    hand-over's age: a queue nobody consumes stays in the answer while the
    relay keeps handing its rows over.
    """
    handed_since_due = Q(handed_over_at__gte=F("scheduled_at"))
    long_ago = Q(handed_over_at__lt=ago(older_than)) | Q(handovers__gt=1)
    rows = (
        _rows(using)
        .waiting()
        .filter(handed_since_due, long_ago)
        .values("engine", "queue")
        .annotate(count=Count("id"), due_since=Min("scheduled_at"))
        .order_by("engine", "queue")
    )
    return [Waiting(**row) for row in rows]


def due_elsewhere(
    *, engines: Iterable[str], queues: Iterable[str], using: str
) -> list[Waiting]:
    """Per engine and queue, the due rows that a worker claiming ``queues`` of
    ``engines`` does not run: other engines' rows, and other queues'."""
    due = _rows(using).due()
    return _per_queue(due.exclude(engine__in=list(engines), queue__in=list(queues)))


def due_per_queue(*, using: str) -> list[Waiting]:
    """Per engine and queue, every due row: one grouped read of the partial
    index of waiting rows, so its cost follows what waits, not the table."""
    return _per_queue(_rows(using).due())


def _per_queue(rows: QuerySet[Delivery]) -> list[Waiting]:
    grouped = (
        rows.values("engine", "queue")
        .annotate(count=Count("id"), due_since=Min("scheduled_at"))
        .order_by("engine", "queue")
    )
    return [Waiting(**row) for row in grouped]
