"""What one send adds to the caller's transaction: the request-path cost.

Every case runs the same transaction, ``with transaction.atomic(): INSERT
the caller's own row``, plus one call inside it (nothing, for the baseline).
A round times a block of transactions of each case in turn, rotating which
goes first, and keeps the median transaction of each block; a case's cost
is that time minus the baseline's in the same round, and the figure is the
median over all rounds. Commit is
inside the timing, so work a peer defers to the commit (Celery's
``delay_on_commit`` publishes to Redis then) is counted too.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import connections, transaction

from outboxbench.models import Order
from outboxbench.receivers import placed

Action = Callable[[Order, str], object]


@dataclass(frozen=True)
class PathCase:
    key: str
    title: str
    action: Action | None  # None: the baseline, the caller's INSERT alone
    settle: Callable[[], object] | None = None
    """Run after each block, untimed: waits for work the case left running
    in this process (an engine's hand-over thread), so that it lands on the
    case's own transactions and never on the next case's block."""


@dataclass(frozen=True)
class PathResult:
    key: str
    title: str
    rounds: int
    transactions_per_block: int
    median_ns: float  # per transaction, the case as a whole
    min_ns: float
    added_ns: float  # median over rounds of (case - baseline), per transaction
    added_q1_ns: float
    added_q3_ns: float


def _bare_insert(order: Order, using: str) -> None:
    with connections[using].cursor() as cursor:
        cursor.execute(
            "INSERT INTO outboxbench_order (number, note) VALUES (%s, %s)",
            [order.number, "bare"],
        )


def _signalbox_instance(order: Order, using: str) -> None:
    # `using` names the database, as model signals do; only off the default.
    if using == "default":
        placed.send(sender=Order, order=order)
    else:
        placed.send(sender=Order, order=order, using=using)


def _signalbox_pk(order: Order, using: str) -> None:
    if using == "default":
        placed.send(sender=Order, order_id=order.pk)
    else:
        placed.send(sender=Order, order_id=order.pk, using=using)


def _celery(order: Order, using: str) -> None:
    from outboxbench.celery_app import noop

    noop.delay_on_commit(order.pk)


def _procrastinate(order: Order, using: str) -> None:
    from outboxbench.tasks import procrastinate_noop

    procrastinate_noop.defer(order_id=order.pk)


def _django_tasks(order: Order, using: str) -> None:
    from outboxbench.tasks import django_tasks_noop

    django_tasks_noop.enqueue(order_id=order.pk)


BASELINE = PathCase("baseline", "the caller's INSERT alone (baseline)", None)
BARE_INSERT = PathCase("insert", "+ one bare INSERT (same connection)", _bare_insert)
SIGNALBOX = PathCase(
    "signalbox", "+ signalbox send, order=<instance>", _signalbox_instance
)
SIGNALBOX_PK = PathCase(
    "signalbox-pk", "+ signalbox send, order_id=<pk>", _signalbox_pk
)
CELERY = PathCase("celery", "+ Celery delay_on_commit (Redis)", _celery)
PROCRASTINATE = PathCase(
    "procrastinate", "+ procrastinate defer (Django connector)", _procrastinate
)
DJANGO_TASKS = PathCase(
    "django-tasks", "+ django-tasks enqueue (database backend)", _django_tasks
)


def block(case: PathCase, using: str) -> Callable[[int], float]:
    """Runs ``loops`` transactions of ``case``; returns the median one's time.

    The median, not the mean: a commit waits for the WAL to reach the disk,
    and one slow flush would otherwise decide the whole block.
    """
    action = case.action
    rows = Order.objects.using(using)
    clock = time.perf_counter_ns

    def run(loops: int) -> float:
        times = []
        gc.disable()
        try:
            for number in range(loops):
                start = clock()
                with transaction.atomic(using=using):
                    order = rows.create(number=number, note="caller")
                    if action is not None:
                        action(order, using)
                times.append(clock() - start)
        finally:
            gc.enable()
        if case.settle is not None:
            case.settle()
        return statistics.median(times)

    return run


def measure(
    cases: Sequence[PathCase], using: str, rounds: int, loops: int, warmup: int
) -> list[PathResult]:
    """Time ``rounds`` rotating rounds of ``loops`` transactions per case.

    ``cases[0]`` must be the baseline.
    """
    assert cases[0] is BASELINE
    blocks = [block(case, using) for case in cases]
    times: list[list[float]] = [[] for _ in cases]
    for number in range(warmup + rounds):
        shift = number % len(cases)
        for index in [*range(shift, len(cases)), *range(shift)]:
            elapsed = blocks[index](loops)
            if number >= warmup:
                times[index].append(elapsed)
    return [_summary(case, times[i], times[0], loops) for i, case in enumerate(cases)]


def _summary(
    case: PathCase, times: list[float], baseline: list[float], loops: int
) -> PathResult:
    added = [t - b for t, b in zip(times, baseline, strict=True)]
    q1, median, q3 = statistics.quantiles(added, n=4, method="inclusive")
    return PathResult(
        key=case.key,
        title=case.title,
        rounds=len(times),
        transactions_per_block=loops,
        median_ns=statistics.median(times),
        min_ns=min(times),
        added_ns=median,
        added_q1_ns=q1,
        added_q3_ns=q3,
    )
