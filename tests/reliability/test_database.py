"""Database faults: the server crash-restarting, connections killed, a bad network.

All of it on the private cluster (tests/reliability/cluster.py), never on the
shared server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, InterfaceError, connections

from tests.reliability import faults as hurt
from tests.reliability import harness
from tests.reliability.cluster import Cluster
from tests.reliability.harness import Faults, Producer, Workers, now, size, wait_for

BURST = ["effect_sent", "atomic_sent", "fanout_sent", "soon_sent"]


def _patiently(query: Callable[[], Any]) -> Callable[[], Any]:
    """``query``, answering None while the database is away."""

    def attempt() -> Any:
        try:
            return query()
        except (DatabaseError, InterfaceError):
            connections["default"].close()
            return None

    return attempt


def _completed_since(moment: Any) -> Callable[[], Any]:
    return _patiently(
        lambda: harness.scalar(
            "default",
            "SELECT count(*) FROM reliability_audit WHERE new_state = 'completed' "
            "AND at > %s",
            [moment],
        )
    )


def _producers(n: int, **options: Any) -> list[Producer]:
    return [
        Producer("default", BURST, count=10**9, kwargs={"seconds": 0.02}, **options)
        for _ in range(n)
    ]


def _stop(producers: list[Producer]) -> None:
    for producer in producers:
        producer.stop.set()
    for producer in producers:
        producer.join(30)
        assert not producer.is_alive()


def _producer_figures(producers: list[Producer]) -> dict[str, int]:
    return {
        "producer_commits": sum(p.committed for p in producers),
        "producer_rollbacks": sum(p.rolled_back for p in producers),
        "producer_errors": sum(len(p.errors) for p in producers),
    }


def test_postgres_crash_restart_twice_during_a_burst(
    pg: Workers, cluster: Cluster
) -> None:
    """Crash the server twice under producers and workers: nothing lost, no phantom."""
    faults = Faults()
    workers = [pg.start(concurrency=4) for _ in range(2)]
    harness.wait_registered("default", workers)
    producers = _producers(2, per_transaction=3, rollback_every=4, linger=0.01)
    for producer in producers:
        producer.start()
    reconnect: list[float] = []
    for _ in range(2):
        time.sleep(size(ci=2.5, full=8))
        began = now()
        cluster.crash_restart()
        back = now()
        faults.mark("postgres crash-restart", began, back)
        reconnect.append(wait_for(_completed_since(back), 60, "a completion"))
    time.sleep(size(ci=1.5, full=5))
    _stop(producers)
    drain = harness.wait_drained("default", 120)
    exits = pg.unexpected_exits()
    harness.check(
        "default",
        "database: PostgreSQL crash-restart twice during a burst",
        faults=faults,
        figures={
            **_producer_figures(producers),
            "restart_s_max": round(max(cluster.restarts[-2:]), 2),
            "reconnect_s_max": round(max(reconnect), 2),
            "drain_after_s": round(drain, 2),
            "worker_processes_exited": len(exits),
        },
    )
    assert not exits, exits


def test_connections_terminated_every_half_second(pg: Workers) -> None:
    """pg_terminate_backend on every worker connection, every 500 ms."""
    faults = Faults()
    workers = [pg.start(concurrency=4) for _ in range(2)]
    harness.wait_registered("default", workers)
    producers = _producers(2, per_transaction=2, pause=0.01)
    for producer in producers:
        producer.start()
    rounds, killed = hurt.terminate_storm(
        "default", faults, every=0.5, seconds=size(ci=5, full=10)
    )
    time.sleep(1)
    _stop(producers)
    drain = harness.wait_drained("default", 120)
    exits = pg.unexpected_exits()
    result = harness.check(
        "default",
        "database: connections terminated every 500 ms",
        faults=faults,
        figures={
            **_producer_figures(producers),
            "rounds": rounds,
            "backends_terminated": killed,
            "drain_after_s": round(drain, 2),
            "worker_processes_exited": len(exits),
        },
    )
    assert not exits, exits
    assert result.figures["completions_applied"] == result.figures["completed"]


def test_latency_and_black_hole_through_the_proxy(
    pg: Workers, cluster: Cluster
) -> None:
    """One worker behind a slow, then silent, then cut link; one direct."""
    faults = Faults()
    with hurt.Proxy(cluster.port) as proxy:
        behind = pg.start(concurrency=4, SIGNALBOX_REL_PG_PORT=str(proxy.port))
        direct = pg.start(concurrency=4)
        harness.wait_registered("default", [behind, direct])
        producers = _producers(1, per_transaction=2, pause=0.02)
        for producer in producers:
            producer.start()
        time.sleep(1)
        began = now()
        with proxy.delayed(0.15):
            time.sleep(size(ci=3, full=8))
        faults.mark("latency 150 ms each way", began, now())
        began = now()
        proxy.hold()
        time.sleep(size(ci=3, full=6))  # past the 1 s lease, several times
        proxy.release()
        faults.mark("black hole", began, now())
        time.sleep(1)
        cut_at = now()
        proxy.cut()
        faults.mark("all connections cut", cut_at)
        time.sleep(2)
        _stop(producers)
        drain = harness.wait_drained("default", 120)
        after_cut = harness.scalar(
            "default",
            "SELECT count(*) FROM reliability_ledger WHERE pid = %s "
            "AND started_at > %s",
            [behind.pid, cut_at],
        )
    exits = pg.unexpected_exits()
    harness.check(
        "default",
        "database: latency, black hole and cut through the proxy",
        faults=faults,
        figures={
            **_producer_figures(producers),
            "proxied_connections": proxy.connections,
            "proxied_worker_runs_after_cut": after_cut,
            "drain_after_s": round(drain, 2),
            "worker_processes_exited": len(exits),
        },
    )
    assert not exits, exits


def _log_figures(text: str) -> dict[str, int]:
    """Lines, tracebacks and records by level in a stretch of a worker's log.

    A record starts with the settings' ``asctime levelname`` prefix; any other
    line (a traceback's) belongs to the record before it.
    """
    lines = text.splitlines()
    levels = [
        line.split(" ")[2] for line in lines if line[:2] == "20" and line.count(" ") > 2
    ]
    return {
        "lines": len(lines),
        "tracebacks": sum("Traceback (most recent call last)" in ln for ln in lines),
        "warnings": levels.count("WARNING"),
        "errors": levels.count("ERROR") + levels.count("CRITICAL"),
    }


def test_postgres_outages_under_a_draining_worker(
    pg: Workers, cluster: Cluster
) -> None:
    """Two outages of a few seconds under a worker draining a backlog, with a
    relay in its process (``--relay``): a few log lines each (a WARNING, an
    INFO), no traceback, nothing lost."""
    faults, outages = Faults(), 2
    down_s = size(ci=2.0, full=4.0)
    backlog = size(ci=2500, full=6000)
    harness.send_committed("default", "effect_sent", backlog, seconds=0.02)
    worker = pg.start(concurrency=4, args=["--relay"])
    harness.wait_registered("default", [worker])
    wait_for(_completed_since(now()), 30, "a first completion")
    before = worker.mark()
    reconnect: list[float] = []
    for _ in range(outages):
        time.sleep(1.0)
        began = now()
        cluster.crash()
        time.sleep(down_s)
        cluster.start()
        back = now()
        faults.mark("postgres down, then started", began, back)
        reconnect.append(wait_for(_completed_since(back), 60, "a completion"))
    time.sleep(2.0)  # what the worker says once it is back has been said
    logged = _log_figures(worker.output(before))
    left = harness.unfinished("default")
    drain = harness.wait_drained("default", 180)
    exits = pg.unexpected_exits()
    per_outage = logged["lines"] / outages
    harness.check(
        "default",
        "database: PostgreSQL down twice under a draining worker and relay, its log",
        faults=faults,
        figures={
            "backlog": backlog,
            "down_s_each": down_s,
            "left_after_outages": left,
            "log_lines_per_outage": per_outage,
            "log_tracebacks": logged["tracebacks"],
            "log_warnings": logged["warnings"],
            "log_errors": logged["errors"],
            "reconnect_s_max": round(max(reconnect), 2),
            "drain_after_s": round(drain, 2),
            "worker_processes_exited": len(exits),
        },
    )
    assert not exits, exits
    assert left, "the backlog drained before the outages ended: make it larger"
    assert logged["tracebacks"] == 0, worker.output(before)
    assert per_outage <= 10, worker.output(before)
