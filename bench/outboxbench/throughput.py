"""How fast worker processes drain a backlog of no-op deliveries.

The backlog is written first, with no worker running; then the workers
start. The drain runs from the first delivery's start to the last one's
completion, read from each system's own records where it keeps them:
signalbox's ``attempted_at`` / ``finished_at`` and procrastinate's
``started`` / ``succeeded`` events (both the database's clock, at no cost
to the workers), and for Celery, which keeps none, a per-process file that
its ``task_prerun`` / ``task_postrun`` signals update
(:class:`outboxbench.marks.Progress`). "Wall" also counts the workers'
start-up: from launching them to the last completion (the database's clock
against the driver's for signalbox and procrastinate: one machine, one clock).
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from django.db import connections, transaction
from django.db.models import Max, Min

from outboxbench import database, marks, processes
from outboxbench.models import Order
from outboxbench.receivers import placed
from outboxbench.settings import STATE

CHUNK = 500  # sends per transaction while writing the backlog
TIMEOUT = 300.0


@dataclass(frozen=True)
class DrainResult:
    key: str
    title: str
    deliveries: int
    workers: int
    concurrency: int
    drain_s: float
    wall_s: float
    per_second: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_second", self.deliveries / self.drain_s)


@dataclass(frozen=True)
class Drains:
    """One case drained in several interleaved rounds: the median and spread."""

    key: str
    title: str
    deliveries: int
    workers: int
    concurrency: int
    rounds: int
    drain_s: float  # median
    wall_s: float  # median
    per_second: float  # median
    low: float  # the slowest round, deliveries/s
    high: float  # the fastest round, deliveries/s


def summarise(results: Sequence[DrainResult]) -> Drains:
    """The median and spread of the rounds of one case (all of one key)."""
    first = results[0]
    return Drains(
        key=first.key,
        title=first.title,
        deliveries=first.deliveries,
        workers=first.workers,
        concurrency=first.concurrency,
        rounds=len(results),
        drain_s=statistics.median(r.drain_s for r in results),
        wall_s=statistics.median(r.wall_s for r in results),
        per_second=statistics.median(r.per_second for r in results),
        low=min(r.per_second for r in results),
        high=max(r.per_second for r in results),
    )


def signalbox(
    src: Path,
    using: str,
    deliveries: int,
    workers: int,
    concurrency: int,
    *,
    case: str = "",
) -> DrainResult:
    """``signalbox worker --burst`` x ``workers`` on ``using``; ``case``: key suffix."""
    from signalbox.models import Delivery

    database.empty(using)
    alias = {} if using == "default" else {"using": using}
    for first in range(0, deliveries, CHUNK):
        with transaction.atomic(using=using):
            for number in range(first, min(first + CHUNK, deliveries)):
                placed.send(sender=Order, order_id=number, **alias)
    if connections[using].vendor == "postgresql":
        database.analyze(using)
    connections[using].close()
    launched = time.time()
    with processes.Processes(src) as running:
        for number in range(workers):
            argv = processes.signalbox_worker(concurrency, using, burst=True)
            running.start(f"signalbox-{using}-{number}", argv)
        running.wait(TIMEOUT)
    rows = Delivery.objects.using(using)
    done = rows.filter(state="completed").count()
    if done != deliveries:
        raise processes.WorkerFailed(f"signalbox completed {done} of {deliveries}")
    span = rows.aggregate(first=Min("attempted_at"), last=Max("finished_at"))
    return DrainResult(
        key=f"signalbox-{connections[using].vendor}{case}",
        title=f"signalbox worker --burst --concurrency {concurrency}",
        deliveries=deliveries,
        workers=workers,
        concurrency=concurrency,
        drain_s=(span["last"] - span["first"]).total_seconds(),
        wall_s=span["last"].timestamp() - launched,
    )


def celery(src: Path, deliveries: int, workers: int, concurrency: int) -> DrainResult:
    """Celery prefork workers on Redis: ``workers`` x ``--concurrency``."""
    from outboxbench.celery_app import QUEUE, app, noop

    _purge_celery_queue(app, QUEUE)
    with app.producer_or_acquire() as producer:
        for number in range(deliveries):
            noop.apply_async((number,), producer=producer)
    progress = STATE / "celery-progress"
    shutil.rmtree(progress, ignore_errors=True)
    progress.mkdir(parents=True)
    env = {"SIGNALBOX_BENCH_PROGRESS": str(progress)}
    launched = time.monotonic()
    with processes.Processes(src, env) as running:
        for number in range(workers):
            argv = processes.celery_worker(f"bench{number}", concurrency, QUEUE)
            running.start(f"celery-{number}", argv)
        count, first, last = _await_progress(progress, deliveries, running)
    wall = last / 1e9 - launched
    return DrainResult(
        key="celery",
        title="Celery prefork, Redis broker",
        deliveries=count,
        workers=workers,
        concurrency=concurrency,
        drain_s=(last - first) / 1e9,
        wall_s=wall,
    )


def _purge_celery_queue(app: object, queue: str) -> None:
    with app.connection_for_write() as connection:  # type: ignore[attr-defined]
        connection.default_channel.queue_purge(queue)


def _await_progress(
    folder: Path, expected: int, running: processes.Processes
) -> tuple[int, int, int]:
    deadline = time.monotonic() + TIMEOUT
    count = 0
    while time.monotonic() < deadline:
        count, first, last = marks.read_progress(folder)
        if count >= expected:
            return count, first, last
        running.check_alive()
        time.sleep(0.02)
    raise processes.WorkerFailed(f"Celery ran {count} of {expected} in {TIMEOUT} s")


def procrastinate(
    src: Path, deliveries: int, workers: int, concurrency: int
) -> DrainResult:
    """``procrastinate worker --one-shot`` x ``workers`` (its Django integration)."""
    from outboxbench.tasks import QUEUE, procrastinate_noop

    database.empty("default")
    for first in range(0, deliveries, CHUNK):
        with transaction.atomic():
            procrastinate_noop.batch_defer(
                *({"order_id": n} for n in range(first, min(first + CHUNK, deliveries)))
            )
    database.analyze("default")
    connections["default"].close()
    launched = time.time()
    with processes.Processes(src) as running:
        for number in range(workers):
            argv = processes.procrastinate_worker(concurrency, QUEUE, one_shot=True)
            running.start(f"procrastinate-{number}", argv)
        running.wait(TIMEOUT)
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE type = 'succeeded'),"
            " min(at) FILTER (WHERE type = 'started'),"
            " max(at) FILTER (WHERE type = 'succeeded') FROM procrastinate_events"
        )
        done, first, last = cursor.fetchone()
    if done != deliveries:
        raise processes.WorkerFailed(f"procrastinate ran {done} of {deliveries}")
    return DrainResult(
        key="procrastinate",
        title="procrastinate worker --one-shot",
        deliveries=deliveries,
        workers=workers,
        concurrency=concurrency,
        drain_s=(last - first).total_seconds(),
        wall_s=last.timestamp() - launched,
    )


def pgqueuer(src: Path, deliveries: int, workers: int, batch_size: int) -> DrainResult:
    """PgQueuer ``QueueManager`` x ``workers`` (asyncpg), ``batch_size`` a dequeue."""
    from outboxbench import pgqueuer_peer

    pgqueuer_peer.prepare(deliveries)
    launched = time.time()
    with processes.Processes(src) as running:
        for number in range(workers):
            argv = pgqueuer_peer.worker_argv(batch_size)
            running.start(f"pgqueuer-{batch_size}-{number}", argv)
        running.wait(TIMEOUT)
    done, first, last = pgqueuer_peer.drained()
    pgqueuer_peer.empty()
    if done != deliveries:
        raise processes.WorkerFailed(f"PgQueuer ran {done} of {deliveries}")
    return DrainResult(
        key=f"pgqueuer-batch-{batch_size}",
        title=f"PgQueuer, batch_size={batch_size}",
        deliveries=deliveries,
        workers=workers,
        concurrency=batch_size,
        drain_s=last - first,
        wall_s=last - launched,
    )
