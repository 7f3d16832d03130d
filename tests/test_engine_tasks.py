"""The Tasks engine through django-tasks-db's database backend and its real
``db_worker`` processes (``django.tasks`` on 6.x, the backport on 5.2)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core import checks
from django_tasks_db.models import DBTaskResult

from signalbox import ConfigurationError
from signalbox._states import State
from signalbox.engines import _handoff
from signalbox.engines.relay import Relay
from signalbox.engines.tasks import TasksEngine, run
from signalbox.models import Delivery
from tests import engine_support as support
from tests.testapp import remote_jobs

pytestmark = pytest.mark.django_db(transaction=True)

BATCH = ["--batch", "--no-startup-delay", "--interval", "0.05"]
TASKS = {"BACKEND": "signalbox.engines.tasks.TasksEngine", "OPTIONS": {"backend": "db"}}


@pytest.fixture(autouse=True)
def configured() -> Iterator[None]:
    with support.remote_engine(TASKS):
        yield


def work_off() -> str:
    """Run a real ``db_worker`` until the backend's queue is empty."""
    return support.run_to_exit(
        support.python("-m", "django", "db_worker", "--backend", "db", *BATCH),
        support.environment(TASKS),
    )


def ready() -> int:
    return DBTaskResult.objects.ready().count()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "nowhere"}, "which settings.TASKS does not configure"),
        ({"backend": "db", "queue": "x"}, "takes OPTIONS"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        TasksEngine("x", options)


def test_the_check_says_what_an_immediate_backend_means() -> None:
    messages = TasksEngine("x", {"backend": "default"}).check()
    assert [m.id for m in messages] == ["signalbox.I011"]
    assert messages[0].level == checks.INFO


def test_a_background_receiver_runs_in_a_db_worker_with_its_model() -> None:
    order = support.send_order("A-7")
    assert _handoff.flush()
    [result] = DBTaskResult.objects.all()
    assert result.task_path == "signalbox.engines.tasks.run"
    work_off()
    [[number, attempt, _pid]] = support.notes()
    assert (number, attempt) == (order.number, "1")
    assert Delivery.objects.get().state == State.COMPLETED


def test_a_rollback_hands_nothing_to_the_backend() -> None:
    support.send_and_roll_back()
    assert ready() == 0
    assert Delivery.objects.count() == 0


def test_failures_are_retried_by_the_relay_then_dead() -> None:
    remote_jobs.refused.send(sender=None)
    assert _handoff.flush()
    work_off()
    row = Delivery.objects.get()
    assert (row.state, row.attempt) == (State.RETRYABLE, 1)
    assert ready() == 0  # the backend schedules no retry
    assert Relay().run_once() == 1
    work_off()
    row = Delivery.objects.get()
    assert (row.state, row.reason) == (State.DEAD, "max_attempts")
    assert [n[:2] for n in support.notes()] == [["fail", "1"], ["fail", "2"]]


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
@pytest.mark.parametrize("which", support.FORGED)
def test_a_forged_message_runs_nothing(which: str) -> None:
    forged = support.forge(which)
    before = support.state_of(forged.pk, forged.using)
    run.using(backend="db").enqueue(*forged)
    output = work_off()
    assert support.notes() == []
    assert support.state_of(forged.pk, forged.using) == before
    if which.startswith("other_"):  # said, without the message's values
        assert "nothing ran" in output
