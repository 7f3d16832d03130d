"""Fault scenarios for the Celery engine, each reporting its figures.

Every test prints one JSON line (``pytest -s`` shows them). The broker
outage and the visibility timeout use a private Redis on port 6390, started
and stopped here; the shared Redis is never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from signalbox import engines
from signalbox._states import State
from signalbox.engines import _handoff
from signalbox.engines.relay import Relay
from signalbox.models import Delivery
from tests.test_engine_celery import (
    CeleryWorkers,
    engine_settings,
    notes,
    purge,
    send,
    wait_for,
)
from tests.testapp import celery_jobs
from tests.testapp.celery_app import PRIVATE_REDIS_PORT

# Real worker processes and a private Redis, killed and stopped: on
# PostgreSQL only, so that make test runs them twice rather than four times.
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.redis,
    pytest.mark.postgres,
]


def report(scenario: str, **figures: object) -> None:
    print(json.dumps({"scenario": scenario, **figures}))


class PrivateRedis:
    """A throwaway redis-server on loopback, without persistence."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def start(self) -> None:
        subprocess.run(
            [
                *("redis-server", "--port", str(PRIVATE_REDIS_PORT)),
                *("--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
                *("--daemonize", "yes", "--dir", str(self.folder)),
                *("--logfile", str(self.folder / "redis.log")),
            ],
            check=True,
        )
        wait_for(self.answers, timeout=10)

    def stop(self) -> None:
        self.cli("shutdown", "nosave")
        wait_for(lambda: not self.answers(), timeout=10)

    def answers(self) -> bool:
        return self.cli("ping") == "PONG"

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(PRIVATE_REDIS_PORT), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip()


def _need_redis_server() -> None:
    """Skip without the ``redis-server`` binary; under CI, fail instead."""
    if shutil.which("redis-server") is None:
        message = "needs redis-server to run a private Redis"
        if os.environ.get("CI"):
            pytest.fail(f"{message}, and CI needs it (install redis-server)")
        pytest.skip(message)


def test_a_missing_redis_server_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to run in there
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        _need_redis_server()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI needs it"):
        _need_redis_server()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    _need_redis_server()
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        if redis.answers():
            redis.stop()


def workers_on(
    app: str, folder: Path, redeliver: float = 3600, **options: object
) -> Iterator[CeleryWorkers]:
    with override_settings(SIGNALBOX=engine_settings(app, redeliver, **options)):
        celery_jobs.connect()
        workers = CeleryWorkers(app, folder)
        try:
            yield workers
        finally:
            _handoff.flush()
            workers.stop_all()
            celery_jobs.disconnect()
    engines.reset()


@pytest.fixture
def private(private_redis: PrivateRedis, tmp_path: Path) -> Iterator[CeleryWorkers]:
    yield from workers_on("private_app", tmp_path)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[CeleryWorkers]:
    try:
        yield from workers_on("redis_app", tmp_path)
    finally:
        purge("redis_app")


def relay_until(condition: object, timeout: float = 30.0) -> None:
    relay = Relay()

    def relayed() -> bool:
        relay.run_once()
        return bool(condition())  # type: ignore[operator]

    wait_for(relayed, timeout)


def ran_once_each() -> tuple[int, int]:
    """(deliveries whose receiver ended more than once, total ends)."""
    ends = Counter(note[2] for note in notes("end"))
    return sum(1 for n in ends.values() if n > 1), sum(ends.values())


def finished_tasks(workers: CeleryWorkers) -> int:
    """signalbox's Celery tasks the workers have finished, as their logs say."""
    return len(FINISHED_TASK.findall(workers.logs()))


FINISHED_TASK = re.compile(r"Task signalbox\.deliver\.celery\[[^\]]+\] succeeded")


def all_completed(n: int) -> bool:
    return Delivery.objects.completed().count() == n


def test_redis_stopped_during_a_stream_of_sends(
    private: CeleryWorkers, private_redis: PrivateRedis
) -> None:
    private.start()
    latencies: dict[str, list[float]] = {"normal": [], "outage": [], "after": []}
    errors = 0
    for phase in latencies:
        if phase == "outage":
            wait_for(lambda: all_completed(20))
            private_redis.stop()
        elif phase == "after":
            private_redis.start()
        for _ in range(20):
            started = time.perf_counter()
            try:
                send(phase)
            except Exception:
                errors += 1
            latencies[phase].append(time.perf_counter() - started)
            time.sleep(0.02)
    _handoff.flush(10)
    relay_until(lambda: all_completed(60), timeout=60)
    twice, ends = ran_once_each()
    report(
        "redis stopped during sends",
        send_ms_median={
            k: round(statistics.median(v) * 1000, 2) for k, v in latencies.items()
        },
        send_ms_max={k: round(max(v) * 1000, 2) for k, v in latencies.items()},
        errors_raised_to_callers=errors,
        delivered=ends,
        ran_twice=twice,
    )
    assert errors == 0
    assert (ends, twice) == (60, 0)
    assert statistics.median(latencies["outage"]) < 5 * max(
        statistics.median(latencies["normal"]), 0.005
    )


@pytest.mark.parametrize("acks_late", [True, False], ids=["acks_late", "acks_early"])
def test_a_worker_killed_mid_task_loses_nothing(
    tmp_path: Path, acks_late: bool
) -> None:
    # The killed worker also took the next two messages (prefetch): the
    # relay hands those over again after REDELIVER_SECONDS (here 3).
    for workers in workers_on("redis_app", tmp_path, 3, acks_late=acks_late):
        env = {"SIGNALBOX_CELERY_ACKS_LATE": "1" if acks_late else "0"}
        first = workers.start(**env)
        send("killed", seconds=60)
        send("queued")
        send("queued")
        wait_for(lambda: len(notes("start")) == 1)
        workers.kill(first)
        workers.start(**env)
        relay_until(lambda: all_completed(3), timeout=40)
        twice, ends = ran_once_each()
        report(
            "worker SIGKILLed mid-task",
            acks_late=acks_late,
            lost=3 - ends,
            ran_twice=twice,
            attempts=sorted(Delivery.objects.values_list("attempt", flat=True)),
        )
        assert (ends, twice) == (3, 0)
        purge("redis_app")


def test_the_relay_killed_between_publishing_and_marking(
    shared: CeleryWorkers,
) -> None:
    for _ in range(10):
        send("relay")
    assert _handoff.flush()
    # What a relay that died after publishing leaves: published, not marked.
    Delivery.objects.update(handed_over_at=None, handovers=0)
    assert Relay().run_once() == 10  # so every row is published twice
    shared.start()
    wait_for(lambda: all_completed(10))
    # The duplicates too: every message published has been taken and done.
    wait_for(lambda: finished_tasks(shared) >= 20)
    twice, ends = ran_once_each()
    received = finished_tasks(shared)
    report("relay killed between publish and mark", messages=received, ran=ends)
    assert (received, ends, twice) == (20, 10, 0)


def test_delays_beyond_the_visibility_timeout_run_once(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    for workers in workers_on("private_app", tmp_path):
        env = {"SIGNALBOX_CELERY_VISIBILITY": "1"}
        workers.start(**env)
        workers.start(**env)
        for _ in range(6):  # each runs 2 s, twice the visibility timeout
            send("later", signal=celery_jobs.paid_later, seconds=2)
        assert _handoff.flush()
        assert not Delivery.objects.filter(handed_over_at__isnull=False).exists()
        relay_until(lambda: all_completed(6), timeout=40)
        twice, ends = ran_once_each()
        report(
            "delay and run time beyond a 1 s visibility timeout",
            delay_s=celery_jobs.LATER.total_seconds(),
            messages=workers.logs().count("received"),
            ran=ends,
            ran_twice=twice,
        )
        assert (ends, twice) == (6, 0)
        assert set(Delivery.objects.values_list("state", flat=True)) == {
            State.COMPLETED
        }
