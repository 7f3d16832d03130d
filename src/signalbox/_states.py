"""The states of a delivery.

Kept apart from the models, which cannot be imported before the app registry.
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class State(models.TextChoices):
    """Where a delivery is in its life."""

    SCHEDULED = "scheduled", "scheduled"
    AVAILABLE = "available", "available"
    EXECUTING = "executing", "executing"
    RETRYABLE = "retryable", "retryable"
    COMPLETED = "completed", "completed"
    DEAD = "dead", "dead"


WAITING = (State.SCHEDULED, State.AVAILABLE, State.RETRYABLE)
"""States a worker may claim from, once ``scheduled_at`` has passed."""

FINISHED = (State.COMPLETED, State.DEAD)
"""States no worker will run again on its own: a payload here may be erased."""

RETRIABLE = (State.DEAD, State.RETRYABLE)
"""States a person may send back to ``available`` with fresh attempts."""


# What "due" means, written once: a waiting row whose scheduled_at has passed
# by the database's clock. due() is the ORM's spelling (Delivery.objects.due()
# and the ORM's claims), due_sql() the outbox's SQL (outbox._statements); both
# are built from WAITING here, so the two cannot drift apart.
_WAITING_SQL = ", ".join(f"'{state}'" for state in WAITING)


def due() -> models.Q:
    """The filter of due rows: waiting, ``scheduled_at`` passed by the
    database's clock."""
    return models.Q(state__in=WAITING, scheduled_at__lte=Now())


def due_sql(now: str, state: str = f"state IN ({_WAITING_SQL})") -> str:
    """:func:`due` as a SQL condition, ``now`` being the vendor's clock
    (``statement_timestamp()``, ``NOW(6)``); ``state`` narrows the waiting
    states, for a walk of one state at a time (``state = %s``)."""
    return f"{state} AND scheduled_at <= {now}"
