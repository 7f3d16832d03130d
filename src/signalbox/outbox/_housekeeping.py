"""Transitions no lease guards: rescue's neighbours, retries by a person,
erasure, pruning, and the workers' own records."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, Q
from django.db.models.functions import Now

from signalbox._states import FINISHED, RETRIABLE, State
from signalbox.outbox._base import RELAY_PREFIX, _rows, _workers, ago
from signalbox.outbox._handover import not_the_relays


def bury_unknown(
    *,
    known: Iterable[str],
    grace: timedelta,
    using: str,
    engines: Iterable[str] = ("default",),
) -> int:
    """Mark dead the due rows of ``engines`` whose key no live worker knows,
    past ``grace``."""
    return (
        _rows(using)
        .due()
        .filter(engine__in=list(engines))
        .exclude(receiver__in=list(known))
        .filter(enqueued_at__lt=ago(grace))
        .update(
            state=State.DEAD,
            reason="unknown_receiver",
            error="No running worker knows this receiver key (it was never imported).",
            finished_at=Now(),
        )
    )


def bring_forward(filter_: Q, *, until: Any = None, using: str) -> int:
    """Make the waiting rows matching ``filter_`` due now, by the database's clock.

    Only rows not yet due change; with ``until`` (a datetime, or an
    expression such as :func:`after`), only those scheduled at or before it.
    Their attempts are left as they are. This is how a test skips a backoff
    or a delay instead of waiting it out (``signalbox.testing.drain``).
    Returns how many rows changed.
    """
    rows = _rows(using).waiting().filter(filter_).filter(scheduled_at__gt=Now())
    if until is not None:
        rows = rows.filter(scheduled_at__lte=until)
    return rows.update(scheduled_at=Now())


def retry(filter_: Q, *, using: str) -> int:
    """Make dead and retryable rows matching ``filter_`` available now.

    Each gets fresh attempts (its ``attempt`` goes back to 0); its last error
    is kept until the next attempt replaces it. Rows in other states, and
    rows whose payload was erased (nothing is left to run), are left alone.
    Returns how many rows changed.
    """
    return (
        _rows(using)
        .filter(state__in=RETRIABLE, payload_erased_at__isnull=True)
        .filter(filter_)
        .update(
            state=State.AVAILABLE,
            attempt=0,
            scheduled_at=Now(),
            finished_at=None,
            reason="",
        )
    )


def retry_dead(filter_: Q, *, using: str) -> int:
    """:func:`retry` for the dead rows matching ``filter_`` only."""
    return retry(Q(state=State.DEAD) & filter_, using=using)


@dataclass(slots=True)
class RetriedIds:
    """What :func:`retry_dead_ids` did with each id it was given."""

    retried: list[int] = field(default_factory=list)
    """Dead deliveries made available again."""
    missing: list[int] = field(default_factory=list)
    """Ids no delivery has (never was, or pruned)."""
    not_dead: dict[int, str] = field(default_factory=dict)
    """Deliveries left alone because they are not dead, with their state."""
    erased: list[int] = field(default_factory=list)
    """Dead deliveries whose payload was erased: nothing is left to run."""

    @property
    def refused(self) -> int:
        """How many ids were not retried, for whatever reason."""
        return len(self.missing) + len(self.not_dead) + len(self.erased)


def retry_dead_ids(ids: Iterable[int], *, using: str) -> RetriedIds:
    """:func:`retry_dead` for the deliveries ``ids``, saying what became of each.

    The named rows are read and changed in one transaction, with their row
    locks held where the database has them, so the account is the change:
    each id is in exactly one of the result's lists.
    """
    wanted = sorted(set(ids))
    result = RetriedIds()
    with transaction.atomic(using=using):
        rows = (
            _rows(using)
            .select_for_update()
            .filter(id__in=wanted)
            .values_list("id", "state", "payload_erased_at")
        )
        found = {pk: (state, erased_at) for pk, state, erased_at in rows}
        for pk in wanted:
            if pk not in found:
                result.missing.append(pk)
            elif found[pk][0] != State.DEAD:
                result.not_dead[pk] = str(found[pk][0])
            elif found[pk][1] is not None:
                result.erased.append(pk)
            else:
                result.retried.append(pk)
        if result.retried:
            retry_dead(Q(id__in=result.retried), using=using)
    return result


def erase_payloads(filter_: Q, *, using: str) -> int:
    """Erase the payload of finished rows matching ``filter_``; returns how many.

    ``payload`` becomes null and ``payload_erased_at`` the database's now; the
    row keeps its id, signal, receiver, state, reason, error and times. Rows
    that may still run (waiting or executing) and rows already erased are
    left alone; an erased row can never be retried.
    """
    return (
        _rows(using)
        .filter(state__in=FINISHED, payload_erased_at__isnull=True)
        .filter(filter_)
        .update(payload=None, payload_erased_at=Now())
    )


@dataclass(frozen=True, slots=True)
class Pruned:
    """What :func:`prune` did, in rows."""

    completed: int
    """Completed rows deleted."""
    dead: int
    """Dead rows deleted."""
    erased: int
    """Dead rows kept, with their payload erased."""


def prune(
    *, completed: timedelta, dead: timedelta, dead_payload: timedelta, using: str
) -> Pruned:
    """Delete finished rows past their retention; erase old dead payloads.

    Completed rows are deleted once finished longer than ``completed``, dead
    rows once finished longer than ``dead``. A dead row finished longer than
    ``dead_payload`` but not yet deleted has its payload erased, as by
    :func:`erase_payloads`, and keeps everything else for a person to read.
    Rows that have not finished are never touched.
    """
    rows = _rows(using)
    done, _ = rows.completed().filter(finished_at__lt=ago(completed)).delete()
    buried, _ = rows.dead().filter(finished_at__lt=ago(dead)).delete()
    erased = erase_payloads(
        Q(state=State.DEAD, finished_at__lt=ago(dead_payload)), using=using
    )
    return Pruned(completed=done, dead=buried, erased=erased)


def heartbeat(
    name: str,
    queues: list[str],
    receivers: list[str],
    *,
    using: str,
    liveness_key: int | None = None,
) -> None:
    """Record that worker ``name`` is alive, which keys it runs, and the
    advisory lock it holds while it lives (``liveness_key``, or None)."""
    _workers(using).update_or_create(
        name=name,
        defaults={
            "queues": queues,
            "receivers": receivers,
            "seen_at": Now(),
            "liveness_key": liveness_key,
        },
    )


def forget_worker(name: str, *, using: str) -> None:
    """Remove a stopped worker's record."""
    _workers(using).filter(name=name).delete()


def due_for(
    queues: Iterable[str],
    receivers: Iterable[str],
    *,
    using: str,
    engines: Iterable[str] = ("default",),
) -> bool:
    """Whether any row of ``engines`` and ``queues`` with one of ``receivers``'
    keys is due."""
    return (
        _rows(using)
        .due()
        .filter(
            engine__in=list(engines),
            queue__in=list(queues),
            receiver__in=list(receivers),
        )
        .exists()
    )


def known_receivers(*, stale_after: timedelta, using: str) -> set[str]:
    """Every key some worker seen within ``stale_after`` can run."""
    live = _workers(using).filter(seen_at__gte=ago(stale_after))
    return {key for keys in live.values_list("receivers", flat=True) for key in keys}


def live_queues(*, stale_after: timedelta, using: str) -> set[str]:
    """Every queue some embedded worker seen within ``stale_after`` consumes
    (a relay's record names none)."""
    live = _workers(using).filter(seen_at__gte=ago(stale_after))
    return {
        queue for queues in live.values_list("queues", flat=True) for queue in queues
    }


def relay_seen(*, stale_after: timedelta, using: str) -> bool:
    """Whether a relay recorded its heartbeat within ``stale_after``.

    A relay keeps a worker record as the embedded workers do, named with
    :data:`RELAY_PREFIX` and listing no receivers (it runs none).
    """
    return (
        _workers(using)
        .filter(name__startswith=RELAY_PREFIX, seen_at__gte=ago(stale_after))
        .exists()
    )


def waiting_for_relay(
    *, engines: Iterable[str], grace: timedelta, using: str
) -> dict[str, int]:
    """How many due rows of each of ``engines`` only a relay hands over:
    retries, delayed rows, and rows their sender did not hand over within
    ``grace``. Engines with none are left out.

    Rows written within ``grace`` are their sender's to hand over, and rows
    handed over since they fell due wait in their engine's queue, so an
    engine that keeps up leaves nothing here.
    """
    counted = (
        _rows(using)
        .due()
        .filter(engine__in=list(engines))
        .exclude(not_the_relays(grace))
        .values_list("engine")
        .annotate(count=Count("id"))
        .order_by("engine")
    )
    return dict(counted)
