"""The Celery engine against plain Celery tasks on the same Redis.

Run it from the repository root (PostgreSQL and Redis on 127.0.0.1)::

    .venvs/py311-dj52/bin/python bench/engines.py      # --quick, --help

Two figures:

* **request path**: what one send to a background receiver on the Celery
  engine adds to the caller's transaction (``with transaction.atomic():
  INSERT the caller's row; signal.send(...)``, commit included), next to
  Celery's own ``delay_on_commit`` to the same Redis; interleaved rounds,
  medians (bench/outboxbench/request_path.py). The engine's hand-over
  thread works after each commit; after each block of the engine's case
  the driver waits for it (untimed), so that its work lands on the engine's
  own transactions and never on the next case's. Target: no slower.
* **throughput**: no-op deliveries drained by one Celery worker (prefork,
  ``--concurrency 2``, ``acks_late``) through the engine, against as many
  plain Celery tasks through the same worker settings; from the first task's
  start to the last one's end (each worker process's own record; the
  engine may write its last completions up to 20 ms after that, which the
  figure does not wait for). Both use CELERY_DB_REUSE_MAX and the same
  CONN_MAX_AGE. The two drain in turns, several rounds (plain first in odd
  rounds, the engine first in even ones), because on a shared machine one
  pair of drains a minute apart can differ by a quarter for the same work;
  the ratio is the median of the rounds' ratios (``--rounds``, 5 by
  default). Target: at least 0.8x.

It prints one JSON line and writes bench/results/engines-latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
SRC = BENCH.parent / "src"
RESULTS = BENCH / "results" / "engines-latest.json"
QUEUE = "bench-engine"  # the engine's queue_prefix + the receiver's queue=

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outboxbench.engine_settings")
os.environ.setdefault("SIGNALBOX_BENCH_PG_NAME", "signalbox_bench_engines")
os.environ["SIGNALBOX_BENCH_ACKS_LATE"] = "1"
sys.path[:0] = [str(BENCH), str(SRC)]


def request_path(rounds: int) -> dict[str, float]:
    from outboxbench import request_path as rp
    from outboxbench.celery_app import app
    from outboxbench.engine_receivers import handed
    from outboxbench.models import Order
    from signalbox.engines import _handoff

    def engine_send(order: Order, using: str) -> None:
        handed.send(sender=Order, order=order)

    title = "+ signalbox send, Celery engine"
    # The hand-over thread publishes after the commit, and gathers a stream
    # of commits for a few ms: its work must not spill into the next block.
    case = rp.PathCase("celery-engine", title, engine_send, lambda: _handoff.flush(60))
    results = rp.measure([rp.BASELINE, rp.CELERY, case], "default", rounds, 5, 20)
    _handoff.flush(60)
    for queue in (QUEUE, "signalbox-bench"):
        _purge(app, queue)
    added = {r.key: r.added_ns / 1000 for r in results}
    return {
        "engine_added_us": round(added["celery-engine"], 1),
        "delay_on_commit_added_us": round(added["celery"], 1),
        "ratio": round(added["celery-engine"] / added["celery"], 3),
    }


def throughput(deliveries: int, concurrency: int, rounds: int) -> dict[str, Any]:
    from django.db import transaction

    from outboxbench import cpu, database, processes
    from outboxbench.celery_app import app, noop
    from outboxbench.engine_receivers import handed
    from outboxbench.models import Order
    from outboxbench.settings import STATE
    from outboxbench.throughput import _await_progress
    from signalbox.engines import _handoff

    def drain(queue: str, fill: object) -> tuple[float, dict[str, int]]:
        _purge(app, queue)
        fill()  # type: ignore[operator]
        progress = STATE / "engines-progress"
        shutil.rmtree(progress, ignore_errors=True)
        progress.mkdir(parents=True)
        env = {"SIGNALBOX_BENCH_PROGRESS": str(progress)}
        with processes.Processes(SRC, env) as running:
            running.env["DJANGO_SETTINGS_MODULE"] = "outboxbench.engine_settings"
            argv = processes.celery_worker("engines", concurrency, queue)
            running.start("celery-engines", [*argv, "--include", INCLUDE])
            before, done = _first_done(progress, running)
            count, first, last = _await_progress(progress, deliveries, running)
            after = _cpu_reading()
            spent = cpu.per_delivery(before, after, count - done) if before else {}
        return count / ((last - first) / 1e9), spent

    def plain() -> None:
        with app.producer_or_acquire() as producer:
            for number in range(deliveries):
                noop.apply_async((number,), producer=producer)

    def through_engine() -> None:
        database.empty("default")
        for first in range(0, deliveries, 500):
            with transaction.atomic():
                for number in range(first, min(first + 500, deliveries)):
                    handed.send(sender=Order, order_id=number)
        assert _handoff.flush(120)

    plain_rates: list[float] = []
    engine_rates: list[float] = []
    spent: dict[str, list[dict[str, int]]] = {"plain": [], "engine": []}
    for round_number in range(rounds):
        pair = [("plain", "signalbox-bench", plain), ("engine", QUEUE, through_engine)]
        for kind, queue, fill in pair if round_number % 2 == 0 else pair[::-1]:
            rate, cpu_spent = drain(queue, fill)
            (plain_rates if kind == "plain" else engine_rates).append(rate)
            spent[kind].append(cpu_spent)
    paired = zip(engine_rates, plain_rates, strict=True)
    ratios = [engine / plain for engine, plain in paired]
    return {
        "deliveries": deliveries,
        "rounds": rounds,
        "plain_celery_per_s": round(statistics.median(plain_rates)),
        "engine_per_s": round(statistics.median(engine_rates)),
        "round_ratios": [round(each, 3) for each in ratios],
        "ratio": round(statistics.median(ratios), 3),
        "cpu_us_per_delivery": {kind: _medians(each) for kind, each in spent.items()},
    }


def _medians(readings: list[dict[str, int]]) -> dict[str, int]:
    """Each kind of process's median over the rounds (0 where a round had none)."""
    kinds = sorted({kind for reading in readings for kind in reading})
    return {
        kind: round(statistics.median(reading.get(kind, 0) for reading in readings))
        for kind in kinds
    }


INCLUDE = "outboxbench.engine_receivers"


def _cpu_reading() -> Any:
    from outboxbench import cpu

    return cpu.read(os.environ["SIGNALBOX_BENCH_PG_NAME"]) if cpu.available() else None


def _first_done(progress: Path, running: Any) -> tuple[Any, int]:
    """A CPU reading once the first task ended, and how many had by then:
    the drain's own time, not the worker's start-up (None without /proc)."""
    from outboxbench import marks

    while not (done := marks.read_progress(progress)[0]):
        running.check_alive()
        time.sleep(0.002)
    return _cpu_reading(), done


def _purge(app: object, queue: str) -> None:
    with app.connection_for_write() as connection:  # type: ignore[attr-defined]
        connection.default_channel.queue_purge(queue)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    parser.add_argument(
        "--rounds", type=int, default=5, help="throughput rounds (default 5)"
    )
    options = parser.parse_args()
    import django

    from outboxbench import database

    database.create_postgres_database()
    django.setup()
    database.migrate("default")
    database.empty("default")
    from outboxbench import engine_receivers  # noqa: F401  (connects the receiver)

    figures: dict[str, Any] = {
        "request_path": request_path(rounds=40 if options.quick else 150),
        "throughput": throughput(
            1000 if options.quick else 4000,
            concurrency=2,
            rounds=1 if options.quick else options.rounds,
        ),
    }
    figures["targets"] = {
        "request_path_no_slower": figures["request_path"]["ratio"] <= 1.0,
        "throughput_at_least_0.8x": figures["throughput"]["ratio"] >= 0.8,
    }
    print(json.dumps(figures))
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
