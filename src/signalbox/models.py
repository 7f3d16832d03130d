"""The outbox table: one row per (send, background receiver).

A row is written in the sender's transaction, so it exists exactly when the
send's transaction committed. Its ``state`` moves through Oban's vocabulary::

    scheduled ─┐
    available ─┼─> executing ─┬─> completed
    retryable ─┘      │       ├─> retryable (an error, attempts left; or Retry)
                      │       └─> dead      (no attempts left, or not retryable)
                      └─ lease expired ─> retryable / dead

``attempt`` counts claims, so a receiver that kills its worker every time
still ends dead. Times that decide anything (``scheduled_at``,
``lease_expires_at``) are set from the database's clock, never a worker's.
The methods that move rows between states live in :mod:`signalbox.outbox`.
"""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.db.models.functions import Now

from signalbox import _states
from signalbox._states import WAITING, State


class DeliveryQuerySet(models.QuerySet["Delivery"]):
    """Deliveries, filtered by the names of their states."""

    def waiting(self) -> DeliveryQuerySet:
        """Rows that will run once due: scheduled, available or retryable."""
        return self.filter(state__in=WAITING)

    def due(self) -> DeliveryQuerySet:
        """Waiting rows whose time has come, by the database's clock."""
        return self.filter(_states.due())

    def executing(self) -> DeliveryQuerySet:
        """Rows a worker holds now."""
        return self.filter(state=State.EXECUTING)

    def expired(self) -> DeliveryQuerySet:
        """Executing rows whose lease ran out: their worker died or stalled."""
        return self.executing().filter(lease_expires_at__lt=Now())

    def completed(self) -> DeliveryQuerySet:
        """Rows whose receiver finished."""
        return self.filter(state=State.COMPLETED)

    def dead(self) -> DeliveryQuerySet:
        """Rows that will not run again unless a person retries them."""
        return self.filter(state=State.DEAD)


class Delivery(models.Model):
    """One background receiver's delivery of one send."""

    id = models.BigAutoField(primary_key=True)
    signal = models.CharField(max_length=255, help_text="The signal's dotted name.")
    receiver = models.CharField(
        max_length=255, help_text="The receiver's registry key."
    )
    # Database defaults too, so that an INSERT written before these columns
    # existed (an older release's worker, a hand-written row) still works.
    engine = models.CharField(
        max_length=64,
        db_default="default",
        help_text="The alias in SIGNALBOX['ENGINES'] of the engine that runs it.",
    )
    queue = models.CharField(max_length=64, default="default")
    priority = models.SmallIntegerField(
        default=0, help_text="Lower runs first among rows that are due."
    )
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.AVAILABLE
    )
    payload = models.JSONField(
        null=True, help_text="The encoded sender and arguments; null once erased."
    )
    payload_erased_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the payload was erased, by a person or by pruning.",
    )
    attempt = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=20)
    enqueued_at = models.DateTimeField(db_default=Now())
    scheduled_at = models.DateTimeField(db_default=Now())
    handed_over_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the row was last handed to its engine (not the embedded one).",
    )
    handovers = models.PositiveSmallIntegerField(
        db_default=0, help_text="Hand-overs since the row last fell due."
    )
    interrupted = models.PositiveIntegerField(
        db_default=0,
        help_text="Runs taken back before they finished: given back at a "
        "worker's shutdown, or rescued from a worker that died or stopped "
        "answering.",
    )
    attempted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True)
    leased_by = models.CharField(max_length=255, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(
        max_length=32,
        blank=True,
        default="",
        help_text="Why the row is dead or was last retried, as a short code.",
    )
    error = models.TextField(
        blank=True, default="", help_text="The last error, with its traceback."
    )

    objects: ClassVar[DeliveryQuerySet] = DeliveryQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        verbose_name_plural = "deliveries"
        # Rows change only through the outbox's transitions: nobody adds,
        # edits or deletes one by hand, so only these permissions exist.
        default_permissions = ("view",)
        permissions = (
            ("retry_delivery", "Can retry dead and retryable deliveries"),
            ("erase_delivery_payload", "Can erase the payload of finished deliveries"),
        )
        indexes: ClassVar[list[models.Index]] = [
            models.Index(
                fields=["engine", "queue", "priority", "scheduled_at", "id"],
                name="signalbox_delivery_due",
                condition=models.Q(state__in=list(WAITING)),
            ),
            models.Index(
                fields=["lease_expires_at"],
                name="signalbox_delivery_leases",
                condition=models.Q(state=State.EXECUTING),
            ),
            # Partial, like the two above, so that the INSERT on the request
            # path updates one index besides the primary key.
            models.Index(
                fields=["state", "finished_at"],
                name="signalbox_delivery_finished",
                condition=models.Q(state__in=[State.COMPLETED, State.DEAD]),
            ),
        ]

    def __str__(self) -> str:
        # Never the payload: it may hold personal data or secrets.
        return (
            f"delivery {self.pk} of {self.receiver} "
            f"({self.state}, attempt {self.attempt})"
        )

    def __repr__(self) -> str:
        return f"<Delivery {self.pk} {self.receiver} {self.state}>"


class WorkerRecord(models.Model):
    """A running worker, and the receiver keys it can run.

    Workers refresh their row as a heartbeat. A delivery whose key no live
    worker knows is reported by ``signalbox status``, and goes dead only
    after a grace window, so a rolling deploy does not kill new receivers.
    """

    name = models.CharField(max_length=255, unique=True)
    queues = models.JSONField(default=list)
    receivers = models.JSONField(default=list)
    started_at = models.DateTimeField(db_default=Now())
    seen_at = models.DateTimeField(db_default=Now())
    liveness_key = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="The PostgreSQL advisory lock this worker holds for as long "
        "as its process lives; null when it holds none (its leases alone "
        "tell whether it is alive).",
    )

    class Meta:
        default_permissions = ("view",)  # written by workers only

    def __str__(self) -> str:
        return self.name
