"""Rules about the outbox: rows that wait where nobody looks.

Each asks only when it matters: a project with no rows waiting and no
worker running (a developer's laptop) is told nothing. They reuse what
``signalbox status`` and ``manage.py check`` read (``outbox.known_receivers``,
``outbox.unstarted``, ``status.relay_warning``).
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Min

from signalbox import conf, engines, outbox, registry, status
from signalbox.doctor._findings import Context, Finding, Severity
from signalbox.models import Delivery, WorkerRecord


def _live_workers(context: Context) -> list[WorkerRecord]:
    """Embedded workers seen within two leases (relays run no receivers)."""
    since = outbox.ago(conf.get().lease * 2)
    return list(
        WorkerRecord.objects.using(context.using)
        .filter(seen_at__gte=since)
        .exclude(name__startswith=outbox.RELAY_PREFIX)
        .order_by("name")
    )


def unknown_receivers(context: Context) -> Iterator[Finding]:
    """SB130: rows of the embedded engine wait for a receiver key that no live
    worker can run, while workers run (with none, SB131 says so)."""
    if not _live_workers(context):
        return
    known = outbox.known_receivers(
        stale_after=conf.get().lease * 2, using=context.using
    )
    here = set(registry.registry.background())
    waiting = (
        Delivery.objects.using(context.using)
        .waiting()
        .filter(engine__in=engines.aliases(embedded=True))
        .exclude(receiver__in=known)
        .values_list("receiver", flat=True)
        .distinct()
        .order_by("receiver")
    )
    for key in waiting:
        elsewhere = (
            "this process knows it: the workers run older code"
            if key in here
            else "this process does not know it either: it was renamed or removed"
        )
        yield Finding(
            id="SB130",
            severity=Severity.ERROR,
            subject=key,
            location="-",
            why=f"Its rows wait, but no live worker knows the key ({elsewhere}).",
            fix=(
                "Deploy the code that defines it to the workers and restart "
                "them; if it is gone, retry or delete its rows."
            ),
        )


def unconsumed_queues(context: Context) -> Iterator[Finding]:
    """SB131: rows wait longer than ``UNSTARTED_WARNING_SECONDS`` on a queue
    nobody consumes: handed to an engine and not started, or due on an
    embedded queue no live worker claims."""
    for each in outbox.unstarted(
        older_than=conf.get().unstarted_warning, using=context.using
    ):
        where, hint = engines.engine_queue(each.engine, each.queue)
        yield _unconsumed(where, each.count, f"Start {hint}.")
    yield from _embedded_unconsumed(context)


def _embedded_unconsumed(context: Context) -> Iterator[Finding]:
    claimed = {q for worker in _live_workers(context) for q in worker.queues}
    due_before = outbox.ago(conf.get().unstarted_warning)
    rows = (
        Delivery.objects.using(context.using)
        .due()
        .filter(engine__in=engines.aliases(embedded=True), scheduled_at__lt=due_before)
        .exclude(queue__in=claimed)
        .values("engine", "queue")
        .annotate(oldest=Min("scheduled_at"))
        .order_by("engine", "queue")
    )
    for row in rows:
        count = (
            Delivery.objects.using(context.using)
            .due()
            .filter(engine=row["engine"], queue=row["queue"])
            .count()
        )
        where, hint = engines.engine_queue(row["engine"], row["queue"])
        yield _unconsumed(where, count, f"Start {hint}.")


def _unconsumed(where: str, count: int, fix: str) -> Finding:
    rows = f"{count} due deliver{'y has' if count == 1 else 'ies have'}"
    limit = int(conf.get().unstarted_warning.total_seconds())
    return Finding(
        id="SB131",
        severity=Severity.ERROR,
        subject=where,
        location="-",
        why=(
            f"{rows} waited on it for more than {limit} s, and no live "
            f"worker consumes it: their receivers do not run."
        ),
        fix=fix,
    )


def relay_missing(context: Context) -> Iterator[Finding]:
    """SB132: rows of an engine are due that only a relay hands over, and no
    relay was seen (``manage.py check``'s signalbox.W005, same reading)."""
    if not engines.aliases(embedded=False):
        return
    warning = status.relay_warning(using=context.using)
    if warning:
        yield Finding(
            id="SB132",
            severity=Severity.ERROR,
            subject=f"database {context.using!r}",
            location="-",
            why=warning,
            fix=status.RELAY_HINT,
        )


def worker_skew(context: Context) -> Iterator[Finding]:
    """SB133: a live worker whose background receiver keys differ from this
    process's (a rolling deploy half done, or a worker on old code)."""
    here = set(registry.registry.background())
    for worker in _live_workers(context):
        theirs = set(worker.receivers)
        missing, extra = sorted(here - theirs), sorted(theirs - here)
        if not (missing or extra):
            continue
        parts = []
        if missing:
            parts.append(f"it lacks {', '.join(missing)}")
        if extra:
            parts.append(f"it runs {', '.join(extra)}, which this process lacks")
        yield Finding(
            id="SB133",
            severity=Severity.WARNING,
            subject=f"worker {worker.name}",
            location="-",
            why=(
                f"Its receivers differ from this process's: {'; '.join(parts)}. "
                f"Rows for a key it lacks wait for another worker."
            ),
            fix="Deploy the same code to every worker and restart the old ones.",
        )
