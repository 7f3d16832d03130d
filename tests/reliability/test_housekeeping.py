"""Housekeeping and load: a large backlog, and pruning while workers run."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from signalbox import outbox
from tests.reliability import harness
from tests.reliability.harness import Producer, Workers, size, sql


def test_a_backlog_drained_by_four_workers(pg: Workers) -> None:
    """A backlog sent before any worker runs: drain time and memory per worker."""
    count, lease = size(ci=4000, full=50000), harness.calm(pg)
    began = time.monotonic()
    harness.send_committed("default", "effect_sent", count, batch=2000)
    sending = time.monotonic() - began
    workers = [pg.start(concurrency=4) for _ in range(4)]
    began = time.monotonic()
    while harness.unfinished("default"):
        assert time.monotonic() - began < 900, "the backlog did not drain"
        pg.sample_rss()
        time.sleep(0.25)
    drain = time.monotonic() - began
    pg.sample_rss()
    peaks = [round(worker.peak_rss_kb / 1024, 1) for worker in workers]
    result = harness.check(
        "default",
        "housekeeping: a backlog drained by 4 workers",
        lease=lease,
        figures={
            "backlog": count,
            "sends_per_s": round(count / sending),
            "drain_s": round(drain, 2),
            "drained_per_s": round(count / drain),
            "peak_rss_mb_per_worker": peaks,
        },
    )
    assert result.figures["completed"] == count
    assert all(peak > 0 for peak in peaks)


def test_pruning_while_workers_run(pg: Workers) -> None:
    """Prune with zero retention under load: only finished rows ever go."""
    far, lease = size(ci=50, full=500), harness.calm(pg)
    harness.send_committed("default", "far_sent", far)
    retention = {
        "SIGNALBOX_REL_COMPLETED_RETENTION": "0",
        "SIGNALBOX_REL_DEAD_RETENTION": "0",
    }
    pg.env.update(retention)
    for _ in range(2):
        pg.start(concurrency=4)
    producers = [
        Producer(
            "default",
            ["effect_sent", "soon_sent", "failing_sent", "far_sent", "atomic_sent"],
            count=10**9,
            per_transaction=3,
            pause=0.01,
        )
        for _ in range(2)
    ]
    stop, runs = threading.Event(), {"in_process": 0, "command": 0}

    def prune_in_process() -> None:
        try:
            while not stop.is_set():
                # Payloads are kept: the checker finds a row's send by them
                # (erasure has its own tests in tests/test_admin.py).
                outbox.prune(
                    completed=timedelta(0),
                    dead=timedelta(0),
                    dead_payload=timedelta(days=1),
                    using="default",
                )
                runs["in_process"] += 1
                time.sleep(0.05)
        finally:
            from django.db import connections

            connections.close_all()

    pruner = threading.Thread(target=prune_in_process, daemon=True)
    for producer in producers:
        producer.start()
    pruner.start()
    deadline = time.monotonic() + size(ci=6, full=30)
    while time.monotonic() < deadline:
        said = pg.manage("prune", "--database", "default")
        assert said.startswith("Deleted"), said
        runs["command"] += 1
    for producer in producers:
        producer.stop.set()
        producer.join(30)
    harness.wait_drained("default", 120)
    stop.set()
    pruner.join(30)
    pg.manage("prune", "--database", "default")
    deleted = dict(
        sql(
            "default",
            "SELECT old_state, count(*) FROM reliability_audit WHERE op = 'delete' "
            "GROUP BY 1",
        )
    )
    waiting = harness.scalar(
        "default",
        "SELECT count(*) FROM signalbox_delivery WHERE state = 'scheduled' "
        "AND receiver = 'tests.reliability.receivers.far_effect'",
    )
    far_sent = harness.scalar(
        "default", "SELECT count(*) FROM reliability_sends WHERE signal = 'far_sent'"
    )
    harness.check(
        "default",
        "housekeeping: pruning while workers run",
        lease=lease,
        figures={
            "prune_runs": runs,
            "pruned_completed": deleted.get("completed", 0),
            "pruned_dead": deleted.get("dead", 0),
            "pruned_unfinished": sum(
                n for state, n in deleted.items() if state not in ("completed", "dead")
            ),
            "scheduled_rows_kept": waiting,
            "scheduled_rows_sent": far_sent,
        },
    )
    assert waiting == far_sent
    assert deleted.get("completed", 0) > 0
    assert deleted.get("dead", 0) > 0
