"""What a background receiver can learn about the delivery it is running."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """The delivery being run: its id, which attempt this is, and when it was sent.

    ``id`` is stable across attempts, which makes it a natural idempotency key.
    ``interrupted`` counts the earlier runs that were taken back before they
    finished: 0 unless a run may have been cut short (a worker's shutdown
    gave it back, or a worker died or stopped answering while holding it).
    """

    id: int
    attempt: int
    enqueued_at: datetime
    interrupted: int = 0


_current: contextvars.ContextVar[DeliveryContext | None] = contextvars.ContextVar(
    "signalbox_delivery", default=None
)


def current_delivery() -> DeliveryContext | None:
    """The delivery the calling receiver is running for, or None outside one."""
    return _current.get()
