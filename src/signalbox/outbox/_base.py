"""What the outbox's parts share: the values they pass and the clock they use."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models import DateTimeField, ExpressionWrapper, Value
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Now

if TYPE_CHECKING:
    from signalbox.models import DeliveryQuerySet, WorkerRecord

NOTIFY_CHANNEL = "signalbox"
"""Where a write of rows for the embedded workers wakes them (PostgreSQL)."""

RELAY_CHANNEL = "signalbox_relay"
"""Where a write that sets an engine's row due later (a retry, a delayed row)
wakes the relay, with the engine's alias as the payload (PostgreSQL). A
channel of its own: the embedded workers have nothing to claim then."""

RELAY_PREFIX = "relay:"
"""How a relay's worker record (its heartbeat) is named: ``relay:host:pid:…``."""


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
    engine: str = "default"


@dataclass(frozen=True, slots=True)
class Unreadable:
    """The payload of a claimed row that could not be read back as JSON.

    The database holds it (PostgreSQL's jsonb nests deeper than Python's
    parser goes, for one), so it cannot be handed to a receiver: running it
    records a ``decode_error`` saying why.
    """

    error: str


@dataclass(frozen=True, slots=True)
class Handover:
    """A committed delivery an engine is to be given: its id, and where it goes."""

    id: int
    engine: str
    queue: str
    priority: int
    using: str
    attempt: int = 0
    """The row's attempts when it was read: a row attempted since (the engine
    ran it before the hand-over was marked) is not marked."""


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
    interrupted: int = 0
    """How many earlier runs were taken back before they finished (see
    :attr:`signalbox.DeliveryContext.interrupted`)."""


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
