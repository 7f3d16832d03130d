"""Concurrency without faults: many workers on one queue, SQLite, two releases."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.reliability import harness
from tests.reliability.harness import (
    ROOT,
    Faults,
    Producer,
    Workers,
    percentile,
    size,
    sql,
    wait_for,
)


def _throughput(alias: str) -> dict[str, float | None]:
    """Deliveries per second over the run, and claim-to-start latencies in ms."""
    [(first, last, n)] = sql(
        alias,
        "SELECT min(E(started_at)), max(E(ended_at)), count(*) "
        "FROM reliability_ledger WHERE kind = 'effect'",
    )
    waits = [
        float(row[0]) * 1000
        for row in sql(
            alias,
            "SELECT E(l.started_at) - E(d.attempted_at) FROM reliability_ledger l "
            "JOIN signalbox_delivery d ON d.id = l.delivery_id "
            "WHERE l.kind = 'effect' AND l.attempt = d.attempt",
        )
    ]
    p50, p99 = percentile(waits, 0.5), percentile(waits, 0.99)
    return {
        "deliveries_per_s": round(n / max(float(last) - float(first), 1e-9)),
        "claim_to_start_p50_ms": None if p50 is None else round(p50, 1),
        "claim_to_start_p99_ms": None if p99 is None else round(p99, 1),
    }


def test_four_workers_by_four_threads_on_one_queue(pg: Workers) -> None:
    """4 x 4 on one queue, no faults: every delivery runs exactly once."""
    count, lease = size(ci=3000, full=20000), harness.calm(pg)
    harness.send_committed("default", "effect_sent", count, batch=1000)
    workers = [pg.start(concurrency=4) for _ in range(4)]
    drain = harness.wait_drained("default", 600)
    result = harness.check(
        "default",
        "concurrency: 4 workers x 4 threads, one queue",
        lease=lease,
        figures={
            "workers": f"{len(workers)}x4",
            "drain_s": round(drain, 2),
            **_throughput("default"),
        },
    )
    assert result.figures["executions_per_delivery_min"] == 1
    assert result.figures["executions_per_delivery_max"] == 1
    assert result.figures["executions"] == count


def test_sqlite_two_workers_beside_a_sender(lite: Workers) -> None:
    """SQLite, two worker processes and a sender writing meanwhile: no lock errors."""
    count, lease = size(ci=600, full=5000), harness.calm(lite)
    harness.send_committed("sqlite", "effect_sent", count, batch=500)
    sender = Producer("sqlite", ["effect_sent", "atomic_sent"], count=10**9)
    sender.pause = 0.01
    workers = [lite.start(concurrency=4) for _ in range(2)]
    sender.start()
    wait_for(
        lambda: (
            harness.scalar(
                "sqlite",
                "SELECT count(*) FROM reliability_ledger WHERE kind = 'effect'",
            )
            >= count
        ),
        600,
        "the backlog",
    )
    sender.stop.set()
    sender.join(30)
    drain = harness.wait_drained("sqlite", 120)
    locked_in_logs = len(re.findall("database is locked", lite.logs()))
    locked_for_sender = sum("locked" in error for error in sender.errors)
    harness.check(
        "sqlite",
        "concurrency: SQLite, 2 workers x 4 threads beside a sender",
        lease=lease,
        figures={
            "workers": f"{len(workers)}x4",
            "sender_commits": sender.committed,
            "sender_errors": len(sender.errors),
            "database_is_locked_for_sender": locked_for_sender,
            "database_is_locked_in_worker_logs": locked_in_logs,
            "drain_after_sender_s": round(drain, 2),
            **_throughput("sqlite"),
        },
    )
    assert not sender.errors, sender.errors[:5]
    assert not lite.unexpected_exits()


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def _previous_release(folder: Path) -> tuple[str, Path]:
    """The signalbox package as it was before its latest change, unpacked in ``folder``.

    ``SIGNALBOX_REL_OLD_REF`` names another commit to compare with.
    """
    ref = os.environ.get("SIGNALBOX_REL_OLD_REF")
    if not ref:
        ref = _git("log", "-1", "--format=%H", "--", "src/signalbox") + "~1"
    try:
        commit = _git("rev-parse", "--short", ref)
    except subprocess.CalledProcessError:
        # Not a missing service: a clone without that much history (--depth).
        pytest.skip(f"{ref} is not in this clone's history (a shallow clone?)")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "src"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return commit, folder / "src"


def test_two_releases_of_the_worker_on_one_table(pg: Workers, tmp_path: Path) -> None:
    """The previous release's workers beside this one's, differently configured."""
    commit, old_src = _previous_release(tmp_path / "previous")
    schema_changed = bool(
        _git("diff", "--stat", commit, "HEAD", "--", "src/signalbox/migrations")
    )
    code_changed = bool(_git("diff", "--stat", commit, "HEAD", "--", "src/signalbox"))
    faults = Faults()
    old = [
        pg.start(concurrency=2, src=old_src, SIGNALBOX_REL_LEASE="2") for _ in range(2)
    ]
    new = [pg.start(concurrency=4) for _ in range(2)]
    harness.wait_registered("default", [*old, *new])
    producers = [
        Producer(
            "default",
            ["effect_sent", "atomic_sent", "fanout_sent"],
            count=10**9,
            per_transaction=2,
            pause=0.01,
            kwargs={"seconds": 0.01},
        )
        for _ in range(2)
    ]
    for producer in producers:
        producer.start()
    time.sleep(size(ci=3, full=15))
    for group, options in (
        (old, {"src": old_src, "SIGNALBOX_REL_LEASE": "2"}),
        (new, {}),
    ):
        group[0].signal(signal.SIGKILL)
        faults.instant("sigkill")
        group[0].process.wait(10)
        concurrency = 2 if group is old else 4
        group.append(pg.start(concurrency=concurrency, **options))
    time.sleep(size(ci=3, full=15))
    for producer in producers:
        producer.stop.set()
        producer.join(30)
    drain = harness.wait_drained("default", 120)
    for worker in old:  # the previous release may predate the SIGTERM fix
        worker.signal(signal.SIGKILL)
    by_release = {
        "old": [str(w.pid) for w in old],
        "new": [str(w.pid) for w in new],
    }
    ran = {
        release: harness.scalar(
            "default",
            "SELECT count(*) FROM reliability_ledger WHERE CAST(pid AS text) = ANY(%s)",
            [pids],
        )
        for release, pids in by_release.items()
    }
    harness.check(
        "default",
        "concurrency: two releases of the worker on one table",
        faults=faults,
        lease=2.0,
        figures={
            "previous_release": commit,
            "code_changed": code_changed,
            "schema_changed": schema_changed,
            "runs_by_previous_release": ran["old"],
            "runs_by_this_release": ran["new"],
            "drain_after_s": round(drain, 2),
        },
    )
    assert ran["old"], ran
    assert ran["new"], ran
