"""The harness: databases, producers, worker processes and the invariant checker.

A scenario resets its database, starts real ``python -m django signalbox
worker`` processes (the worker is a black box: only its rows, the ledger and
its process behaviour are looked at), sends through real signals from
producer threads, hurts things with :mod:`tests.reliability.faults`, waits for
the outbox to drain and then calls :func:`check`, which runs the invariants as
SQL over the delivery table, the ledger, the sends table and the audit trail
the triggers keep, prints one JSON line of figures and returns the violations.

How a scenario is run (the worker command, its environment) is one method,
:meth:`Workers.command`: an engine that hands deliveries to a broker plugs in
by starting its own processes there, and the checker does not change.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.db import DatabaseError, InterfaceError, connections, transaction

from tests.reliability import ledger, receivers

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
FULL = os.environ.get("SIGNALBOX_RELIABILITY", "ci") == "full"
RESULTS: list[dict[str, Any]] = []
"""Every scenario's figures, in order, for the session's report."""


def size(ci: int, full: int) -> int:
    """A scenario's size: ``full`` under ``make soak``, else ``ci``."""
    return full if FULL else ci


def now() -> datetime:
    return datetime.now(UTC)


def wait_for(
    condition: Callable[[], object], timeout: float, what: str = "a condition"
) -> float:
    """Wait until ``condition()`` is true; returns the seconds it took."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - began


# -- databases ----------------------------------------------------------------


def vendor(alias: str) -> str:
    return str(connections[alias].vendor)


def sql(alias: str, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run ``text`` on the driver's connection to ``alias`` (macros expanded)."""
    with connections[alias].cursor() as cursor:
        cursor.execute(_expand(alias, text), list(params))
        return list(cursor.fetchall()) if cursor.description else []


def scalar(alias: str, text: str, params: Sequence[Any] = ()) -> Any:
    rows = sql(alias, text, params)
    return rows[0][0] if rows else None


def _expand(alias: str, text: str) -> str:
    if vendor(alias) == "postgresql":
        macros = {
            "{now}": "clock_timestamp()",
            "{send_id}": (
                "(CASE WHEN jsonb_typeof(d.payload->'kwargs'->'values'->'send_id') "
                "= 'number' THEN (d.payload->'kwargs'->'values'->>'send_id')"
                "::numeric::bigint END)"
            ),
        }
        epoch = "extract(epoch from {})"
    else:
        macros = {
            "{now}": "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now')",
            "{send_id}": (
                "(CASE WHEN json_valid(d.payload) THEN CAST(json_extract(d.payload, "
                "'$.kwargs.values.send_id') AS INTEGER) END)"
            ),
        }
        epoch = "((julianday({}) - 2440587.5) * 86400.0)"
    for macro, value in macros.items():
        text = text.replace(macro, value)
    while "E(" in text:  # E(x): x in seconds since the epoch
        start = text.index("E(")
        depth, end = 0, start + 1
        for end in range(start + 1, len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                break
        text = text[:start] + epoch.format(text[start + 2 : end]) + text[end + 1 :]
    return text


def prepare(alias: str) -> None:
    """Migrate ``alias`` and create the harness's tables and audit triggers."""
    call_command("migrate", database=alias, verbosity=0)
    with connections[alias].cursor() as cursor:
        for statement in ledger.TABLES[vendor(alias)]:
            cursor.execute(statement)


HARNESS_TABLES = ("reliability_ledger", "reliability_sends", "reliability_audit")
HARNESS_TABLES += ("reliability_faults",)
OUTBOX_TABLES = ("signalbox_delivery", "signalbox_workerrecord", "testapp_order")


def reset(alias: str) -> None:
    """Empty the outbox and the harness's tables before a scenario."""
    connections[alias].close()
    tables = (*OUTBOX_TABLES, *HARNESS_TABLES)
    if vendor(alias) == "postgresql":
        sql(alias, f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
    else:
        for table in tables:
            sql(alias, f"DELETE FROM {table}")


def counts_by_state(alias: str) -> dict[str, int]:
    return dict(sql(alias, "SELECT state, count(*) FROM signalbox_delivery GROUP BY 1"))


def unfinished(alias: str) -> int:
    """Rows that still have to run (rows scheduled beyond a minute excepted)."""
    return int(
        scalar(
            alias,
            "SELECT count(*) FROM signalbox_delivery WHERE state IN "
            "('scheduled', 'available', 'retryable', 'executing') AND "
            "NOT (state = 'scheduled' AND E(scheduled_at) > E({now}) + 60)",
        )
    )


def wait_drained(alias: str, timeout: float) -> float:
    """Wait until every row has finished; returns the seconds it took."""

    def drained() -> bool:
        try:
            return unfinished(alias) == 0
        except DatabaseError:
            connections[alias].close()
            return False

    return wait_for(drained, timeout, "the outbox to drain")


# -- producers ----------------------------------------------------------------

_ids = itertools.count(1)
_ids_lock = threading.Lock()


def next_send_id() -> int:
    with _ids_lock:
        return next(_ids)


class _Rollback(Exception):
    pass


def send(
    alias: str, signal_name: str, count: int = 1, *, producer: str = "driver", **kwargs
) -> list[int]:
    """Send ``count`` times in the current transaction; note each in the sends table.

    The sends rows are the transaction's last statement, so ``written_at`` is
    an instant before the commit.
    """
    sig = getattr(receivers, signal_name)
    expected = receivers.EXPECTED[signal_name]
    delay = (
        receivers.SOON.total_seconds()
        if signal_name == "soon_sent"
        else 3600.0
        if signal_name == "far_sent"
        else 0.0
    )
    ids = [next_send_id() for _ in range(count)]
    for send_id in ids:
        sig.send(sender=None, send_id=send_id, using=alias, **kwargs)
    rows = ", ".join(["(%s, %s, %s, %s, %s)"] * len(ids))
    params: list[Any] = []
    for send_id in ids:
        params += [send_id, producer, signal_name, expected, delay]
    sql(
        alias,
        "INSERT INTO reliability_sends (send_id, producer, signal, expected, delay_s) "
        f"VALUES {rows}",
        params,
    )
    return ids


def send_committed(alias: str, signal_name: str, count: int, batch: int = 500, **kw):
    """Send ``count`` times, ``batch`` sends per committed transaction."""
    ids: list[int] = []
    while len(ids) < count:
        with transaction.atomic(using=alias):
            ids += send(alias, signal_name, min(batch, count - len(ids)), **kw)
    return ids


@dataclass(eq=False)
class Producer(threading.Thread):
    """Sends in transactions until ``count`` are done or ``stop`` is set.

    Every ``rollback_every``-th transaction is rolled back on purpose, and a
    transaction may linger ``linger`` seconds after its sends before it
    commits (so an execution before the commit would show). Database errors
    (the server restarting, the connection killed) are counted and the
    producer goes on with a new connection: whether such a transaction
    committed is for the sends table to say.
    """

    alias: str
    signals: Sequence[str]
    count: int
    per_transaction: int = 1
    rollback_every: int = 0
    linger: float = 0.0
    pause: float = 0.0
    kwargs: dict[str, Any] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    committed: int = 0
    rolled_back: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True, name=f"producer-{id(self)}")

    def run(self) -> None:
        try:
            for n in itertools.count(1):
                if self.stop.is_set() or self.committed >= self.count:
                    return
                self._one(n)
                if self.pause:
                    time.sleep(self.pause)
        finally:
            connections.close_all()

    def _one(self, n: int) -> None:
        name = self.signals[n % len(self.signals)]
        size = min(self.per_transaction, self.count - self.committed)
        try:
            with transaction.atomic(using=self.alias):
                send(self.alias, name, size, producer=self.name, **self.kwargs)
                if self.linger:
                    time.sleep(self.linger)
                if self.rollback_every and n % self.rollback_every == 0:
                    raise _Rollback
            self.committed += size
        except _Rollback:
            self.rolled_back += size
        except (DatabaseError, InterfaceError) as error:
            self.errors.append(f"{type(error).__name__}: {error}".strip())
            connections[self.alias].close()
            time.sleep(0.05)


def run_producers(producers: Iterable[Producer], timeout: float) -> None:
    producers = list(producers)
    for producer in producers:
        producer.start()
    for producer in producers:
        producer.join(timeout)
        assert not producer.is_alive(), "a producer did not finish"


# -- worker processes ---------------------------------------------------------


@dataclass
class Worker:
    """One worker process, its log, and what the harness did to it."""

    number: int
    process: subprocess.Popen[bytes]
    log: Path
    started: float
    killed_by_harness: bool = False
    peak_rss_kb: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        if signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            self.killed_by_harness = True
        self.process.send_signal(signum)

    def sample_rss(self) -> int:
        """Read the peak resident set (VmHWM) while the process lives, in KiB."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))
        except OSError:
            pass
        return self.peak_rss_kb

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class Workers:
    """Starts worker processes for one scenario and stops them all afterwards."""

    def __init__(self, alias: str, folder: Path, **env: str) -> None:
        self.alias = alias
        self.folder = folder
        self.env = env
        self.started: list[Worker] = []

    def command(self, concurrency: int, args: Sequence[str]) -> list[str]:
        return [
            sys.executable,
            "-m",
            "django",
            "signalbox",
            "worker",
            "--database",
            self.alias,
            "--concurrency",
            str(concurrency),
            *args,
        ]

    def environment(self, src: Path = SRC, **env: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(src)]),
            "DJANGO_SETTINGS_MODULE": "tests.reliability.settings",
            "PYTHONUNBUFFERED": "1",
            "SIGNALBOX_REL_WORKER": "1",
            **self.env,
            **env,
        }

    def manage(self, *args: str, **env: str) -> str:
        """Run ``python -m django signalbox ARGS`` as a person would; its output."""
        done = subprocess.run(
            [sys.executable, "-m", "django", "signalbox", *args],
            cwd=ROOT,
            env=self.environment(**env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def start(
        self,
        *,
        concurrency: int = 4,
        args: Sequence[str] = (),
        src: Path = SRC,
        **env: str,
    ) -> Worker:
        number = len(self.started) + 1
        log = self.folder / f"worker-{number}.log"
        environment = self.environment(
            src, SIGNALBOX_REL_APP=f"signalbox-rel-worker-{number}", **env
        )
        with log.open("wb") as out:
            process = subprocess.Popen(
                self.command(concurrency, args),
                cwd=ROOT,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(number, process, log, time.monotonic())
        self.started.append(worker)
        return worker

    def running(self) -> list[Worker]:
        return [worker for worker in self.started if worker.alive()]

    def signal_all(self, signum: int) -> None:
        for worker in self.running():
            worker.signal(signum)

    def sample_rss(self) -> None:
        for worker in self.running():
            worker.sample_rss()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM every running worker and wait; SIGKILL what is left."""
        for worker in self.running():
            worker.signal(signal.SIGCONT)
            worker.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in self.started:
            try:
                worker.process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(10)

    def unexpected_exits(self) -> list[str]:
        """Workers that exited without being told to, or exited non-zero on SIGTERM."""
        bad = []
        for worker in self.started:
            code = worker.process.poll()
            if code is None:
                continue
            if not worker.killed_by_harness or code not in (0, -signal.SIGKILL):
                bad.append(f"worker {worker.number} (pid {worker.pid}) exited {code}")
        return bad

    def logs(self) -> str:
        return "\n".join(worker.output() for worker in self.started)


def wait_registered(alias: str, workers: Sequence[Worker], timeout: float = 30) -> None:
    """Wait until each worker has written its heartbeat row (it is up and claiming)."""

    def up() -> bool:
        pids = {
            name.split(":")[1]
            for (name,) in sql(alias, "SELECT name FROM signalbox_workerrecord")
        }
        return all(str(worker.pid) in pids for worker in workers)

    wait_for(up, timeout, "the workers to start")


# -- faults, as the checker sees them ------------------------------------------


@dataclass
class Faults:
    """The windows in which the harness was hurting something."""

    windows: list[tuple[str, datetime, datetime]] = field(default_factory=list)

    def mark(self, kind: str, started: datetime, ended: datetime | None = None) -> None:
        self.windows.append((kind, started, ended or started))

    def instant(self, kind: str) -> None:
        self.mark(kind, now())


# -- the invariant checker ----------------------------------------------------

DEAD_REASONS = (
    "max_attempts",
    "not_retryable",
    "decode_error",
    "unknown_receiver",
    "lease_expired",
)


def _stamp(alias: str, moment: datetime) -> str:
    if vendor(alias) == "postgresql":
        return moment.isoformat()
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


# Each invariant: a query that returns the ids (delivery, send or ledger) that
# violate it. %(slack)s is the lease plus a margin: how long after a fault an
# execution still counts as "in flight at the fault".
INVARIANTS: dict[str, str] = {
    "I1 committed send without all its deliveries": """
        SELECT s.send_id FROM reliability_sends s LEFT JOIN (
            SELECT {send_id} AS send_id, count(*) AS n FROM signalbox_delivery d
            GROUP BY 1
            UNION ALL
            SELECT send_id, count(*) FROM reliability_audit WHERE op = 'delete'
            GROUP BY 1
        ) r ON r.send_id = s.send_id
        GROUP BY s.send_id, s.expected HAVING coalesce(sum(r.n), 0) <> s.expected""",
    "I1 delivery of a committed send not completed or dead": """
        SELECT d.id FROM signalbox_delivery d
        WHERE {send_id} IN (SELECT send_id FROM reliability_sends)
          AND d.state NOT IN ('completed', 'dead')
          AND NOT (d.state = 'scheduled' AND E(d.scheduled_at) > E({now}) + 60)""",
    "I1 row deleted before it finished": """
        SELECT a.delivery_id FROM reliability_audit a
        WHERE a.op = 'delete' AND a.old_state NOT IN ('completed', 'dead')""",
    "I2 delivery from a rolled-back send": """
        SELECT d.id FROM signalbox_delivery d
        WHERE {send_id} IS NOT NULL
          AND {send_id} NOT IN (SELECT send_id FROM reliability_sends)""",
    "I2 execution from a rolled-back send": """
        SELECT l.id FROM reliability_ledger l WHERE l.send_id IS NOT NULL
          AND l.send_id NOT IN (SELECT send_id FROM reliability_sends)""",
    "I3 executing past its lease": """
        SELECT d.id FROM signalbox_delivery d
        WHERE d.state = 'executing' AND E(d.lease_expires_at) < E({now})""",
    "I4 more attempts than the limit": """
        SELECT d.id FROM signalbox_delivery d WHERE d.attempt > d.max_attempts
        UNION
        SELECT d.id FROM signalbox_delivery d JOIN reliability_ledger l
            ON l.delivery_id = d.id WHERE l.attempt > d.max_attempts""",
    "I4 dead early or without a reason": """
        SELECT d.id FROM signalbox_delivery d WHERE d.state = 'dead' AND (
            d.reason NOT IN ('max_attempts', 'not_retryable', 'decode_error',
                             'unknown_receiver', 'lease_expired')
            OR d.error = ''
            OR (d.reason IN ('max_attempts', 'lease_expired')
                AND d.attempt < d.max_attempts))""",
    "I5 duplicate execution not in flight at a fault": """
        SELECT l.id FROM reliability_ledger l
        WHERE l.kind = 'effect' AND NOT l.atomic
          AND EXISTS (SELECT 1 FROM reliability_ledger later
                      WHERE later.delivery_id = l.delivery_id AND later.kind = 'effect'
                        AND later.id > l.id)
          AND NOT EXISTS (
              SELECT 1 FROM reliability_faults f
              WHERE E(l.started_at) <= E(f.ended_at) + %(slack)s
                AND (l.ended_at IS NULL
                     OR E(l.ended_at) + %(slack)s >= E(f.started_at)))""",
    "I6 atomic receiver without exactly one effect": """
        SELECT d.id FROM signalbox_delivery d
        LEFT JOIN reliability_ledger l
            ON l.delivery_id = d.id AND l.kind = 'effect' AND l.atomic
        WHERE d.receiver IN (%(atomic)s)
        GROUP BY d.id, d.state
        HAVING count(l.id) <> (CASE WHEN d.state = 'completed' THEN 1 ELSE 0 END)""",
    "I7 execution before its send committed": """
        SELECT l.id FROM reliability_ledger l
        JOIN reliability_sends s ON s.send_id = l.send_id
        WHERE E(l.started_at) <= E(s.written_at)""",
    "I7 execution before its scheduled time": """
        SELECT l.id FROM reliability_ledger l
        JOIN reliability_sends s ON s.send_id = l.send_id
        JOIN signalbox_delivery d ON d.id = l.delivery_id
        WHERE l.attempt = 1
          AND E(l.started_at) + 0.002 < E(d.enqueued_at) + s.delay_s""",
    "I8 completion without a finished execution of that claim": """
        SELECT a.delivery_id FROM reliability_audit a
        WHERE a.op = 'update' AND a.new_state = 'completed'
          AND NOT EXISTS (
              SELECT 1 FROM reliability_ledger l
              WHERE l.delivery_id = a.delivery_id AND l.attempt = a.old_attempt
                AND l.ended_at IS NOT NULL AND E(l.ended_at) <= E(a.at) + 0.002)""",
    "I8 completion of a row that was not executing": """
        SELECT a.delivery_id FROM reliability_audit a
        WHERE a.op = 'update' AND a.new_state = 'completed'
          AND a.old_state <> 'executing'""",
    "I8 double completion": """
        SELECT a.delivery_id FROM reliability_audit a
        WHERE a.op = 'update' AND a.new_state = 'completed'
        GROUP BY a.delivery_id HAVING count(*) > 1""",
}

# Figures that count invariant violations, by the invariants' names.
SUMMARY: dict[str, tuple[str, ...]] = {
    "lost": ("I1",),
    "phantoms": ("I2",),
    "stuck": ("I3",),
    "over_the_limit_or_dead_early": ("I4",),
    "unexplained_duplicates": ("I5",),
    "atomic_not_exactly_once": ("I6",),
    "early_executions": ("I7",),
    "stale_acks_applied": (
        "I8 completion without a finished execution",
        "I8 completion of a row that was not executing",
    ),
    "double_completions": ("I8 double completion",),
}

FIGURES: dict[str, str] = {
    "sends_committed": "SELECT count(*) FROM reliability_sends",
    "deliveries": "SELECT count(*) FROM signalbox_delivery",
    "completed": "SELECT count(*) FROM signalbox_delivery WHERE state = 'completed'",
    "dead": "SELECT count(*) FROM signalbox_delivery WHERE state = 'dead'",
    "executions": "SELECT count(*) FROM reliability_ledger WHERE kind = 'effect'",
    "attempts_seen": "SELECT count(*) FROM reliability_ledger WHERE kind = 'probe'",
    "duplicates": """
        SELECT count(*) FROM (SELECT delivery_id FROM reliability_ledger
            WHERE kind = 'effect' GROUP BY delivery_id HAVING count(*) > 1) x""",
    "in_flight_at_faults": """
        SELECT count(DISTINCT l.delivery_id) FROM reliability_ledger l
        JOIN reliability_faults f
          ON E(l.started_at) <= E(f.ended_at)
         AND (l.ended_at IS NULL OR E(l.ended_at) >= E(f.started_at))
        WHERE l.kind IN ('effect', 'probe')""",
    "completed_twice": """
        SELECT count(*) FROM (SELECT delivery_id FROM reliability_ledger
            WHERE kind = 'effect' AND ended_at IS NOT NULL
            GROUP BY delivery_id HAVING count(*) > 1) x""",
    "stale_executions": "SELECT count(*) FROM reliability_ledger WHERE taken_over",
    "leases_rescued": """
        SELECT count(*) FROM reliability_audit WHERE op = 'update'
        AND old_state = 'executing' AND new_reason = 'lease_expired'""",
    "completions_applied": """
        SELECT count(*) FROM reliability_audit WHERE op = 'update'
        AND new_state = 'completed'""",
    "executions_per_delivery_max": """
        SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM reliability_ledger
            WHERE kind = 'effect' GROUP BY delivery_id) x""",
    "executions_per_delivery_min": """
        SELECT coalesce(min(n), 0) FROM (SELECT count(*) AS n FROM reliability_ledger
            WHERE kind = 'effect' GROUP BY delivery_id) x""",
}


@dataclass
class Result:
    scenario: str
    engine: str
    figures: dict[str, Any]
    violations: dict[str, list[Any]]

    def line(self) -> str:
        return json.dumps(
            {
                "scenario": self.scenario,
                "size": "full" if FULL else "ci",
                "engine": self.engine,
                "figures": self.figures,
                "violations": self.violations,
            },
            default=str,
            sort_keys=False,
        )


def check(
    alias: str,
    scenario: str,
    *,
    faults: Faults | None = None,
    figures: dict[str, Any] | None = None,
    lease: float = 1.0,
    skip: Iterable[str] = (),
    fail: bool = True,
) -> Result:
    """Run every invariant and the standard figures; print one JSON line.

    ``figures`` are the scenario's own, merged in. Violations fail the
    scenario (unless ``fail`` is false, for a scenario that looks at them
    itself); ``skip`` names invariants a scenario has no use for, by prefix.
    """
    connections[alias].close()
    faults = faults or Faults()
    for kind, started, ended in faults.windows:
        sql(
            alias,
            "INSERT INTO reliability_faults (kind, started_at, ended_at) "
            "VALUES (%s, %s, %s)",
            [kind, _stamp(alias, started), _stamp(alias, ended)],
        )
    atomic = ", ".join(f"'{key}'" for key in _atomic_keys()) or "''"
    values = {"slack": str(lease + 2.0), "atomic": atomic}
    violations: dict[str, list[Any]] = {}
    counted: dict[str, int] = {}
    for name, query in INVARIANTS.items():
        if any(name.startswith(prefix) for prefix in skip):
            continue
        found = [row[0] for row in sql(alias, query % values)]
        counted[name] = len(found)
        if found:
            violations[name] = sorted(found)[:10] + (
                [f"... {len(found)} in all"] if len(found) > 10 else []
            )
    measured: dict[str, Any] = {
        figure: sum(n for name, n in counted.items() if name.startswith(prefixes))
        for figure, prefixes in SUMMARY.items()
    }
    measured.update(
        {
            name: _number(scalar(alias, query % values))
            for name, query in FIGURES.items()
        }
    )
    measured["dead_by_reason"] = dict(
        sql(
            alias,
            "SELECT reason, count(*) FROM signalbox_delivery WHERE state = 'dead' "
            "GROUP BY 1 ORDER BY 1",
        )
    )
    measured["faults"] = len(faults.windows)
    measured.update(figures or {})
    result = Result(scenario, vendor(alias), measured, violations)
    RESULTS.append(json.loads(result.line()))
    print(result.line(), flush=True)
    if fail:
        assert not violations, f"{scenario}: invariants violated: {violations}"
    return result


def _number(value: Any) -> Any:
    if value is None:
        return None
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        return value
    return int(as_float) if as_float.is_integer() else round(as_float, 3)


def _atomic_keys() -> list[str]:
    from signalbox import registry

    return sorted(
        key
        for key, found in registry.registry.background().items()
        if any(
            each.info.policy is not None and each.info.policy.atomic for each in found
        )
    )


def percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]
