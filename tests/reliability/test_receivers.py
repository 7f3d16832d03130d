"""What receivers ask of the worker: ``raise signalbox.Retry(delay=...)``.

Coroutine receivers under SIGKILL are in test_workers.py.
"""

from __future__ import annotations

from tests.reliability import harness, receivers
from tests.reliability.harness import Workers, size, sql

KEYS = [
    "tests.reliability.receivers.asks_to_retry",
    "tests.reliability.receivers.asks_to_retry_async",
]


def _waits(alias: str) -> list[tuple[float, float]]:
    """Per Retry: (the wait it was given, the next run's start - its due time).

    The wait is read from the row as the Retry left it (scheduled_at minus
    the time of the update); the next run is the first probe of the same
    delivery after it.
    """
    rows = sql(
        alias,
        "SELECT E(a.new_scheduled_at) - E(a.at), min(E(n.started_at)) - "
        "E(a.new_scheduled_at) FROM reliability_audit a "
        "JOIN reliability_ledger n ON n.delivery_id = a.delivery_id "
        "AND n.kind = 'probe' AND E(n.started_at) > E(a.at) "
        "WHERE a.new_state = 'retryable' AND a.new_reason = 'retry' "
        "GROUP BY a.id, a.new_scheduled_at, a.at",
    )
    return [(float(wait), float(late)) for wait, late in rows]


def test_receivers_that_ask_for_a_retry(pg: Workers) -> None:
    """Retry spends no attempt, logs no error, waits its delay, never less; done."""
    count = size(ci=60, full=600)
    lease = harness.calm(pg)
    harness.send_committed("default", "retry_sent", count)
    for _ in range(2):
        pg.start(concurrency=4)
    drain = harness.wait_drained("default", 300)
    waits = _waits("default")
    asked = receivers.RETRY_DELAY.total_seconds()
    rows = sql(
        "default",
        "SELECT receiver, state, attempt, reason, error FROM signalbox_delivery",
    )
    logs = pg.logs()
    result = harness.check(
        "default",
        "receivers: Retry(delay) from thread and coroutine receivers",
        lease=lease,
        figures={
            "retries_asked_each": receivers.RETRY_ASKS,
            "max_attempts": receivers.RETRY_ATTEMPTS,
            "retries_measured": len(waits),
            "attempts_each": sorted({attempt for _, _, attempt, _, _ in rows}),
            "delay_asked_s": asked,
            "wait_min_s": round(min(w for w, _ in waits), 3),
            "started_before_due": sum(late < -0.002 for _, late in waits),
            "started_after_due_s_max": round(max(late for _, late in waits), 3),
            "errors_logged": logs.count("failed on attempt") + logs.count("is dead"),
            "drain_s": round(drain, 2),
        },
    )
    figures = result.figures
    assert {receiver for receiver, *_ in rows} == set(KEYS)
    # Done, on the first attempt, after every Retry it asked for: a Retry
    # spent no attempt (two would have killed it) and left no error.
    assert figures["completed"] == 2 * count
    assert all(
        (state, attempt, reason, error) == ("completed", 1, "", "")
        for _, state, attempt, reason, error in rows
    ), rows
    assert figures["attempts_seen"] == 2 * count * (receivers.RETRY_ASKS + 1)
    assert figures["executions"] == 2 * count
    assert figures["errors_logged"] == 0
    # Each wait is the delay asked for (the update's own duration aside), and
    # no run started before it was due (I7 for later runs).
    assert len(waits) == 2 * count * receivers.RETRY_ASKS
    assert all(abs(wait - asked) < 0.05 for wait, _ in waits), waits
    assert figures["started_before_due"] == 0, waits
