"""The states of a delivery.

Kept apart from the models, which cannot be imported before the app registry.
"""

from __future__ import annotations

from django.db import models


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
