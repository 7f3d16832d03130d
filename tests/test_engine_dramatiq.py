"""The Dramatiq engine through real Redis (db 5) and RabbitMQ, and real
``dramatiq`` worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from django.core import checks
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.encoder import JSONEncoder, PickleEncoder

from signalbox import ConfigurationError, engines
from signalbox._states import State
from signalbox.engines import _handoff
from signalbox.engines.dramatiq import ACTOR, DramatiqEngine
from signalbox.models import Delivery
from tests import engine_support as support

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = "default"  # Dramatiq's own, where a receiver without queue= goes
ONE_THREAD = ["--processes", "1", "--threads", "1", "--queues", QUEUE]
BROKERS = [
    pytest.param("redis://127.0.0.1:6379/5", marks=pytest.mark.redis, id="redis"),
    pytest.param(
        "amqp://guest:guest@127.0.0.1:5672/", marks=pytest.mark.rabbitmq, id="rabbitmq"
    ),
]


def config(url: str) -> dict[str, Any]:
    return {
        "BACKEND": "signalbox.engines.dramatiq.DramatiqEngine",
        "OPTIONS": {"broker": url, "queue_prefix": "sbtest-engines-"},
    }


@pytest.fixture(scope="module", params=BROKERS)
def broker_url(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def dramatiq_worker(broker_url: str, django_db_setup: None) -> Iterator[None]:
    """One worker per broker for the module: it takes seconds to start."""
    process = support.started(
        support.python("-m", "dramatiq", "tests.dramatiq_worker:broker", *ONE_THREAD),
        support.environment(config(broker_url)),
    )
    yield
    print(support.stopped(process))


@pytest.fixture
def url(broker_url: str) -> Iterator[str]:
    with support.remote_engine(config(broker_url)):
        engine().broker.flush_all()
        yield broker_url


@pytest.fixture
def worker(dramatiq_worker: None, url: str) -> None:
    pass


def engine() -> DramatiqEngine:
    found = engines.get("remote")
    assert isinstance(found, DramatiqEngine)
    return found


def pending() -> int:
    broker = engine().broker
    if isinstance(broker, RabbitmqBroker):
        return int(broker.get_queue_message_counts(QUEUE)[0])
    assert isinstance(broker, RedisBroker)
    return int(broker.client.hlen(f"dramatiq:{QUEUE}.msgs"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "broker required"),
        ({"broker": "redis://x", "pool": 1}, "broker required"),
        ({"broker": "collections.OrderedDict"}, "dotted path of a dramatiq.Broker"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        DramatiqEngine("x", options)


def test_the_check_refuses_an_encoder_that_pickles() -> None:
    engine = DramatiqEngine("x", {"broker": "redis://127.0.0.1:6379/5"})
    assert engine.check() == []
    dramatiq.set_encoder(PickleEncoder())
    try:
        [error] = engine.check()
    finally:
        dramatiq.set_encoder(JSONEncoder())
    assert (error.id, error.level) == ("signalbox.E011", checks.ERROR)
    assert "PickleEncoder" in error.msg


def test_a_background_receiver_runs_in_a_dramatiq_worker_with_its_model(
    worker: None,
) -> None:
    order = support.send_order("A-7")
    assert _handoff.flush()
    support.wait_for_state(Delivery.objects.get().pk, State.COMPLETED)
    [[number, attempt, _pid]] = support.notes()
    assert (number, attempt) == (order.number, "1")


def test_a_rollback_hands_nothing_to_the_broker(url: str) -> None:
    support.send_and_roll_back()
    assert pending() == 0
    assert Delivery.objects.count() == 0
    # (That a commit is handed over, the test above shows. Committing here
    # would leave a message for the module's worker to run in the next test.)


def test_failures_are_retried_by_the_relay_then_dead(worker: None) -> None:
    support.retried_by_the_relay_then_dead()


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
@pytest.mark.parametrize("which", support.FORGED)
def test_a_forged_message_runs_nothing(worker: None, which: str) -> None:
    forged = support.forge(which)
    before = support.state_of(forged.pk, forged.using)
    message = dramatiq.Message(
        queue_name=QUEUE, actor_name=ACTOR, args=forged, kwargs={}, options={}
    )
    engine().broker.enqueue(message)
    support.sentinel_ran()  # after the genuine and the forged message
    assert [n[0] for n in support.notes()] == ["S-1"]
    assert support.state_of(forged.pk, forged.using) == before
