"""Worker faults: SIGKILL (of thread and coroutine receivers), SIGTERM past the
grace period, random kills, SIGSTOP."""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import time

from tests.reliability import harness
from tests.reliability.harness import Faults, Workers, now, size, sql, wait_for


def _running_by(alias: str, pid: int) -> int:
    """Executions by ``pid`` that have started and not ended."""
    return int(
        harness.scalar(
            alias,
            "SELECT count(*) FROM reliability_ledger WHERE pid = %s "
            "AND ended_at IS NULL",
            [pid],
        )
    )


def _busiest(alias: str, workers: list[harness.Worker]) -> harness.Worker | None:
    """The live worker running the most executions now, if one runs two or more."""
    running = {w.pid: _running_by(alias, w.pid) for w in workers if w.alive()}
    pid = max(running, key=running.__getitem__, default=None)
    if pid is None or running[pid] < 2:
        return None
    return next(w for w in workers if w.pid == pid)


def _overtaken(killed: list[tuple[int, int, object]]) -> int:
    """Rows claimed ahead of each rescued row, though due after it."""
    overtaken = 0
    for pk, attempt, _ in killed:
        rescued = harness.scalar(
            "default", f"SELECT min(t) FROM ({RESCUED}) x", [pk, attempt]
        )
        reclaimed = harness.scalar(
            "default", f"SELECT min(t) FROM ({RECLAIMED}) x", [pk, attempt]
        )
        overtaken += int(harness.scalar("default", OVERTAKEN, [pk, rescued, reclaimed]))
    return overtaken


def _after_kill(killed: list[tuple[int, int, object]], query: str) -> list[float]:
    """Seconds from each kill to the first ``query`` time for that delivery."""
    return [
        float(
            harness.scalar(
                "default",
                f"SELECT min(E(t)) - E(%s) FROM ({query}) x",
                [at, pk, attempt],
            )
        )
        for pk, attempt, at in killed
    ]


RESCUED = (
    "SELECT at AS t FROM reliability_audit WHERE delivery_id = %s "
    "AND old_attempt = %s AND new_reason = 'lease_expired'"
)
RECLAIMED = (
    "SELECT at AS t FROM reliability_audit WHERE delivery_id = %s "
    "AND old_attempt = %s AND new_state = 'executing'"
)
RERUN = (
    "SELECT started_at AS t FROM reliability_ledger WHERE delivery_id = %s "
    "AND attempt > %s"
)
OVERTAKEN = """
    SELECT count(*) FROM reliability_audit c
    JOIN signalbox_delivery later ON later.id = c.delivery_id
    JOIN signalbox_delivery d ON d.id = %s
    WHERE c.op = 'update' AND c.new_state = 'executing'
      AND (later.priority, later.enqueued_at, later.id)
          > (d.priority, d.enqueued_at, d.id)
      AND E(c.at) > E(%s) + 0.5 AND E(c.at) < E(%s) - 0.05"""
"""Claims of rows due after a rescued one, made between its rescue (and a
margin, for a claim that had begun before the rescue committed) and its
own claim: how many rows jumped the queue ahead of it. These sends have no
delay, so a row's first due time is when it was enqueued, whatever a rescue
did to its scheduled_at."""


def _kill_mid_delivery(
    pg: Workers, signal_name: str, *, rounds: int, count: int, scenario: str
) -> harness.Result:
    """SIGKILL the busiest of two workers ``rounds`` times while ``count`` sends
    of ``signal_name`` (a quarter second each) drain; check; return the result.

    Re-delivery is measured from each kill: until the lease is found expired
    and the row is back (the rescue), until a worker claims it again, and
    until it runs again. A rescued row keeps its place in the queue: no row
    due after it may be claimed before it (*overtaken*). How soon it is
    claimed depends on what is ahead of it, which is other rescued rows:
    each round kills the worker that has just taken the head of the queue,
    while its replacement starts.
    """
    harness.send_committed("default", signal_name, count, seconds=0.25)
    faults = Faults()
    workers = [pg.start(concurrency=4), pg.start(concurrency=4)]
    harness.wait_registered("default", workers)
    killed: list[tuple[int, int, object]] = []
    for _ in range(rounds):
        victim: harness.Worker | None = None

        def found() -> bool:
            nonlocal victim
            victim = _busiest("default", workers)
            return victim is not None

        wait_for(found, 30, "a worker running deliveries")
        assert victim is not None
        victim.signal(signal.SIGKILL)
        at = now()
        faults.mark("sigkill", at)
        victim.process.wait(10)
        # Read once it is dead: read before the kill, an execution could end
        # and its row complete in between, and its rescue never come.
        in_flight = sql(
            "default",
            "SELECT delivery_id, attempt FROM reliability_ledger WHERE pid = %s "
            "AND ended_at IS NULL",
            [victim.pid],
        )
        killed += [(pk, attempt, at) for pk, attempt in in_flight]
        workers[workers.index(victim)] = pg.start(concurrency=4)
        wait_for(
            lambda n=len(in_flight): all(
                harness.scalar("default", f"SELECT count(*) FROM ({RESCUED}) x", k[:2])
                for k in killed[-n:]
            ),
            30,
            "the rescue",
        )
    harness.wait_drained("default", 300)
    rescue, rerun = _after_kill(killed, RESCUED), _after_kill(killed, RERUN)
    reclaim = _after_kill(killed, RECLAIMED)
    behind = [again - back for back, again in zip(rescue, reclaim, strict=True)]
    overtaken = _overtaken(killed)
    result = harness.check(
        "default",
        scenario,
        faults=faults,
        figures={
            "kills": rounds,
            "in_flight_at_kills": len(killed),
            "rescue_s_max": round(max(rescue), 2),
            "rescue_s_mean": round(sum(rescue) / len(rescue), 2),
            "rerun_s_max": round(max(rerun), 2),
            "rerun_s_mean": round(sum(rerun) / len(rerun), 2),
            "reclaim_after_rescue_s_max": round(max(behind), 2),
            "reclaim_after_rescue_s_mean": round(sum(behind) / len(behind), 2),
            "overtaken": overtaken,
            "worker_exits_unexpected": len(pg.unexpected_exits()),
        },
    )
    assert not pg.unexpected_exits()
    assert result.figures["completed"] == count
    assert result.figures["duplicates"] <= len(killed)  # only what was in flight
    # It was due before the backlog: it is not queued behind it. (It was,
    # by half a minute at full size, when a rescue made it due anew.)
    assert overtaken == 0, overtaken
    return result


def test_sigkill_mid_delivery(pg: Workers) -> None:
    """Kill a worker while it runs deliveries: nothing lost, re-run after the lease."""
    _kill_mid_delivery(
        pg,
        "effect_sent",
        rounds=size(ci=3, full=10),
        count=size(ci=200, full=1000),
        scenario="workers: SIGKILL mid-delivery",
    )


def test_sigkill_mid_delivery_of_coroutine_receivers(pg: Workers) -> None:
    """The same with ``async def`` receivers, awaited on the worker's event loop."""
    _kill_mid_delivery(
        pg,
        "coroutine_sent",
        rounds=size(ci=3, full=10),
        count=size(ci=200, full=1000),
        scenario="workers: SIGKILL mid-delivery, coroutine receivers",
    )


def test_sigterm_with_a_receiver_longer_than_the_grace(pg: Workers) -> None:
    """SIGTERM past the grace period: rows given back, not lost, no attempt spent.

    Several rounds, because the first bug this found (a deadlock in the
    SIGTERM handler) struck one SIGTERM in six.
    """
    rounds = size(ci=4, full=12)
    harness.send_committed("default", "effect_sent", 4, seconds=3)
    faults, exits, codes = Faults(), [], []
    for _ in range(rounds):
        worker = pg.start(concurrency=2, SIGNALBOX_REL_GRACE="0.5")
        wait_for(lambda w=worker: _running_by("default", w.pid) == 2, 30, "two runs")
        time.sleep(random.uniform(0, 0.3))
        began = time.monotonic()
        faults.instant("sigterm")
        worker.signal(signal.SIGTERM)
        try:
            codes.append(worker.process.wait(10))
        except subprocess.TimeoutExpired:
            worker.signal(signal.SIGUSR2)  # its stacks, into its log
            with contextlib.suppress(AssertionError):
                wait_for(lambda: "most recent call first" in worker.output(), 5)
            raise AssertionError(f"SIGTERM did not stop it:\n{worker.output()}")
        exits.append(time.monotonic() - began)
        rows = sql(
            "default",
            "SELECT state, attempt, lease_token IS NULL FROM signalbox_delivery",
        )
        assert rows == [("available", 0, True)] * 4, rows
    assert codes == [0] * rounds, codes
    pg.start(concurrency=4)
    harness.wait_drained("default", 60)
    harness.check(
        "default",
        "workers: SIGTERM, receiver longer than the grace period",
        faults=faults,
        figures={
            "sigterms": rounds,
            "exit_codes_nonzero": sum(1 for code in codes if code),
            "exit_s_max": round(max(exits), 2),
            "released_each_time": 2,
            "attempts_burned": 0,
        },
    )


def test_exactly_once_under_random_kills_for_atomic(pg: Workers) -> None:
    """atomic=True receivers keep exactly one effect, whatever is killed when."""
    count, seconds = size(ci=150, full=1500), size(ci=8, full=40)
    harness.send_committed("default", "atomic_sent", count, seconds=0.05)
    faults = Faults()
    chaos = random.Random(4)
    workers = [pg.start(concurrency=4) for _ in range(2)]
    kills = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and harness.unfinished("default"):
        time.sleep(chaos.uniform(0.4, 1.2))
        victim = chaos.randrange(len(workers))
        workers[victim].signal(signal.SIGKILL)
        faults.instant("sigkill")
        workers[victim].process.wait(10)
        kills += 1
        workers[victim] = pg.start(concurrency=4)
    drain = harness.wait_drained("default", 120)
    result = harness.check(
        "default",
        "workers: exactly-once effect under random kills (atomic=True)",
        faults=faults,
        figures={"kills": kills, "drain_after_kills_s": round(drain, 2)},
    )
    assert result.figures["executions"] == count  # one effect each
    assert result.figures["completed"] == count


def test_all_workers_killed_at_once_then_restarted(pg: Workers) -> None:
    """Every worker SIGKILLed together mid-drain; a new set drains the rest."""
    count, processes = size(ci=1500, full=10000), 3
    harness.send_committed("default", "effect_sent", count, seconds=0.01)
    faults = Faults()
    for _ in range(processes):
        pg.start(concurrency=4)
    wait_for(
        lambda: (
            harness.scalar("default", "SELECT count(*) FROM reliability_ledger")
            > count // 3
        ),
        120,
        "a third of the backlog",
    )
    faults.instant("sigkill all")
    pg.signal_all(signal.SIGKILL)
    for worker in pg.started:
        worker.process.wait(10)
    left = harness.unfinished("default")
    restarted = time.monotonic()
    for _ in range(processes):
        pg.start(concurrency=4)
    drain = harness.wait_drained("default", 300)
    harness.check(
        "default",
        "workers: all killed at once, then restarted",
        faults=faults,
        figures={
            "processes": processes,
            "left_at_kill": left,
            "drain_after_restart_s": round(drain, 2),
            "drain_rate_per_s": round(left / max(time.monotonic() - restarted, 1e-9)),
        },
    )


def test_sigstop_past_the_lease_then_sigcont(pg: Workers) -> None:
    """A paused worker wakes after its leases were taken over: its acks are refused."""
    harness.send_committed("default", "effect_sent", 2, seconds=1.5)
    harness.send_committed("default", "atomic_sent", 2, seconds=1.5)
    faults = Faults()
    paused = pg.start(concurrency=4)
    wait_for(lambda: _running_by("default", paused.pid) == 4, 30, "four executions")
    stopped_at = now()
    paused.signal(signal.SIGSTOP)
    rescuer = pg.start(concurrency=4)
    # The rescuer takes the rows over once the paused worker's leases expire,
    # and runs them to completion.
    wait_for(
        lambda: (
            harness.scalar(
                "default",
                "SELECT count(*) FROM signalbox_delivery WHERE state = 'completed'",
            )
            == 4
        ),
        60,
        "the rescuer to complete the rows",
    )
    paused.signal(signal.SIGCONT)
    faults.mark("sigstop", stopped_at, now())
    wait_for(lambda: _running_by("default", paused.pid) == 0, 30, "the paused worker")
    assert paused.alive(), "the paused worker died"
    # A worker that stops has written every acknowledgement it held first, so
    # once it has exited, each has arrived (and been refused): it says so.
    paused.signal(signal.SIGTERM)
    assert paused.process.wait(30) == 0, paused.output()
    assert "4 lease_lost" in paused.output(), paused.output()
    result = harness.check(
        "default",
        "workers: SIGSTOP past the lease, then SIGCONT",
        faults=faults,
        figures={
            "rescuer_pid_completed": harness.scalar(
                "default",
                "SELECT count(*) FROM reliability_ledger WHERE pid = %s "
                "AND ended_at IS NOT NULL AND NOT taken_over",
                [rescuer.pid],
            ),
        },
    )
    # The paused worker's four executions all ended after their takeover.
    assert result.figures["stale_executions"] == 4
    assert result.figures["completions_applied"] == 4


LIVE = "SELECT count(*) FROM signalbox_workerrecord WHERE liveness_key IS NOT NULL"
"""Workers holding their liveness lock (PostgreSQL): those whose death the
others learn of at once."""


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def test_sigkill_resumes_on_the_other_worker_within_seconds(pg: Workers) -> None:
    """SIGKILL one of two workers: its rows start again on the other within
    seconds, not after its lease (30 s here, the default), because the other
    finds its liveness lock free.

    Each round sends two deliveries of two seconds, kills a worker running
    one, and times, from the kill, the last of its rows to start again.
    """
    lease = 30.0
    pg.env["SIGNALBOX_REL_LEASE"] = str(lease)
    rounds = size(ci=3, full=10)
    faults = Faults()
    workers = [pg.start(concurrency=4), pg.start(concurrency=4)]
    harness.wait_registered("default", workers)
    resumed: list[float] = []
    killed: list[tuple[int, int, object]] = []
    for _ in range(rounds):
        try:
            wait_for(lambda: harness.scalar("default", LIVE) == 2, 30, "live locks")
        except AssertionError as error:
            records = sql(
                "default", "SELECT name, liveness_key FROM signalbox_workerrecord"
            )
            raise AssertionError(f"{error}: {records}\n{pg.logs()[-4000:]}") from None
        harness.send_committed("default", "effect_sent", 2, seconds=2)
        running = {w.pid: 0 for w in workers}

        def busy(running: dict[int, int] = running) -> bool:
            running.update({pid: _running_by("default", pid) for pid in running})
            return any(running.values())

        wait_for(busy, 30, "a worker running deliveries")
        victim = next(w for w in workers if running[w.pid])
        victim.signal(signal.SIGKILL)
        at = now()
        faults.mark("sigkill", at)
        victim.process.wait(10)
        in_flight = sql(
            "default",
            "SELECT delivery_id, attempt FROM reliability_ledger WHERE pid = %s "
            "AND ended_at IS NULL",
            [victim.pid],
        )
        these = [(pk, attempt, at) for pk, attempt in in_flight]
        killed += these
        workers[workers.index(victim)] = pg.start(concurrency=4)
        wait_for(
            lambda these=these: all(
                harness.scalar("default", f"SELECT count(*) FROM ({RERUN}) x", k[:2])
                for k in these
            ),
            60,
            "the killed worker's rows to start again",
        )
        resumed.append(max(_after_kill(these, RERUN)))
        harness.wait_drained("default", 60)
    result = harness.check(
        "default",
        "workers: SIGKILL, rows resume on the other worker (liveness lock)",
        faults=faults,
        lease=lease,
        figures={
            "kills": rounds,
            "in_flight_at_kills": len(killed),
            "lease_s": lease,
            "resume_s_p50": round(_median(resumed), 2),
            "resume_s_max": round(max(resumed), 2),
            "worker_exits_unexpected": len(pg.unexpected_exits()),
        },
    )
    assert not pg.unexpected_exits()
    assert result.figures["resume_s_p50"] <= 2.0, resumed
    assert result.figures["resume_s_max"] <= 5.0, resumed
