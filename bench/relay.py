"""How late an engine's retries and delayed rows start when a relay runs.

Run it from the repository root (PostgreSQL on 127.0.0.1, or ``--db sqlite``;
it keeps a database ``signalbox_test_default_relaybench``)::

    .venvs/py311-dj52/bin/python bench/relay.py            # --help for options

The thread engine runs the deliveries in this process and a relay runs on a
thread of it, as ``signalbox worker --relay`` would. ``--sends`` sends (at
``--rate`` a second) each write two rows: one whose receiver fails its first
attempt (full jitter over ``--backoff`` seconds, so its retry falls due at a
random time) and one delayed by ``--delay`` seconds, less than the relay's
one-second poll. Each row's lateness is its last claim's time minus its due
time (``attempted_at - scheduled_at``, both from the database's clock): when
its receiver started, after its due time. The run prints p50, p90, p99 and
max, and writes them to ``bench/results/relay-latest.json``. The target is
p99 < 100 ms on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results" / "relay-latest.json"

finished: list[int] = []  # the rows whose receiver ran to the end


def fails_first(sender: object, **kwargs: Any) -> None:
    """Fail the first attempt: its retry falls due after the backoff."""
    import signalbox

    delivery = signalbox.current_delivery()
    assert delivery is not None
    if delivery.attempt == 1:
        raise ConnectionError("busy")
    finished.append(delivery.id)


def delayed(sender: object, **kwargs: Any) -> None:
    """Run (connected with ``delay=``)."""
    import signalbox

    delivery = signalbox.current_delivery()
    assert delivery is not None
    finished.append(delivery.id)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db", choices=["postgres", "sqlite", "mysql"], default="postgres"
    )
    parser.add_argument("--sends", type=int, default=250, help="sends (two rows each)")
    parser.add_argument("--rate", type=float, default=10.0, help="sends a second")
    parser.add_argument("--threads", type=int, default=16, help="the engine's threads")
    parser.add_argument("--backoff", type=float, default=1.0, help="retry jitter, s")
    parser.add_argument("--delay", type=float, default=0.3, help="the delay, s")
    options = parser.parse_args(argv)
    sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
    os.environ["SIGNALBOX_TEST_DB"] = options.db
    os.environ.setdefault("SIGNALBOX_TEST_DB_SUFFIX", "_relaybench")
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()
    from django.db import connection

    # Kept between runs (threads of this process may still hold a
    # connection to it at the end), emptied at the start.
    connection.creation.create_test_db(verbosity=0, keepdb=True)
    report(options, measure(options))
    return 0


def measure(options: argparse.Namespace) -> dict[str, list[float]]:
    from django.db import connections
    from django.test import override_settings

    import signalbox
    from signalbox import engines
    from signalbox.engines.relay import Relay
    from signalbox.models import Delivery

    signal = signalbox.Signal()
    Delivery.objects.all().delete()

    threads = {
        "BACKEND": "signalbox.engines.threads.ThreadEngine",
        "OPTIONS": {"threads": options.threads},
    }
    settings = {"ENGINES": {"default": threads}}
    with override_settings(SIGNALBOX=settings):
        backoff = signalbox.Backoff(base=timedelta(seconds=options.backoff))
        signalbox.connect(signal, fails_first, run="background", backoff=backoff)
        delay = timedelta(seconds=options.delay)
        signalbox.connect(signal, delayed, run="background", delay=delay)
        relay = Relay()
        thread = threading.Thread(target=relay.run)
        thread.start()
        try:
            started = time.monotonic()
            for n in range(options.sends):
                time.sleep(max(started + n / options.rate - time.monotonic(), 0))
                signal.send(sender=None)
            deadline = time.monotonic() + 60
            while len(finished) < 2 * options.sends and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            relay.stop()
            thread.join()
            engines.reset()
        rows = Delivery.objects.completed().values_list(
            "scheduled_at", "handed_over_at", "attempted_at"
        )
        late = {
            "started": sorted(ms(ran - due) for due, _, ran in rows),
            # Marked right after the publish: the relay's share, roughly (a
            # row the engine ran before the mark is not marked).
            "handed over": sorted(
                ms(handed - due) for due, handed, _ in rows if handed is not None
            ),
        }
        connections.close_all()
    if len(late["started"]) < 2 * options.sends:
        raise SystemExit(f"only {len(late['started'])} of {2 * options.sends} rows ran")
    return late


def ms(delta: timedelta) -> float:
    return delta.total_seconds() * 1000


def report(options: argparse.Namespace, late: dict[str, list[float]]) -> None:
    rows = len(late["started"])
    print(
        f"{rows} retries and delayed rows on {options.db}, ms after their due time:\n"
    )
    print("| | p50 | p90 | p99 | max |")
    print("| --- | ---: | ---: | ---: | ---: |")
    figures = {}
    for what, values in late.items():
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        figures[what] = {
            "p50": statistics.median(values),
            "p90": cuts[89],
            "p99": cuts[98],
            "max": values[-1],
        }
        shown = " | ".join(f"{v:.1f}" for v in figures[what].values())
        print(f"| {what} | {shown} |")
    verdict = "PASS" if figures["started"]["p99"] < 100 else "FAIL"
    print(f"\ntarget: started p99 < 100 ms: {verdict}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "python": platform.python_version(),
                "options": vars(options),
                "rows": rows,
                "lateness_ms": figures,
                "load_average": os.getloadavg(),
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
