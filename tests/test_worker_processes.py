"""Acceptance: real ``manage.py signalbox worker`` processes, killed and stopped.

Each test commits rows, starts worker processes on the test database and
looks at the rows and the ``Note`` ledger afterwards. Leases are 2 s in
these workers (tests/worker_settings.py), so crashes heal within a test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection, transaction

from signalbox import outbox
from signalbox._states import State
from signalbox.models import Delivery, WorkerRecord
from tests.testapp.jobs import work
from tests.testapp.models import Note

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.django_db(transaction=True)


class Workers:
    """Starts worker processes against the test database and cleans up after."""

    def __init__(self, trap: Path) -> None:
        self.processes: list[subprocess.Popen[str]] = []
        self.trap = trap

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        environment = {
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}",
            "DJANGO_SETTINGS_MODULE": "tests.worker_settings",
            "SIGNALBOX_WORKER_DB": str(connection.settings_dict["NAME"]),
            "SIGNALBOX_TRAP_FILE": str(self.trap),
            **env,
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "django",
                "signalbox",
                "worker",
                "--concurrency",
                "2",
                *args,
            ],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path / "trap-imported")
    yield started
    started.stop_all()


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def notes(kind: str) -> list[list[str]]:
    return [
        n.text.split() for n in Note.objects.order_by("id") if n.text.split()[1] == kind
    ]


def test_sigkill_mid_delivery_is_delivered_again_by_another_worker(
    workers: Workers,
) -> None:
    work.send(sender=None, seconds=60, tag="k")
    first = workers.start()
    wait_for(lambda: len(notes("start")) == 1)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    wait_for(lambda: Delivery.objects.expired().exists())
    second = workers.start("--burst")
    assert second.wait(timeout=30) == 0, second.communicate()[0]
    starts, ends = notes("start"), notes("end")
    assert [s[3] for s in starts] == ["1", "2"]  # attempt 1 killed, attempt 2 ran
    assert starts[0][4] != starts[1][4]  # by two different processes
    assert len(ends) == 1
    row = Delivery.objects.get()
    assert (row.state, row.attempt) == (State.COMPLETED, 2)


def test_sigterm_lets_running_deliveries_finish(workers: Workers) -> None:
    work.send(sender=None, seconds=1, tag="t")
    process = workers.start()
    wait_for(lambda: len(notes("start")) == 1)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=20)[0]
    assert process.returncode == 0, output
    assert len(notes("end")) == 1
    assert Delivery.objects.get().state == State.COMPLETED


def test_sigterm_gives_back_what_outlives_the_grace_period(workers: Workers) -> None:
    work.send(sender=None, seconds=60, tag="g")
    process = workers.start(SIGNALBOX_WORKER_GRACE="0.5")
    wait_for(lambda: len(notes("start")) == 1)
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    output = process.communicate(timeout=20)[0]
    # Out soon after the grace period: the thread still running the receiver
    # is not waited for (it was, up to 5 s, which a 30 s SIGKILL budget minus
    # a 25 s grace cannot spare).
    assert time.monotonic() - signalled < 0.5 + 3.5, output
    assert process.returncode == 0, output
    row = Delivery.objects.get()
    # Released, not lost, and no attempt spent.
    assert (row.state, row.attempt, row.lease_token) == (State.AVAILABLE, 0, None)


def test_a_receiver_given_back_at_shutdown_is_told_it_was_interrupted(
    workers: Workers,
) -> None:
    # It restarted with the same attempt and nothing else to go by.
    work.send(sender=None, seconds=60, tag="i")
    first = workers.start(SIGNALBOX_WORKER_GRACE="0.5")
    wait_for(lambda: len(notes("start")) == 1)
    first.send_signal(signal.SIGTERM)
    output = first.communicate(timeout=20)[0]
    assert first.returncode == 0, output
    row = Delivery.objects.get()
    assert (row.state, row.attempt, row.interrupted) == (State.AVAILABLE, 0, 1)
    second = workers.start("--burst")
    assert second.wait(timeout=30) == 0, second.communicate()[0]
    # (attempt, interrupted) as each run saw them: the same attempt, told.
    assert [(s[3], s[5]) for s in notes("start")] == [("1", "0"), ("1", "1")]
    assert len(notes("end")) == 1
    assert Delivery.objects.get().state == State.COMPLETED


@pytest.mark.postgres
def test_a_killed_workers_deliveries_start_again_on_another_within_seconds(
    workers: Workers,
) -> None:
    # They waited for the lease (30 s by default) to expire.
    lease = {"SIGNALBOX_WORKER_LEASE": "30", "SIGNALBOX_WORKER_POLL": "1"}
    work.send(sender=None, seconds=60, tag="r")
    victim = workers.start(**lease)
    wait_for(lambda: len(notes("start")) == 1)
    workers.start(**lease)
    wait_for(
        lambda: WorkerRecord.objects.filter(liveness_key__isnull=False).count() == 2
    )
    victim.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    victim.wait(timeout=10)
    wait_for(lambda: len(notes("start")) == 2, timeout=30)
    assert time.monotonic() - killed < 5
    starts = notes("start")
    assert starts[1][4] != starts[0][4]  # on the other worker
    assert (starts[1][3], starts[1][5]) == ("2", "1")  # attempt 2, told of the first
    wait_for(lambda: len(notes("end")) == 1)


def test_unknown_receiver_keys_are_never_imported_and_go_dead(workers: Workers) -> None:
    outbox.enqueue(
        [
            outbox.NewDelivery(
                signal="x", receiver="tests.testapp.trap.boom", payload={}
            ),
            outbox.NewDelivery(signal="x", receiver="os.system", payload={}),
        ],
        using="default",
    )
    process = workers.start("--burst")
    assert process.wait(timeout=30) == 0
    rows = list(Delivery.objects.values_list("state", "reason"))
    assert rows == [(State.DEAD, "unknown_receiver")] * 2
    assert not workers.trap.exists()


def test_a_poison_payload_goes_dead_with_its_reason(workers: Workers) -> None:
    outbox.enqueue(
        [
            outbox.NewDelivery(
                signal="tests.testapp.jobs.work",
                receiver="tests.testapp.jobs.sleepy_job",
                payload={"sender": None, "kwargs": {"__signalbox__": "pickle"}},
            )
        ],
        using="default",
    )
    process = workers.start("--burst")
    assert process.wait(timeout=30) == 0
    row = Delivery.objects.get()
    assert (row.state, row.reason) == (State.DEAD, "decode_error")
    assert row.error


LISTENING_AND_IDLE = """
    SELECT count(*) FROM pg_stat_activity listener
    JOIN pg_stat_activity claimer ON claimer.datname = listener.datname
    WHERE listener.datname = current_database()
      AND listener.query LIKE 'LISTEN %'
      AND claimer.query LIKE '%FOR UPDATE SKIP LOCKED%'
      AND claimer.state = 'idle'
      AND claimer.query_start > listener.query_start
"""
"""A worker's LISTEN connection, and a claim by it that began after the LISTEN
and has ended: the worker now waits for its poll or a notification."""


def listening_and_idle() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(LISTENING_AND_IDLE)
        return bool(cursor.fetchone()[0])


@pytest.mark.postgres
def test_notify_wakes_an_idle_worker_long_before_its_poll(workers: Workers) -> None:
    process = workers.start(SIGNALBOX_WORKER_POLL="60")
    # From here only a NOTIFY wakes it: it listens, and has claimed since.
    wait_for(listening_and_idle)
    sent = time.monotonic()
    work.send(sender=None, seconds=0, tag="n")
    wait_for(lambda: len(notes("end")) == 1, timeout=10)
    assert time.monotonic() - sent < 5
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_two_workers_run_each_of_a_thousand_deliveries_once(workers: Workers) -> None:
    with transaction.atomic():
        for _ in range(1000):
            work.send(sender=None, seconds=0, tag="c")
    first, second = workers.start("--burst"), workers.start("--burst")
    assert first.wait(timeout=120) == 0, first.communicate()[0]
    assert second.wait(timeout=120) == 0, second.communicate()[0]
    ends = [int(note[2]) for note in notes("end")]
    assert len(ends) == len(set(ends)) == 1000  # each delivery ran once
    assert Delivery.objects.completed().count() == 1000
    assert {note[4] for note in notes("end")} == {str(first.pid), str(second.pid)}


@pytest.mark.postgres
@pytest.mark.mysql
def test_three_workers_contending_for_each_claim_run_each_delivery_once(
    workers: Workers,
) -> None:
    # Where claims skip each other's locked rows (FOR UPDATE SKIP LOCKED),
    # three workers taking two rows at a time claim side by side all along;
    # a row handed to two of them would show as a second "end" note. (SQLite
    # serialises claims: the two-worker test above is its case.)
    with transaction.atomic():
        for _ in range(2000):
            work.send(sender=None, seconds=0, tag="c")
    started = [workers.start("--burst") for _ in range(3)]
    for process in started:
        assert process.wait(timeout=180) == 0, process.communicate()[0]
    ends = [int(note[2]) for note in notes("end")]
    assert len(ends) == len(set(ends)) == 2000
    assert Delivery.objects.completed().count() == 2000
    assert Delivery.objects.filter(attempt=1).count() == 2000  # no row claimed twice
    assert {note[4] for note in notes("end")} == {str(p.pid) for p in started}


@pytest.mark.postgres
def test_a_worker_survives_its_connections_being_killed(workers: Workers) -> None:
    process = workers.start()
    work.send(sender=None, seconds=0, tag="before")
    wait_for(lambda: len(notes("end")) == 1)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    work.send(sender=None, seconds=0, tag="after")
    wait_for(lambda: len(notes("end")) == 2)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=20)[0]
    assert process.returncode == 0, output
    assert Delivery.objects.completed().count() == 2


@pytest.mark.mysql
def test_a_worker_survives_its_connections_being_killed_on_mariadb(
    workers: Workers,
) -> None:
    process = workers.start()
    work.send(sender=None, seconds=0, tag="before")
    wait_for(lambda: len(notes("end")) == 1)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM information_schema.PROCESSLIST "
            "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
        )
        others = [row[0] for row in cursor.fetchall()]
        assert others  # the worker's
        for each in others:
            cursor.execute("KILL CONNECTION %s", [each])
    work.send(sender=None, seconds=0, tag="after")
    wait_for(lambda: len(notes("end")) == 2)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=20)[0]
    assert process.returncode == 0, output
    assert Delivery.objects.completed().count() == 2
