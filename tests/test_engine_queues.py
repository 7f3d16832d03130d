"""Where a receiver without ``queue=`` goes, and what is said when nobody
runs a queue: each engine's own default queue; ``signalbox status`` and the
relay on rows handed over and never started; the embedded worker on what it
leaves to other engines. tests/test_engine_celery.py does the same through a
real Celery worker on Redis."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings

import signalbox
from signalbox import engines, status
from signalbox.engines import Engine, _handoff
from signalbox.engines.relay import Relay
from signalbox.engines.remote import deliver
from signalbox.models import Delivery
from tests.engine_support import wait_for
from tests.testapp.engines import RecordingEngine

pytestmark = pytest.mark.django_db(transaction=True)

EMBEDDED = {"BACKEND": "signalbox.engines.embedded.EmbeddedEngine"}
RECORDING = {"BACKEND": "tests.testapp.engines.RecordingEngine"}

order_paid = signalbox.Signal()


def handed_job(sender: object, **kwargs: Any) -> None:
    """Runs only when a test calls deliver(): the recording engine runs nothing."""


def local_job(sender: object, **kwargs: Any) -> None:
    """Run by the embedded worker."""


@pytest.fixture(autouse=True)
def configured() -> Iterator[None]:
    RecordingEngine.handed.clear()
    RecordingEngine.down = False
    settings = {
        # Another engine is the default, as with Celery: the embedded worker
        # runs only what names it.
        "ENGINES": {"default": RECORDING, "embedded": EMBEDDED},
        "HANDOVER_GRACE_SECONDS": 0,
        "UNSTARTED_WARNING_SECONDS": 0,
    }
    with override_settings(SIGNALBOX=settings):
        signalbox.connect(order_paid, handed_job, run="background")
        yield
        _handoff.flush()
        order_paid.disconnect(handed_job)
        order_paid.disconnect(local_job)
    engines.reset()


def send() -> None:
    with transaction.atomic():
        order_paid.send(sender=None)
    assert _handoff.flush()  # handed over and marked


# -- each engine's default queue ------------------------------------------------


def _celery(app: str, **options: Any) -> Engine:
    from signalbox.engines.celery import CeleryEngine

    return CeleryEngine("x", {"app": f"tests.testapp.celery_app.{app}", **options})


def _rq() -> Engine:
    from signalbox.engines.rq import RQEngine

    return RQEngine("x", {"url": "redis://127.0.0.1:6379/4", "queue_prefix": "p-"})


def _dramatiq() -> Engine:
    from signalbox.engines.dramatiq import DramatiqEngine

    broker = "redis://127.0.0.1:6379/5"
    return DramatiqEngine("x", {"broker": broker, "queue_prefix": "p-"})


def _django_q() -> Engine:
    from signalbox.engines.django_q import DjangoQEngine

    return DjangoQEngine("x", {})


def _tasks() -> Engine:
    from signalbox.engines.tasks import TasksEngine

    return TasksEngine("x", {"backend": "db"})


@pytest.mark.parametrize(
    ("make", "default", "mail"),
    [
        # Celery's own default, when the app sets none; queue_prefix is put
        # before the queues receivers name only.
        (lambda: _celery("plain_app", queue_prefix="p-"), "celery", "p-mail"),
        (lambda: _celery("redis_app"), "sbtest-celery-default", "mail"),
        (_rq, "default", "p-mail"),  # what `rq worker` consumes
        (_dramatiq, "default", "p-mail"),  # an actor's queue when it names none
        (_django_q, "sbtest-engines", "mail"),  # Q_CLUSTER's name: qcluster's list
        (_tasks, "default", "mail"),  # DEFAULT_TASK_QUEUE_NAME
    ],
    ids=["celery", "celery-task_default_queue", "rq", "dramatiq", "django_q", "tasks"],
)
def test_a_receiver_without_queue_goes_to_the_engines_own_default_queue(
    make: Callable[[], Engine], default: str, mail: str
) -> None:
    engine = make()
    try:
        assert engine.broker_queue("default") == default
        assert engine.broker_queue("mail") == mail
    finally:
        engine.close()


# -- rows handed over and never started -----------------------------------------


def test_status_warns_about_rows_handed_over_and_not_started() -> None:
    send()
    wait_for(lambda: bool(status.unstarted(using="default")))
    [waiting] = status.report(using="default").unstarted
    assert (waiting.engine, waiting.queue, waiting.count) == ("default", "default", 1)
    out = StringIO()
    call_command("signalbox", "status", stdout=out)
    assert "WARNING: handed to an engine more than 0s ago and not started" in (
        out.getvalue()
    )
    assert "engine 'default', queue 'default': 1 delivery" in out.getvalue()


def test_status_is_quiet_about_rows_handed_over_lately() -> None:
    with override_settings(
        SIGNALBOX={"ENGINES": {"default": RECORDING}, "HANDOVER_GRACE_SECONDS": 0}
    ):
        send()
        assert status.report(using="default").unstarted == []
        assert "not started" not in status.report(using="default").as_text()


def test_the_relay_names_a_queue_nobody_consumes_once_per_episode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    send()
    wait_for(lambda: bool(status.unstarted(using="default")))
    relay = Relay()
    with caplog.at_level(logging.INFO, logger="signalbox.engines"):
        relay.run_once()
        relay.run_once()
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "engine 'default', queue 'default': 1 delivery handed over" in (
            caplog.records[0].getMessage()
        )
        caplog.clear()

        deliver(Delivery.objects.get().pk, engine="default")  # a worker came
        relay.run_once()
        assert [r.levelname for r in caplog.records] == ["INFO"]
        assert "start again" in caplog.records[0].getMessage()
        caplog.clear()

        send()  # stalls anew: a new episode
        wait_for(lambda: bool(status.unstarted(using="default")))
        relay.run_once()
        assert [r.levelname for r in caplog.records] == ["WARNING"]


# -- the embedded worker, when another engine is the default ----------------------


def test_the_worker_says_which_receivers_it_leaves_to_another_engine(
    caplog: pytest.LogCaptureFixture,
) -> None:
    signalbox.connect(order_paid, local_job, run="background", engine="embedded")
    Delivery.objects.all().delete()
    with transaction.atomic():
        order_paid.send(sender=None)  # one row for each engine
    assert _handoff.flush()
    out = StringIO()
    with caplog.at_level(logging.INFO, logger="signalbox.worker"):
        call_command("signalbox", "worker", "--burst", stdout=out)
    said = [r.getMessage() for r in caplog.records]
    assert any(
        "runs 1 receiver of engine 'embedded' on queues default" in line
        for line in said
    ), said
    assert any(
        # Other tests' receivers are in the registry too: not only this one.
        re.match(r"\d+ receivers? (is|are) handed to engine 'default', not run", line)
        and "a worker of engine 'default' consuming default" in line
        and "signalbox relay" in line
        for line in said
    ), said
    assert out.getvalue().splitlines() == [
        "Worker stopped: 1 completed.",
        "1 due delivery waits for engine 'default', queue 'default', not run by "
        "this worker: start a worker of engine 'default' consuming default.",
    ]


def test_a_burst_that_runs_nothing_says_what_waits_elsewhere() -> None:
    send()
    out = StringIO()
    call_command("signalbox", "worker", "--burst", stdout=out)
    assert out.getvalue().splitlines() == [
        "Worker stopped: nothing ran.",
        "1 due delivery waits for engine 'default', queue 'default', not run by "
        "this worker: start a worker of engine 'default' consuming default.",
    ]


def test_a_worker_on_other_queues_says_what_waits_on_its_own_engines_queues() -> None:
    signalbox.connect(
        order_paid, local_job, run="background", engine="embedded", queue="mail"
    )
    order_paid.disconnect(handed_job)
    with transaction.atomic():
        order_paid.send(sender=None)
    out = StringIO()
    call_command("signalbox", "worker", "--burst", "--queues", "default", stdout=out)
    assert out.getvalue().splitlines()[1:] == [
        "1 due delivery waits for engine 'embedded', queue 'mail', not run by this "
        "worker: start `manage.py signalbox worker --queues mail`."
    ]
