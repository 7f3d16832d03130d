"""The RQ engine through real Redis (db 4) and real ``rq worker`` processes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from redis import Redis

from signalbox import ConfigurationError, engines
from signalbox._states import State
from signalbox.engines import _handoff
from signalbox.engines.relay import Relay
from signalbox.engines.rq import RQEngine, run
from signalbox.models import Delivery
from tests import engine_support as support
from tests.testapp import remote_jobs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

URL = "redis://127.0.0.1:6379/4"
PREFIX = "sbtest-engines-"
RQ = {
    "BACKEND": "signalbox.engines.rq.RQEngine",
    "OPTIONS": {"url": URL, "queue_prefix": PREFIX},
}


@pytest.fixture(autouse=True)
def configured() -> Iterator[None]:
    Redis.from_url(URL).flushdb()
    with support.remote_engine(RQ):
        yield


def work_off(*queues: str, **extra: Any) -> str:
    """Run a real ``rq worker`` until its queues are empty: RQ's own default
    queue unless ``queues`` names others, as ``rq worker`` does (``extra``:
    settings)."""
    return support.run_to_exit(
        support.python(
            "-m",
            "rq.cli",
            "worker",
            "--burst",
            "--url",
            URL,
            "--serializer",
            "rq.serializers.JSONSerializer",
            "--worker-class",
            "rq.worker.SimpleWorker",
            "--config",
            "tests.rq_worker_config",
            *queues,
        ),
        support.environment(RQ, **extra),
    )


def engine() -> RQEngine:
    found = engines.get("remote")
    assert isinstance(found, RQEngine)
    return found


@pytest.mark.parametrize(
    ("options", "message"),
    [({}, "url required"), ({"url": URL, "pool": 1}, "takes OPTIONS")],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RQEngine("x", options)


def test_a_background_receiver_runs_in_an_rq_worker_with_its_model() -> None:
    order = support.send_order("A-7")
    assert _handoff.flush()
    assert len(engine().queue("default")) == 1
    work_off()
    [[number, attempt, _pid]] = support.notes()
    assert (number, attempt) == (order.number, "1")
    assert Delivery.objects.get().state == State.COMPLETED


def test_a_rollback_hands_nothing_to_redis() -> None:
    support.send_and_roll_back()
    assert len(engine().queue("default")) == 0
    assert Delivery.objects.count() == 0


def test_failures_are_retried_by_the_relay_then_dead() -> None:
    remote_jobs.refused.send(sender=None)
    assert _handoff.flush()
    work_off()
    row = Delivery.objects.get()
    assert (row.state, row.attempt) == (State.RETRYABLE, 1)
    assert len(engine().queue("default")) == 0  # RQ schedules no retry
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
    engine().queue("default").enqueue_call(run, args=forged)
    output = work_off()
    assert support.notes() == []
    assert support.state_of(forged.pk, forged.using) == before
    if which.startswith("other_"):  # said, without the message's values
        assert "nothing ran" in output
        assert "F-1" not in output


def test_a_worker_that_lacks_the_receiver_leaves_its_rows_to_one_that_knows_it() -> (
    None
):
    for number in range(3):
        support.send_order(f"U-{number}")
    assert _handoff.flush()
    output = work_off(TEST_REMOTE_RECEIVERS=False)
    key = Delivery.objects.values_list("receiver", flat=True).first()
    assert output.count("which this process does not know") == 1, output
    assert f"is for receiver {key}, " in output
    assert support.notes() == []
    assert list(Delivery.objects.values_list("state", "attempt").distinct()) == [
        (State.AVAILABLE, 0)
    ]
    # Their messages seem lost by now: the relay hands them over again.
    Delivery.objects.update(handed_over_at=timezone.now() - timedelta(days=1))
    assert Relay().run_once() == 3
    work_off()
    assert sorted(n[0] for n in support.notes()) == ["U-0", "U-1", "U-2"]
    assert Delivery.objects.completed().count() == 3
