"""signalbox's outbox against Celery, procrastinate, PgQueuer, django-tasks.

Run it from the repository root (PostgreSQL, and Redis for Celery, on
127.0.0.1)::

    make bench                                     # after bench/run.py, or:
    .venvs/py311-dj52/bin/python bench/outbox.py   # --quick, --help

Three figures, each measured for signalbox and its peers in the same run:

* **request path**: what one send to one background receiver adds to the
  caller's transaction on PostgreSQL (``with transaction.atomic(): INSERT
  the caller's row; signal.send(...)`` minus the same transaction without
  the send), next to one extra bare INSERT, Celery's ``delay_on_commit`` to
  Redis, procrastinate's ``defer`` and django-tasks' ``enqueue`` (database
  backend). Interleaved rounds, medians.
* **throughput**: 10,000 no-op deliveries drained by 2 worker processes,
  from the first start to the last completion, in deliveries per second:
  signalbox at its defaults and at ``--best-concurrency``, PgQueuer (on
  asyncpg) at its default ``batch_size`` of 10 and at 100, in interleaved
  rounds (medians and the slowest and fastest round), then Celery and
  procrastinate once each.
* **latency**: from the commit to the receiver's start, one idle worker,
  1,000 samples: p50, p99, max.

Then the same three signalbox figures on SQLite (a WAL file). The run prints
Markdown tables and the targets met or missed, and writes everything to
``bench/results/outbox-latest.json``. See bench/README.md for how to read it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "outbox-latest.json"
# Always measure this checkout's signalbox (or --src), whatever the venv holds.
DEFAULT_SRC = BENCH.parent / "src"

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    key: str
    title: str
    measured: float | None  # None: not measured (a part skipped or failed)
    limit: float
    at_most: bool  # True: measured <= limit passes; False: measured >= limit
    unit: str

    @property
    def passed(self) -> bool | None:
        if self.measured is None:
            return None
        if self.at_most:
            return self.measured <= self.limit
        return self.measured >= self.limit


# -- the command ----------------------------------------------------------------


def parse_options(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a smaller run (about a minute)"
    )
    parser.add_argument("--rounds", type=int, help="request-path rounds (250)")
    parser.add_argument(
        "--loops", type=int, default=5, help="transactions per block (5)"
    )
    parser.add_argument("--deliveries", type=int, help="throughput backlog (10000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="per worker process of the peers and of the latency worker (4)",
    )
    parser.add_argument(
        "--best-concurrency",
        type=int,
        default=4,
        help="signalbox's best no-op throughput setting on 2 cores (4)",
    )
    parser.add_argument(
        "--pgqueuer-batches",
        default="10,100",
        help="PgQueuer batch_size values to measure (10: its default, and 100)",
    )
    parser.add_argument(
        "--throughput-rounds",
        type=int,
        help="interleaved throughput rounds of signalbox and PgQueuer (3)",
    )
    parser.add_argument("--samples", type=int, help="latency samples (1000)")
    parser.add_argument(
        "--sqlite-deliveries", type=int, help="throughput backlog on SQLite (2000)"
    )
    parser.add_argument(
        "--sqlite-samples", type=int, help="latency samples on SQLite (300)"
    )
    parser.add_argument(
        "--sqlite-poll",
        type=float,
        default=0.05,
        help="POLL_SECONDS of the SQLite latency worker (0.05)",
    )
    parser.add_argument(
        "--only",
        default="path,throughput,latency,sqlite",
        help="comma-separated parts: path, throughput, latency, sqlite",
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="measure signalbox only"
    )
    parser.add_argument(
        "--src",
        type=Path,
        default=DEFAULT_SRC,
        help="the signalbox source tree to measure (this checkout's src/)",
    )
    parser.add_argument("--json", type=Path, default=RESULTS, help="results file")
    parser.add_argument(
        "--check", action="store_true", help="exit with 1 if a target is missed"
    )
    options = parser.parse_args(argv)
    quick = options.quick
    options.rounds = options.rounds or (60 if quick else 250)
    options.deliveries = options.deliveries or (2_000 if quick else 10_000)
    options.samples = options.samples or (200 if quick else 1_000)
    options.throughput_rounds = options.throughput_rounds or (1 if quick else 3)
    options.pgqueuer_batches = [
        int(size) for size in options.pgqueuer_batches.split(",") if size
    ]
    options.sqlite_deliveries = options.sqlite_deliveries or (500 if quick else 2_000)
    options.sqlite_samples = options.sqlite_samples or (100 if quick else 300)
    options.parts = {part.strip() for part in options.only.split(",") if part}
    if options.rounds < 4:
        parser.error("--rounds must be at least 4")
    options.src = options.src.resolve()
    return options


def setup(options: argparse.Namespace) -> dict[str, bool]:
    """Point Python at the bench project, check the services, set Django up."""
    sys.path[:0] = [str(BENCH), str(options.src)]
    os.environ["DJANGO_SETTINGS_MODULE"] = "outboxbench.settings"
    import django

    from outboxbench import database
    from outboxbench.settings import STATE

    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    services = {
        "postgresql": _answers(5432),
        "redis": _answers(6379),
    }
    if not services["postgresql"]:
        raise SystemExit("bench/outbox.py needs PostgreSQL on 127.0.0.1:5432.")
    database.create_postgres_database()
    django.setup()
    from signalbox.worker import DEFAULT_CONCURRENCY

    options.default_concurrency = DEFAULT_CONCURRENCY
    database.migrate("default")
    database.migrate("sqlite")
    return services


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def main(argv: Sequence[str]) -> int:
    options = parse_options(argv)
    services = setup(options)
    env = environment(options)
    peers = not options.no_peers
    celery = peers and services["redis"]
    notes = []
    if peers and not celery:
        notes.append("Redis is not answering on 127.0.0.1:6379: Celery was skipped.")
    print(
        f"signalbox {env['signalbox']} ({env['signalbox_path']}) on PostgreSQL "
        f"{env['postgresql']} and SQLite {env['sqlite']}, Python {env['python']}, "
        f"Django {env['django']}; peers: "
        + (
            f"Celery {env['celery']}, procrastinate {env['procrastinate']}, "
            f"PgQueuer {env['pgqueuer']} (asyncpg {env['asyncpg']}), "
            f"django-tasks {env['django-tasks']}"
            if peers
            else "none"
        ),
        flush=True,
    )
    results = run_parts(options, celery=celery, peers=peers, notes=notes)
    targets = judge(results)
    print()
    print(report(results, targets, options))
    for note in notes:
        print(f"Note: {note}")
    write_json(options.json, results, targets, options, env, notes)
    print(f"Results written to {options.json}")
    missed = [t.key for t in targets if t.passed is False]
    return 1 if missed and options.check else 0


# -- the parts ------------------------------------------------------------------


def run_parts(
    options: argparse.Namespace, *, celery: bool, peers: bool, notes: list[str]
) -> dict[str, Any]:
    from outboxbench import latency, request_path, throughput

    src, parts = options.src, options.parts
    workers, concurrency = options.workers, options.concurrency
    results: dict[str, Any] = {}

    def attempt(label: str, measure: Callable[[], T]) -> T | None:
        started = time.monotonic()
        print(f"  {label} ...", end="", flush=True)
        try:
            value = measure()
        except Exception as error:  # one failed part must not lose the others
            print(f" failed: {error}", flush=True)
            notes.append(f"{label} failed: {error}")
            return None
        print(f" {time.monotonic() - started:.0f} s", flush=True)
        return value

    if "path" in parts:
        cases = [request_path.BASELINE, request_path.BARE_INSERT]
        cases += [request_path.SIGNALBOX, request_path.SIGNALBOX_PK]
        if celery:
            cases.append(request_path.CELERY)
        if peers:
            cases += [request_path.PROCRASTINATE, request_path.DJANGO_TASKS]
        results["path_postgresql"] = attempt(
            "request path, PostgreSQL",
            lambda: _empty_then(
                "default",
                lambda: request_path.measure(
                    cases, "default", options.rounds, options.loops, warmup=5
                ),
            ),
        )
    if "throughput" in parts:
        pgqueuer = peers and _installed("pgqueuer", "asyncpg")
        if peers and not pgqueuer:
            notes.append("PgQueuer or asyncpg is not installed: PgQueuer was skipped.")
        drains = _interleaved_drains(options, pgqueuer, attempt)
        if celery:
            drains.append(
                attempt(
                    "throughput, Celery",
                    lambda: throughput.celery(
                        src, options.deliveries, workers, concurrency
                    ),
                )
            )
        if peers:
            drains.append(
                attempt(
                    "throughput, procrastinate",
                    lambda: throughput.procrastinate(
                        src, options.deliveries, workers, concurrency
                    ),
                )
            )
        results["throughput_postgresql"] = [d for d in drains if d is not None]
    if "latency" in parts:
        waits = [
            attempt(
                "latency, signalbox on PostgreSQL",
                lambda: latency.signalbox(
                    src, "default", options.samples, concurrency, poll=None
                ),
            )
        ]
        if celery:
            waits.append(
                attempt(
                    "latency, Celery",
                    lambda: latency.celery(src, options.samples, concurrency),
                )
            )
        if peers:
            waits.append(
                attempt(
                    "latency, procrastinate",
                    lambda: latency.procrastinate(src, options.samples, concurrency),
                )
            )
        results["latency_postgresql"] = [w for w in waits if w is not None]
    if "sqlite" in parts:
        cases = [request_path.BASELINE, request_path.BARE_INSERT]
        cases += [request_path.SIGNALBOX, request_path.SIGNALBOX_PK]
        results["path_sqlite"] = attempt(
            "request path, SQLite",
            lambda: _empty_then(
                "sqlite",
                lambda: request_path.measure(
                    cases, "sqlite", options.rounds, options.loops, warmup=5
                ),
            ),
        )
        drain = attempt(
            "throughput, signalbox on SQLite",
            lambda: throughput.signalbox(
                src, "sqlite", options.sqlite_deliveries, workers, concurrency
            ),
        )
        results["throughput_sqlite"] = [drain] if drain else []
        wait = attempt(
            "latency, signalbox on SQLite",
            lambda: latency.signalbox(
                src, "sqlite", options.sqlite_samples, concurrency, options.sqlite_poll
            ),
        )
        results["latency_sqlite"] = [wait] if wait else []
    _empty_all(celery)
    return results


def _interleaved_drains(
    options: argparse.Namespace,
    pgqueuer: bool,
    attempt: Callable[[str, Callable[[], Any]], Any],
) -> list[Any]:
    """signalbox at its defaults and best, PgQueuer at each batch size: round
    after round, each case in turn, so that a busy spell of a shared machine
    falls on all of them; summarised as medians with the spread."""
    from outboxbench import throughput

    src, workers, deliveries = options.src, options.workers, options.deliveries
    cases: list[tuple[str, Callable[[], Any]]] = [
        (
            f"signalbox on PostgreSQL, defaults (concurrency "
            f"{options.default_concurrency})",
            lambda: throughput.signalbox(
                src, "default", deliveries, workers, options.default_concurrency
            ),
        )
    ]
    if pgqueuer and options.pgqueuer_batches:
        size = options.pgqueuer_batches[0]
        cases.append(
            (
                f"PgQueuer, batch_size {size}",
                lambda size=size: throughput.pgqueuer(src, deliveries, workers, size),
            )
        )
    if options.best_concurrency != options.default_concurrency:
        cases.append(
            (
                f"signalbox on PostgreSQL, concurrency {options.best_concurrency}",
                lambda: throughput.signalbox(
                    src,
                    "default",
                    deliveries,
                    workers,
                    options.best_concurrency,
                    case="-best",
                ),
            )
        )
    for size in options.pgqueuer_batches[1:] if pgqueuer else ():
        cases.append(
            (
                f"PgQueuer, batch_size {size}",
                lambda size=size: throughput.pgqueuer(src, deliveries, workers, size),
            )
        )
    rounds: dict[str, list[Any]] = {}
    for number in range(options.throughput_rounds):
        for label, measure in cases:
            drain = attempt(
                f"throughput round {number + 1}/{options.throughput_rounds}, {label}",
                measure,
            )
            if drain is not None:
                rounds.setdefault(drain.key, []).append(drain)
    return [throughput.summarise(each) for each in rounds.values()]


def _installed(*packages: str) -> bool:
    return all(_version(package) != "unknown" for package in packages)


def _empty_then(alias: str, measure: Callable[[], T]) -> T:
    from outboxbench import database

    database.empty(alias)
    try:
        return measure()
    finally:
        database.empty(alias)


def _empty_all(celery: bool) -> None:
    """Leave no backlog behind: the tables and the Celery queue are emptied."""
    from outboxbench import database

    database.empty("default")
    database.empty("sqlite")
    if celery:
        from outboxbench.celery_app import QUEUE, app

        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge(QUEUE)


# -- judging --------------------------------------------------------------------


def _find(items: Sequence[Any] | None, key: str) -> Any:
    return next((item for item in items or () if item.key == key), None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _rate(drains: Sequence[Any] | None, key: str) -> float | None:
    return getattr(_find(drains, key), "per_second", None)


def _ms(waits: Any, figure: str) -> float | None:
    return getattr(waits, figure, None)


def judge(results: dict[str, Any]) -> list[Target]:
    path = results.get("path_postgresql")
    added = {r.key: r.added_ns for r in path or ()}
    drains = results.get("throughput_postgresql")
    signalbox_rate = _rate(drains, "signalbox-postgresql")
    best_rate = _rate(drains, "signalbox-postgresql-best") or signalbox_rate
    waits = _find(results.get("latency_postgresql"), "signalbox-postgresql")
    return [
        Target(
            "path-vs-insert",
            "request path: signalbox send / one bare INSERT",
            _ratio(added.get("signalbox"), added.get("insert")),
            1.5,
            True,
            "x",
        ),
        Target(
            "path-vs-celery",
            "request path: signalbox send / Celery delay_on_commit",
            _ratio(added.get("signalbox"), added.get("celery")),
            0.5,
            True,
            "x",
        ),
        Target(
            "throughput-vs-celery",
            "throughput: signalbox / Celery",
            _ratio(
                signalbox_rate, getattr(_find(drains, "celery"), "per_second", None)
            ),
            3.0,
            False,
            "x",
        ),
        Target(
            "throughput-vs-procrastinate",
            "throughput: signalbox / procrastinate",
            _ratio(signalbox_rate, _rate(drains, "procrastinate")),
            5.0,
            False,
            "x",
        ),
        Target(
            "throughput-vs-pgqueuer",
            "throughput: signalbox (defaults) / PgQueuer (defaults, batch_size=10)",
            _ratio(signalbox_rate, _rate(drains, "pgqueuer-batch-10")),
            1.0,
            False,
            "x",
        ),
        Target(
            "throughput-best-vs-pgqueuer",
            "throughput: signalbox (best) / PgQueuer (batch_size=100)",
            _ratio(best_rate, _rate(drains, "pgqueuer-batch-100")),
            1.0,
            False,
            "x",
        ),
        Target(
            "latency-p50", "latency p50", getattr(waits, "p50_ms", None), 2, True, "ms"
        ),
        Target(
            "latency-p99", "latency p99", getattr(waits, "p99_ms", None), 10, True, "ms"
        ),
        Target(
            "latency-max",
            "latency max",
            getattr(waits, "max_ms", None),
            100,
            True,
            "ms",
        ),
    ]


# -- reporting ------------------------------------------------------------------


def duration(ns: float) -> str:
    """``ns`` in µs below a millisecond, else in ms."""
    if abs(ns) < 1_000_000:
        return f"{ns / 1_000:.0f} µs"
    return f"{ns / 1_000_000:.2f} ms"


def report(
    results: dict[str, Any], targets: Sequence[Target], options: argparse.Namespace
) -> str:
    sections = []
    for vendor, name in (("postgresql", "PostgreSQL"), ("sqlite", "SQLite")):
        path = results.get(f"path_{vendor}")
        if path:
            sections.append(_path_table(path, name, options))
        drains = results.get(f"throughput_{vendor}")
        if drains:
            sections.append(_throughput_table(drains, name, options))
        waits = results.get(f"latency_{vendor}")
        if waits:
            sections.append(_latency_table(waits, name, options))
    sections.append(_targets_table(targets))
    return "\n\n".join(sections)


def _path_table(path: Sequence[Any], name: str, options: argparse.Namespace) -> str:
    insert = _find(path, "insert")
    lines = [
        f"### Request path, {name}: {path[0].rounds} rounds x {options.loops} "
        f"transactions per case",
        "",
        "| inside `transaction.atomic()` | per transaction (median) "
        "| added (median) | added IQR | / bare INSERT |",
        "|---|--:|--:|--:|--:|",
    ]
    for r in path:
        if r.key == "baseline":
            lines.append(f"| {r.title} | {duration(r.median_ns)} | | | |")
            continue
        ratio = _ratio(r.added_ns, insert.added_ns if insert else None)
        lines.append(
            f"| {r.title} | {duration(r.median_ns)} | **{duration(r.added_ns)}** "
            f"| {duration(r.added_q1_ns)} - {duration(r.added_q3_ns)} "
            f"| {'' if ratio is None else f'{ratio:.2f}x'} |"
        )
    return "\n".join(lines)


def _throughput_table(
    drains: Sequence[Any], name: str, options: argparse.Namespace
) -> str:
    reference = drains[0].per_second
    lines = [
        f"### Throughput, {name}: {drains[0].deliveries:,} no-op deliveries, "
        f"{options.workers} worker processes (concurrency {options.concurrency} "
        f"unless the engine names its own)",
        "",
        "| engine | rounds | drain (first start to last completion) "
        "| deliveries/s (median) | slowest - fastest round | wall, with start-up "
        f"| {drains[0].title.split(' --burst')[0]} defaults / this |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in drains:
        rounds = getattr(r, "rounds", 1)
        spread = f"{r.low:,.0f} - {r.high:,.0f}" if rounds > 1 else ""
        lines.append(
            f"| {r.title} | {rounds} | {r.drain_s:.2f} s | **{r.per_second:,.0f}** "
            f"| {spread} | {r.wall_s:.2f} s | {reference / r.per_second:.2f}x |"
        )
    return "\n".join(lines)


def _latency_table(waits: Sequence[Any], name: str, options: argparse.Namespace) -> str:
    lines = [
        f"### Latency, {name}: commit to receiver start, one idle worker, "
        f"{waits[0].samples:,} samples",
        "",
        "| engine | how it wakes | p50 | p90 | p99 | max | > 100 ms | lost |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in waits:
        lines.append(
            f"| {r.title} | {r.note} | **{r.p50_ms:.2f} ms** | {r.p90_ms:.2f} ms "
            f"| {r.p99_ms:.2f} ms | {r.max_ms:.1f} ms | {r.over_100ms} | {r.lost} |"
        )
    return "\n".join(lines)


def _targets_table(targets: Sequence[Target]) -> str:
    lines = [
        "### Targets (PostgreSQL)",
        "",
        "| target | measured | limit | result |",
        "|---|--:|--:|:-:|",
    ]
    for t in targets:
        sign = "<=" if t.at_most else ">="
        measured = "-" if t.measured is None else f"{t.measured:.2f} {t.unit}"
        verdict = {True: "PASS", False: "FAIL", None: "not measured"}[t.passed]
        lines.append(
            f"| {t.title} | {measured} | {sign} {t.limit:g} {t.unit} | {verdict} |"
        )
    return "\n".join(lines)


def environment(options: argparse.Namespace) -> dict[str, str]:
    import django

    import signalbox
    from outboxbench import database

    env = {
        "python": platform.python_version(),
        "django": django.get_version(),
        "signalbox": _version("signalbox"),
        "signalbox_path": str(Path(signalbox.__file__).parent),
        "postgresql": database.server_version("default"),
        "sqlite": database.server_version("sqlite"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
    }
    packages = ("celery", "kombu", "redis", "procrastinate", "psycopg")
    for package in (*packages, "pgqueuer", "asyncpg"):
        env[package] = _version(package)
    env["django-tasks"] = _version("django-tasks")
    env["django-tasks-db"] = _version("django-tasks-db")
    return env


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def write_json(
    path: Path,
    results: dict[str, Any],
    targets: Sequence[Target],
    options: argparse.Namespace,
    env: dict[str, str],
    notes: list[str],
) -> None:
    document = {
        "benchmark": "signalbox outbox: request path, throughput, latency, with peers",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": env,
        "settings": {
            "quick": options.quick,
            "rounds": options.rounds,
            "transactions_per_block": options.loops,
            "deliveries": options.deliveries,
            "workers": options.workers,
            "concurrency": options.concurrency,
            "signalbox_default_concurrency": options.default_concurrency,
            "best_concurrency": options.best_concurrency,
            "pgqueuer_batches": options.pgqueuer_batches,
            "throughput_rounds": options.throughput_rounds,
            "latency_samples": options.samples,
            "sqlite_deliveries": options.sqlite_deliveries,
            "sqlite_latency_samples": options.sqlite_samples,
            "sqlite_poll_seconds": options.sqlite_poll,
        },
        "passed": all(t.passed is not False for t in targets),
        "targets": [{**asdict(t), "passed": t.passed} for t in targets],
        "results": {
            name: _rounded(
                [asdict(item) for item in value] if isinstance(value, list) else value
            )
            for name, value in results.items()
            if value is not None
        },
        "notes": notes,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def _rounded(value: Any) -> Any:
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, float):
        return round(value, 3)
    if hasattr(value, "__dataclass_fields__"):
        return _rounded(asdict(value))
    return value


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
