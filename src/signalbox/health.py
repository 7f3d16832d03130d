"""Whether the outbox is healthy: ``manage.py signalbox health`` and the view
of :mod:`signalbox.contrib.health`, for probes, cron and load balancers.

Five checks, each with its figure and its limit:

``oldest_due``
    Seconds the oldest due row (waiting, its time come, not started) has
    waited since it fell due; fails past ``HEALTH_MAX_WAIT_SECONDS``.
``dead``
    Rows that went dead within the last ``HEALTH_DEAD_WINDOW_SECONDS``; fails
    past ``HEALTH_MAX_DEAD``. A window rather than every dead row kept: dead
    rows stay until a person retries them or ``prune`` deletes them (30 days
    by default), so a total would keep a probe red long after the incident,
    and a probe that is always red is soon ignored. A window is a rate: it
    turns red when deliveries die, and green again on its own.
``workers``
    Queues of the embedded worker that have due rows and no worker seen
    within two leases consuming them.
``engines``
    Queues of other engines (Celery, RQ, …) whose handed-over rows nobody
    started within ``UNSTARTED_WARNING_SECONDS`` (as ``signalbox status``
    warns).
``relay``
    Due rows of other engines that only a relay hands over, while no relay
    was seen within two leases (as ``signalbox status`` warns).

The queries, all on indexes: one grouped read of the due rows (the partial
index of waiting rows), one count of recent dead rows (the partial index of
finished rows), and, when rows are due, one read of the worker records (a
row per worker); with an engine besides the embedded worker, ``signalbox
status``'s queries for unstarted rows and for the relay (two or three).
No payload is read, and nothing of one is in the answer.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser, ArgumentTypeError
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from signalbox import conf, engines, outbox, status


@dataclass(frozen=True, slots=True)
class Check:
    """One check's verdict: its figure, the limit it may not pass, and which
    queues made it fail."""

    name: str
    ok: bool
    value: int
    limit: int
    unit: str
    queues: list[str] = field(default_factory=list)
    """``engine/queue`` of each queue at fault (``workers``, ``engines``,
    ``relay``: the engine alone)."""

    def as_text(self) -> str:
        """One line: ``OK`` or ``FAIL``, the name, the figure and the limit."""
        verdict = "OK  " if self.ok else "FAIL"
        line = (
            f"{verdict} {self.name:<10} {self.value} {self.unit} (limit {self.limit})"
        )
        return f"{line}: {', '.join(self.queues)}" if self.queues else line


@dataclass(frozen=True, slots=True)
class Health:
    """Every check's verdict; healthy when all passed."""

    checks: list[Check]

    @property
    def healthy(self) -> bool:
        """Whether every check passed."""
        return all(check.ok for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        """The stable JSON form: ``{"healthy": bool, "checks": [{"name",
        "ok", "value", "limit", "unit", "queues"}, ...]}``, checks in a fixed
        order."""
        return {
            "healthy": self.healthy,
            "checks": [asdict(check) for check in self.checks],
        }

    @property
    def failed(self) -> list[str]:
        """The names of the checks that failed."""
        return [check.name for check in self.checks if not check.ok]

    def as_json(self) -> str:
        """:meth:`as_dict` as indented JSON."""
        return json.dumps(self.as_dict(), indent=2)

    def as_text(self) -> str:
        """One line per check, for people and logs."""
        return "\n".join(check.as_text() for check in self.checks)


@dataclass(frozen=True, slots=True)
class Limits:
    """The thresholds; :meth:`from_settings` reads the ``HEALTH_*`` settings."""

    max_wait: timedelta
    max_dead: int
    dead_window: timedelta

    @classmethod
    def from_settings(
        cls,
        *,
        max_wait: timedelta | None = None,
        max_dead: int | None = None,
        dead_window: timedelta | None = None,
    ) -> Limits:
        """The settings' limits, each replaced by the one given (options)."""
        settings = conf.get()
        return cls(
            max_wait=settings.health_max_wait if max_wait is None else max_wait,
            max_dead=settings.health_max_dead if max_dead is None else max_dead,
            dead_window=(
                settings.health_dead_window if dead_window is None else dead_window
            ),
        )


def add_options(parser: ArgumentParser) -> None:
    """The options of ``signalbox health``: each limit overrides its setting."""
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    parser.add_argument(
        "--max-wait", type=_seconds, help="Seconds (HEALTH_MAX_WAIT_SECONDS)."
    )
    parser.add_argument(
        "--max-dead", type=_count, help="Dead deliveries (HEALTH_MAX_DEAD)."
    )
    parser.add_argument(
        "--dead-window", type=_seconds, help="Seconds (HEALTH_DEAD_WINDOW_SECONDS)."
    )
    parser.add_argument("--database", default=DEFAULT_DB_ALIAS)


def limits(options: Mapping[str, Any]) -> Limits:
    """The limits the options of :func:`add_options` name, the settings' for
    the others."""
    return Limits.from_settings(
        max_wait=options["max_wait"],
        max_dead=options["max_dead"],
        dead_window=options["dead_window"],
    )


def check(*, using: str, limits: Limits | None = None) -> Health:
    """Run every check on the outbox of database ``using`` against ``limits``
    (the settings' by default). Database errors propagate: an outbox that
    cannot be read is no healthy one, and its error says why."""
    limits = limits or Limits.from_settings()
    due = outbox.due_per_queue(using=using)
    return Health(
        checks=[
            _oldest_due(due, limits.max_wait),
            _dead(limits, using=using),
            _workers(due, using=using),
            _engines(using=using),
            _relay(using=using),
        ]
    )


def _oldest_due(due: list[outbox.Waiting], limit: timedelta) -> Check:
    # The process's clock against the rows' (the database's), as `status`
    # does: a skew of seconds is nothing beside a limit of minutes.
    now = timezone.now()
    waited = max((now - each.due_since for each in due), default=timedelta(0))
    return Check(
        name="oldest_due",
        ok=waited <= limit,
        value=max(0, int(waited.total_seconds())),
        limit=int(limit.total_seconds()),
        unit="s",
        queues=[_where(each) for each in due if now - each.due_since > limit],
    )


def _dead(limits: Limits, *, using: str) -> Check:
    from signalbox.models import Delivery  # the app registry must be ready first

    count = (
        Delivery.objects.using(using)
        .dead()
        .filter(finished_at__gte=outbox.ago(limits.dead_window))
        .count()
    )
    return Check(
        name="dead",
        ok=count <= limits.max_dead,
        value=count,
        limit=limits.max_dead,
        unit=f"dead in {int(limits.dead_window.total_seconds())} s",
    )


def _workers(due: list[outbox.Waiting], *, using: str) -> Check:
    embedded = engines.aliases(embedded=True)
    mine = [each for each in due if each.engine in embedded]
    consumed = (
        outbox.live_queues(stale_after=conf.get().lease * 2, using=using)
        if mine
        else set()
    )
    orphaned = [_where(each) for each in mine if each.queue not in consumed]
    return Check(
        name="workers",
        ok=not orphaned,
        value=len(orphaned),
        limit=0,
        unit="queues without a live worker",
        queues=orphaned,
    )


def _engines(using: str) -> Check:
    # Only rows handed to another engine can be unstarted: no query without one.
    stalled = status.unstarted(using=using) if engines.aliases(embedded=False) else []
    return Check(
        name="engines",
        ok=not stalled,
        value=len(stalled),
        limit=0,
        unit="queues not consumed",
        queues=[_where(each) for each in stalled],
    )


def _relay(using: str) -> Check:
    waiting = status.waiting_for_missing_relay(using=using)
    return Check(
        name="relay",
        ok=not waiting,
        value=sum(waiting.values()),
        limit=0,
        unit="due without a relay",
        queues=sorted(waiting),
    )


def _seconds(value: str) -> timedelta:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # refuses NaN too
        raise ArgumentTypeError(f"must be a number of seconds >= 0, not {value!r}")
    return timedelta(seconds=seconds)


def _count(value: str) -> int:
    if not value.isdigit():
        raise ArgumentTypeError(f"must be a whole number >= 0, not {value!r}")
    return int(value)


def _where(each: outbox.Waiting) -> str:
    return f"{each.engine}/{each.queue}"
