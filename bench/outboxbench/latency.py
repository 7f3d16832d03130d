"""Latency from the commit to the receiver's start, with one idle worker.

Each sample is one transaction that sends the probe signal (or defers the
peer's probe task). An ``on_commit`` callback registered before the send
reads the clock right after the commit; the receiver reads it again as it
starts and sends the reading back over UDP (:func:`outboxbench.marks.stamp`).
Both readings are ``time.monotonic_ns()``, CLOCK_MONOTONIC, one clock for
every process on the machine. The next sample waits for the previous one's
stamp, then a random 5-15 ms, so the worker is idle each time; a worker that
polls (SQLite) gets a pause spread over its whole poll interval too, so the
samples fall anywhere in its polling cycle.
"""

from __future__ import annotations

import random
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from django.db import transaction

from outboxbench import database, processes
from outboxbench.models import Order
from outboxbench.receivers import probe

Send = Callable[[int, int], object]
"""Sends probe ``sample`` to the driver's ``port``, inside a transaction."""

START_TIMEOUT = 60.0  # for the first sample: the worker is still starting
SAMPLE_TIMEOUT = 2.0  # a sample that takes longer counts as lost
WARMUP = 20
GAP = (0.005, 0.015)  # seconds between samples, plus the poll interval if any
LOST_MS = SAMPLE_TIMEOUT * 1000


@dataclass(frozen=True)
class LatencyResult:
    key: str
    title: str
    samples: int
    lost: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    over_100ms: int
    note: str = ""


class Stamps:
    """The UDP socket receivers report to; one datagram per sample."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port: int = self.socket.getsockname()[1]

    def close(self) -> None:
        self.socket.close()

    def wait_for(self, sample: int, timeout: float) -> int | None:
        """When ``sample``'s receiver started, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.socket.settimeout(left)
            try:
                data = self.socket.recv(64)
            except TimeoutError:
                return None
            number, started = (int(part) for part in data.split())
            if number == sample:
                return started
        return None


def sample_all(
    send: Send, using: str, samples: int, stamps: Stamps, poll: float = 0.0
) -> list[float]:
    """Latencies in ms; a lost sample counts as the timeout (a lower bound)."""
    latencies: list[float] = []
    for number in range(-WARMUP, samples):
        committed: list[int] = []
        with transaction.atomic(using=using):
            transaction.on_commit(partial(_now_into, committed), using=using)
            send(number, stamps.port)
        timeout = START_TIMEOUT if number == -WARMUP else SAMPLE_TIMEOUT
        started = stamps.wait_for(number, timeout)
        if number == -WARMUP and started is None:
            raise processes.WorkerFailed("the worker ran no probe within a minute")
        if number >= 0:
            latencies.append(
                LOST_MS if started is None else (started - committed[0]) / 1e6
            )
        time.sleep(random.uniform(GAP[0], GAP[1] + poll))
    return latencies


def _now_into(readings: list[int]) -> None:
    readings.append(time.monotonic_ns())


def summary(
    key: str, title: str, latencies: list[float], note: str = ""
) -> LatencyResult:
    arrived = [x for x in latencies if x < LOST_MS]
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return LatencyResult(
        key=key,
        title=title,
        samples=len(latencies),
        lost=len(latencies) - len(arrived),
        p50_ms=statistics.median(latencies),
        p90_ms=cuts[89],
        p99_ms=cuts[98],
        max_ms=max(latencies),
        over_100ms=sum(1 for x in latencies if x > 100),
        note=note,
    )


def _measure(
    src: Path,
    name: str,
    argv: list[str],
    send: Send,
    using: str,
    samples: int,
    env: dict[str, str] | None = None,
    poll: float = 0.0,
) -> list[float]:
    database.empty(using)
    stamps = Stamps()
    try:
        with processes.Processes(src, env) as running:
            running.start(name, argv)
            return sample_all(send, using, samples, stamps, poll)
    finally:
        stamps.close()


def signalbox(
    src: Path, using: str, samples: int, concurrency: int, poll: float | None
) -> LatencyResult:
    """One ``signalbox worker`` (not burst: it waits, woken by NOTIFY on PostgreSQL)."""

    alias = {} if using == "default" else {"using": using}

    def send(sample: int, port: int) -> None:
        probe.send(sender=Order, sample=sample, port=port, **alias)

    env = {} if poll is None else {"SIGNALBOX_BENCH_POLL": str(poll)}
    argv = processes.signalbox_worker(concurrency, using, burst=False)
    name = f"signalbox-latency-{using}"
    latencies = _measure(src, name, argv, send, using, samples, env, poll or 0.0)
    vendor = "sqlite" if using == "sqlite" else "postgresql"
    note = f"POLL_SECONDS={poll:g}" if poll is not None else "woken by NOTIFY"
    return summary(f"signalbox-{vendor}", "signalbox worker", latencies, note)


def celery(src: Path, samples: int, concurrency: int) -> LatencyResult:
    """One Celery prefork worker; ``delay_on_commit`` publishes after the commit."""
    from outboxbench.celery_app import QUEUE, stamp

    def send(sample: int, port: int) -> None:
        stamp.delay_on_commit(sample, port)

    argv = processes.celery_worker("latency", concurrency, QUEUE)
    latencies = _measure(src, "celery-latency", argv, send, "default", samples)
    return summary(
        "celery", "Celery prefork, Redis broker", latencies, "delay_on_commit"
    )


def procrastinate(src: Path, samples: int, concurrency: int) -> LatencyResult:
    """One procrastinate worker, which LISTENs for new jobs."""
    from outboxbench.tasks import QUEUE, procrastinate_stamp

    def send(sample: int, port: int) -> None:
        procrastinate_stamp.defer(sample=sample, port=port)

    argv = processes.procrastinate_worker(concurrency, QUEUE, one_shot=False)
    latencies = _measure(src, "procrastinate-latency", argv, send, "default", samples)
    return summary("procrastinate", "procrastinate worker", latencies, "LISTEN/NOTIFY")
