"""What is in the outbox: ``manage.py signalbox status``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q
from django.utils import timezone
from django.utils.translation import ngettext

from signalbox import conf, engines, outbox
from signalbox._states import WAITING, State
from signalbox.engines import engine_queue


@dataclass(frozen=True, slots=True)
class Line:
    """Deliveries of one receiver on one queue, by state."""

    queue: str
    receiver: str
    counts: dict[str, int]
    oldest_waiting: datetime | None

    def oldest_age(self, now: datetime) -> timedelta | None:
        """How long the oldest waiting row has waited."""
        return now - self.oldest_waiting if self.oldest_waiting else None


@dataclass(frozen=True, slots=True)
class Report:
    """The whole outbox, the receiver keys no running worker knows, and
    whether an engine's rows wait for a relay that nobody runs."""

    lines: list[Line]
    unknown: list[str]
    now: datetime = field(default_factory=timezone.now)
    unstarted: list[outbox.Waiting] = field(default_factory=list)
    """Rows handed to an engine long ago that no worker started, by engine
    and queue (see :func:`unstarted`)."""
    relay_warning: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form of the report."""
        return asdict(self)

    def as_text(self) -> str:
        """A table for people."""
        states = [s.value for s in State]
        rows = [
            f"{'queue':<12} {'receiver':<48} "
            + " ".join(f"{s:>9}" for s in states)
            + "  oldest"
        ]
        for line in self.lines:
            age = line.oldest_age(self.now)
            rows.append(
                f"{line.queue:<12} {line.receiver:<48} "
                + " ".join(f"{line.counts.get(s, 0):>9}" for s in states)
                + f"  {_age(age)}"
            )
        if self.unknown:
            rows.append("\nNo running worker knows these receivers (their rows wait):")
            rows.extend(f"  {key}" for key in self.unknown)
        rows.extend(unstarted_text(self.unstarted, self.now))
        if self.relay_warning:
            rows.append(f"\n{self.relay_warning}\n{RELAY_HINT}")
        return "\n".join(rows)


def report(*, using: str) -> Report:
    """Count deliveries per queue, receiver and state."""
    from signalbox.models import Delivery  # the app registry must be ready first

    grouped: Any = (
        Delivery.objects.using(using)
        .values("queue", "receiver")
        .annotate(
            **{state.value: Count("id", filter=Q(state=state)) for state in State},
            oldest=Min("enqueued_at", filter=Q(state__in=WAITING)),
        )
        .order_by("queue", "receiver")
    )
    lines = [
        Line(
            queue=row["queue"],
            receiver=row["receiver"],
            counts={
                state.value: row[state.value] for state in State if row[state.value]
            },
            oldest_waiting=row["oldest"],
        )
        for row in grouped
    ]
    known = outbox.known_receivers(stale_after=conf.get().lease * 2, using=using)
    waiting = {line.receiver for line in lines if line.oldest_waiting is not None}
    return Report(
        lines=lines,
        unknown=sorted(waiting - known),
        unstarted=unstarted(using=using),
        relay_warning=relay_warning(using=using),
    )


def unstarted(*, using: str) -> list[outbox.Waiting]:
    """Rows handed to an engine more than ``UNSTARTED_WARNING_SECONDS`` ago
    that no worker has started, by engine and queue: a queue no worker
    consumes, or whose workers are that far behind."""
    return outbox.unstarted(older_than=conf.get().unstarted_warning, using=using)


def unstarted_text(waiting: list[outbox.Waiting], now: datetime) -> list[str]:
    """The warning ``signalbox status`` prints about :func:`unstarted` rows,
    each with the queue's name in the engine's terms and how to consume it."""
    if not waiting:
        return []
    limit = _age(conf.get().unstarted_warning)
    lines = [
        f"\nWARNING: handed to an engine more than {limit} ago and not started; "
        f"no worker consumes these queues, or their workers are that far behind:"
    ]
    for each in waiting:
        where, hint = engine_queue(each.engine, each.queue)
        count = ngettext("%d delivery", "%d deliveries", each.count) % each.count
        lines.append(
            f"  {where}: {count}, due for {_age(now - each.due_since)}; start {hint}"
        )
    return lines


RELAY_HINT = (
    "Run `python manage.py signalbox relay` (one, anywhere; or `signalbox "
    "worker --relay`) next to the engine's own workers."
)
"""What to do about :func:`relay_warning`."""


def waiting_for_missing_relay(*, using: str) -> dict[str, int]:
    """How many due rows of each engine wait for a relay when none was seen
    within two leases (see :func:`relay_warning`); empty when a relay runs,
    when nothing waits for one, and, at no query, with no engine but the
    embedded worker."""
    aliases = engines.aliases(embedded=False)
    if not aliases:
        return {}
    settings = conf.get()
    if outbox.relay_seen(stale_after=settings.lease * 2, using=using):
        return {}
    return outbox.waiting_for_relay(
        engines=aliases, grace=settings.handover_grace, using=using
    )


def relay_warning(*, using: str) -> str | None:
    """Why rows of an engine other than the embedded worker wait for a
    relay, when they do and no relay was seen within two leases; else None.

    Only the relay hands an engine its retries and delayed rows once due
    (and the rows its sender could not hand over): without one they wait
    for good. A project with no such engine, or none of whose rows need the
    relay now, is told nothing, and costs no query when it has no engine.
    """
    waiting = waiting_for_missing_relay(using=using)
    if not waiting:
        return None
    settings = conf.get()
    counts = " and ".join(
        ngettext(
            "%(count)d delivery of engine %(engine)r",
            "%(count)d deliveries of engine %(engine)r",
            count,
        )
        % {"count": count, "engine": alias}
        for alias, count in waiting.items()
    )
    seconds = int((settings.lease * 2).total_seconds())
    return (
        f"No relay was seen in the last {seconds} s, and {counts} "
        f"{'is' if sum(waiting.values()) == 1 else 'are'} due that only a "
        f"relay hands over (retries, delayed deliveries, deliveries their "
        f"sender could not hand over): they wait until one runs."
    )


def _age(age: timedelta | None) -> str:
    if age is None:
        return "-"
    seconds = int(age.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
