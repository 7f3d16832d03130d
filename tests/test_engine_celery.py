"""The Celery engine through real brokers (Redis, RabbitMQ) and real workers.

Each test commits rows in this process, whose hand-over thread publishes them
through the engine, and a ``celery worker`` process (``--pool=solo``, the
settings of tests/celery_settings.py, the test database) runs them. The
``Note`` ledger shows what ran, and how often.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.test import override_settings
from django.utils import timezone

from signalbox import ConfigurationError, Signal, engines, status
from signalbox._states import State
from signalbox.engines import _handoff
from signalbox.engines.relay import Relay
from signalbox.models import Delivery
from tests import engine_support as support
from tests.testapp import celery_jobs
from tests.testapp.celery_app import QUEUE, TASK_RETURNED
from tests.testapp.models import Note, Order

ROOT = Path(__file__).resolve().parents[1]
APPS = "tests.testapp.celery_app"
BROKERS = {
    "redis": pytest.param("redis_app", marks=pytest.mark.redis),
    "rabbitmq": pytest.param("amqp_app", marks=pytest.mark.rabbitmq),
}

pytestmark = pytest.mark.django_db(transaction=True)


def engine_settings(
    app: str, redeliver: float = 3600, **options: Any
) -> dict[str, Any]:
    return {
        "ENGINES": {
            "default": {"BACKEND": "signalbox.engines.embedded.EmbeddedEngine"},
            "celery": {
                "BACKEND": "signalbox.engines.celery.CeleryEngine",
                "OPTIONS": {"app": f"{APPS}.{app}", "queue_prefix": "sbtest-celery-"}
                | options,
            },
        },
        "HANDOVER_GRACE_SECONDS": 0,
        "LEASE_SECONDS": 2,
        "REDELIVER_SECONDS": redeliver,
    }


class CeleryWorkers:
    """Starts ``celery worker`` processes on the test database; kills them after."""

    def __init__(self, app: str, folder: Path) -> None:
        self.app, self.folder = app, folder
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, queues: str | None = QUEUE, **env: str) -> subprocess.Popen[bytes]:
        """A worker on ``queues`` (``-Q``), or, for None, started the plain way:
        on the app's default queue."""
        log = self.folder / f"worker-{len(self.processes)}.log"
        environment = {
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}",
            "DJANGO_SETTINGS_MODULE": "tests.celery_settings",
            "SIGNALBOX_WORKER_DB": str(connection.settings_dict["NAME"]),
            "SIGNALBOX_WORKER_OTHER_DB": str(
                connections["other"].settings_dict["NAME"]
            ),
            "SIGNALBOX_CELERY_APP": f"{APPS}.{self.app}",
            **env,
        }
        command = [sys.executable, "-m", "celery", "-A", f"{APPS}:{self.app}"]
        command += ["worker", "--pool=solo", "--loglevel=INFO"]
        command += [] if queues is None else ["-Q", queues]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        with log.open("wb") as output:
            process = subprocess.Popen(
                command, cwd=ROOT, env=environment, stdout=output, stderr=output
            )
        self.processes.append(process)
        # A start-up budget, not a figure under test: on two cores shared with
        # the other lane a prefork worker once took longer than 30 s.
        try:
            wait_for(
                lambda: "Connected to" in log.read_text(errors="replace"), timeout=60
            )
        except AssertionError:
            raise AssertionError(
                f"the Celery worker did not connect within 60 s; its log:\n"
                f"{log.read_text(errors='replace')}"
            ) from None
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.folder.glob("*.log")))


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


def send(tag: str, signal: Signal = celery_jobs.paid, **kwargs: Any) -> Order:
    with transaction.atomic():
        order = Order.objects.create(number=f"{tag}-{uuid.uuid4().hex[:6]}")
        signal.send(sender=Order, order=order, tag=tag, **kwargs)
    return order


def purge(app: str, queue: str = QUEUE) -> None:
    from tests.testapp import celery_app

    with getattr(celery_app, app).connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)


@pytest.fixture(params=list(BROKERS.values()), ids=list(BROKERS))
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CeleryWorkers]:
    app = str(request.param)
    with override_settings(SIGNALBOX=engine_settings(app)):
        celery_jobs.connect()
        workers = CeleryWorkers(app, tmp_path)
        try:
            yield workers
        finally:
            _handoff.flush()
            workers.stop_all()
            celery_jobs.disconnect()
            purge(app)
    engines.reset()


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[CeleryWorkers]:
    """The Celery engine as a first-day project has it: an app with Celery's
    own default queue (``celery``), no ``queue_prefix``, receivers without
    ``queue=``, and an ``UNSTARTED_WARNING_SECONDS`` of 0."""
    settings = engine_settings("plain_app")
    del settings["ENGINES"]["celery"]["OPTIONS"]["queue_prefix"]
    settings["UNSTARTED_WARNING_SECONDS"] = 0
    purge("plain_app", "celery")
    with override_settings(SIGNALBOX=settings):
        celery_jobs.connect()
        workers = CeleryWorkers("plain_app", tmp_path)
        try:
            yield workers
        finally:
            _handoff.flush()
            workers.stop_all()
            celery_jobs.disconnect()
            purge("plain_app", "celery")
    engines.reset()


# -- configuration, no broker needed --------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "takes OPTIONS"),
        ({"app": "tests.testapp.celery_app.redis_app", "queues": {}}, "takes OPTIONS"),
        ({"app": "tests.testapp.celery_app.redis_app", "acks_late": 1}, "OPTIONS"),
        ({"app": "tests.testapp.nowhere.app"}, "cannot be imported"),
        ({"app": "tests.testapp.celery_app.QUEUE"}, "not a Celery app"),
    ],
)
def test_a_misconfigured_celery_engine_is_a_clear_error(
    options: dict[str, Any], message: str
) -> None:
    backend = {"BACKEND": "signalbox.engines.celery.CeleryEngine", "OPTIONS": options}
    with (
        override_settings(SIGNALBOX={"ENGINES": {"default": backend}}),
        pytest.raises(ConfigurationError, match=message),
    ):
        engines.load_all()
    engines.reset()


@pytest.mark.parametrize(
    "conf",
    [{"accept_content": ["json", "pickle"]}, {"task_serializer": "pickle"}],
)
def test_an_app_that_accepts_pickle_is_refused(conf: dict[str, Any]) -> None:
    from tests.testapp import celery_app

    app = celery_app._app("sbtest-pickle", "redis://127.0.0.1:6379/3")
    app.conf.update(conf)
    celery_app.pickle_app = app  # type: ignore[attr-defined]
    try:
        with (
            override_settings(SIGNALBOX=engine_settings("pickle_app")),
            pytest.raises(ConfigurationError, match="runs only with JSON"),
        ):
            engines.load_all()
    finally:
        del celery_app.pickle_app  # type: ignore[attr-defined]
        engines.reset()


def test_the_system_check_warns_about_an_eager_app() -> None:
    from signalbox.checks import check_engines
    from tests.testapp import celery_app

    with override_settings(SIGNALBOX=engine_settings("redis_app")):
        assert check_engines() == []
        celery_app.redis_app.conf.task_always_eager = True
        try:
            [warning] = check_engines()
        finally:
            celery_app.redis_app.conf.task_always_eager = False
    engines.reset()
    assert warning.id == "signalbox.W101"
    assert "task_always_eager" in warning.msg


def test_a_down_broker_fails_the_publish_fast_and_the_row_waits() -> None:
    with override_settings(SIGNALBOX=engine_settings("private_app")):
        celery_jobs.connect()
        try:
            started = time.monotonic()
            send("down")
            assert _handoff.flush()
            assert time.monotonic() - started < 3
            row = Delivery.objects.get()
            assert (row.state, row.handed_over_at) == (State.AVAILABLE, None)
        finally:
            celery_jobs.disconnect()
    engines.reset()


# -- through the real broker and worker -------------------------------------------


def test_a_committed_send_runs_in_the_worker_with_its_model_instance(
    broker: CeleryWorkers,
) -> None:
    broker.start()
    orders = [send("ok") for _ in range(3)]
    wait_for(lambda: len(notes("end")) == 3)
    ran = sorted(note[5] for note in notes("end"))
    assert ran == sorted(order.number for order in orders)
    # A completion in a stream rides on the next claim, or is written by the
    # lease keeper ACK_DELAY (20 ms) later: not necessarily before the end note.
    wait_for(lambda: Delivery.objects.completed().count() == 3, timeout=5)
    assert all(note[3] == "1" for note in notes("start"))  # one attempt each


def test_a_rollback_hands_nothing_to_the_broker(broker: CeleryWorkers) -> None:
    broker.start()
    try:
        with transaction.atomic():
            order = Order.objects.create(number="rolled-back")
            celery_jobs.paid.send(sender=Order, order=order, tag="rb")
            raise ZeroDivisionError
    except ZeroDivisionError:
        pass
    assert _handoff.flush()
    send("after")  # the queue is FIFO on one solo worker: this one runs last
    wait_for(lambda: len(notes("end")) == 1)
    assert [note[0] for note in notes("start")] == ["after"]
    assert Delivery.objects.count() == 1


def test_a_failing_receiver_is_retried_by_the_relay_then_dead(
    broker: CeleryWorkers,
) -> None:
    broker.start()
    send("fails", fail=True)
    wait_for(lambda: Delivery.objects.filter(state=State.RETRYABLE).exists())
    assert Relay().run_once() == 1  # the outbox, not the broker, schedules it
    wait_for(lambda: Delivery.objects.filter(state=State.DEAD).exists())
    row = Delivery.objects.get()
    assert (row.attempt, row.reason) == (2, "max_attempts")
    assert "the mail server is down" in row.error
    assert len(notes("start")) == 2


def forge(which: str) -> tuple[int, str]:
    """Commit a row for :data:`support.FORGED`'s ``which`` and return its id
    and database; its genuine message is purged before the forged one."""
    if which == "other_database":
        with transaction.atomic(using="other"):
            order = Order.objects.using("other").create(number="F-other")
            celery_jobs.paid.send(sender=Order, order=order, tag="F", using="other")
        assert _handoff.flush()
        return Delivery.objects.using("other").get().pk, "other"
    send("forged")
    assert _handoff.flush()
    rows = Delivery.objects.all()
    if which in ("completed", "dead"):
        rows.update(state=which)
    elif which == "leased":
        rows.update(state=State.EXECUTING, lease_token=uuid.uuid4())
    elif which == "other_engine":  # a Celery message cannot name the engine
        rows.update(engine=support.OTHER_ENGINE)
    pk = rows.get().pk
    return (pk + 1000 if which == "missing" else pk), "default"


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
@pytest.mark.parametrize("which", support.FORGED)
def test_a_forged_message_runs_nothing(broker: CeleryWorkers, which: str) -> None:
    from tests.testapp import celery_app

    app = getattr(celery_app, broker.app)
    pk, using = forge(which)
    purge(broker.app)  # only the forged message reaches the worker
    before = list(Delivery.objects.using(using).values())
    args = [pk] if using == "default" else [pk, using]
    app.send_task("signalbox.deliver.celery", args=args, queue=QUEUE)
    broker.start()
    send("real")  # FIFO on one solo worker: once this ran, the forged one was seen
    wait_for(lambda: len(notes("end")) == 1)
    assert [note[0] for note in notes("start")] == ["real"]
    assert (
        list(
            Delivery.objects.using(using)
            .filter(pk__in=[r["id"] for r in before])
            .values()
        )
        == before
    )
    if which.startswith("other_"):  # said, without the message's values
        assert "nothing ran" in broker.logs()
        assert "F-other" not in broker.logs()


# -- the default queue: where a worker started the plain way looks ----------------


@pytest.mark.redis
def test_a_worker_started_the_plain_way_runs_a_receiver_without_queue(
    plain: CeleryWorkers,
) -> None:
    plain.start(queues=None)  # `celery -A proj worker`: the app's default queue
    order = send("plain")
    wait_for(lambda: len(notes("end")) == 1)
    assert notes("end")[0][5] == order.number
    wait_for(lambda: Delivery.objects.completed().count() == 1, timeout=5)


@pytest.mark.redis
def test_a_queue_no_worker_consumes_is_named_by_status_and_the_relay(
    plain: CeleryWorkers, caplog: pytest.LogCaptureFixture
) -> None:
    plain.start(queues="sbtest-celery-other")  # a worker, on another queue
    send("unconsumed")
    assert _handoff.flush()
    wait_for(lambda: bool(status.unstarted(using="default")))
    out = StringIO()
    call_command("signalbox", "status", stdout=out)
    assert "not started" in out.getvalue()
    assert (
        "engine 'celery', queue 'default' ('celery' to the engine): 1 delivery"
        in out.getvalue()
    )
    assert "celery -A tests.testapp.celery_app:plain_app worker" in out.getvalue()

    relay = Relay()
    with caplog.at_level(logging.INFO, logger="signalbox.engines"):
        relay.run_once()
        relay.run_once()  # the same episode: not named again
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "queue 'default' ('celery' to the engine)" in warnings[0]
    assert Delivery.objects.get().state == State.AVAILABLE
    assert notes("start") == []

    caplog.clear()
    plain.start(queues=None)  # someone consumes it now: the episode ends
    wait_for(lambda: Delivery.objects.completed().count() == 1)
    with caplog.at_level(logging.INFO, logger="signalbox.engines"):
        relay.run_once()
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "start again" in caplog.records[0].getMessage()


def test_a_worker_that_lacks_the_receiver_leaves_its_rows_to_one_that_knows_it(
    broker: CeleryWorkers,
) -> None:
    ignorant = broker.start(SIGNALBOX_CELERY_RECEIVERS="0")
    for _ in range(3):
        send("unknown")
    wait_for(lambda: broker.logs().count(TASK_RETURNED) == 3)
    key = Delivery.objects.values_list("receiver", flat=True).first()
    # (Celery logs the worker's stderr again: each line appears twice.)
    warned = re.findall(r"Delivery (\d+) is for receiver", broker.logs())
    assert len(set(warned)) == 1, broker.logs()
    assert f"is for receiver {key}, " in broker.logs()
    rows = Delivery.objects.values_list("state", "attempt").distinct()
    assert list(rows) == [(State.AVAILABLE, 0)]
    assert notes("start") == []
    ignorant.send_signal(signal.SIGTERM)  # a warm stop: every message acked
    ignorant.wait(timeout=20)
    broker.start()
    # Their messages seem lost by now: the relay hands them over again.
    Delivery.objects.update(handed_over_at=timezone.now() - timedelta(days=1))
    assert Relay().run_once() == 3
    wait_for(lambda: len(notes("end")) == 3)
    wait_for(lambda: Delivery.objects.completed().count() == 3, timeout=5)
