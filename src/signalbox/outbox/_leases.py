"""Every transition a lease token guards: completing, failing, retrying
later, releasing and extending a claim, and taking back expired leases.

The claims that create the leases are in :mod:`._claims`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import F
from django.db.models.functions import Now

from signalbox._states import State
from signalbox.outbox import _libpq, _statements
from signalbox.outbox._base import Claimed, _rows, after
from signalbox.outbox._claims import relaxing
from signalbox.outbox._conflicts import retried
from signalbox.outbox._handover import wake_relay_for


def _held(claimed: Claimed, using: str) -> Any:
    return _rows(using).filter(
        id=claimed.id, state=State.EXECUTING, lease_token=claimed.token
    )


def complete(claimed: Claimed, *, using: str, durable: bool = True) -> bool:
    """Mark the delivery completed, if this claim still holds it.

    ``durable=False`` lets it commit without waiting for the disk, as for
    :func:`claim_one`.
    """
    connection = connections[using]
    if connection.vendor == "postgresql":
        sql = (
            _statements.COMPLETE_ONE
            if durable or not relaxing(connection)
            else _statements.COMPLETE_ONE_RELAXED
        )
        return bool(
            retried(using, _libpq.run, connection, sql, [claimed.id, claimed.token])
        )
    return bool(
        retried(
            using,
            _held(claimed, using).update,
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
        sql = _statements.COMPLETE_MANY_POSTGRESQL
        rows = retried(using, _libpq.run, connection, sql, held)
        return {row[0] for row in rows}
    return retried(using, _complete_each, claimed, using)


def _complete_each(claimed: Sequence[Claimed], using: str) -> set[int]:
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
    applied = bool(retried(using, _held(claimed, using).update, **changes))
    if applied and retry_in is not None:
        wake_relay_for(claimed.id, using=using)
    return applied


def retry_later(claimed: Claimed, *, delay: timedelta, using: str) -> bool:
    """Put the delivery back for ``delay`` without spending an attempt."""
    applied = bool(
        retried(
            using,
            _held(claimed, using).update,
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
        released += retried(using, _held(each, using).update, **changes)
    return released


def extend(claimed: Iterable[Claimed], *, lease: timedelta, using: str) -> int:
    """Push the lease of deliveries still running out to now + ``lease``."""
    tokens = {each.token for each in claimed}
    if not tokens:
        return 0
    running = _rows(using).filter(state=State.EXECUTING, lease_token__in=tokens)
    return retried(using, running.update, lease_expires_at=after(lease))


def rescue(*, using: str) -> int:
    """Take back rows whose lease expired: retryable, or dead if out of attempts.

    See :func:`take_back` for what becomes of each.
    """
    return retried(using, take_back, _rows(using).expired())


def expired(*, using: str) -> int:
    """How many executing rows have a lease that ran out (what :func:`rescue`
    would take back)."""
    return int(_rows(using).expired().count())


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
