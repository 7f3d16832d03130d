"""The Django-Q2 engine through its ORM broker and Redis (db 6), and real
``qcluster`` processes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core import checks
from django_q.conf import Conf
from django_q.tasks import async_task

from signalbox import ConfigurationError, engines
from signalbox._states import State
from signalbox.engines import _handoff
from signalbox.engines.django_q import TASK, DjangoQEngine
from signalbox.models import Delivery
from tests import engine_support as support

pytestmark = pytest.mark.django_db(transaction=True)

DJANGO_Q = {"BACKEND": "signalbox.engines.django_q.DjangoQEngine"}
REDIS = "redis://127.0.0.1:6379/6"
CLUSTER = {
    "name": "sbtest-engines",
    "workers": 1,
    "poll": 0.05,
    "timeout": 30,
    "retry": 60,
}
BROKERS = [
    pytest.param({"orm": "default"}, id="orm"),
    pytest.param({"redis": REDIS}, marks=pytest.mark.redis, id="redis"),
]


@pytest.fixture(scope="module", params=BROKERS)
def broker_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {**CLUSTER, **request.param}


@pytest.fixture(scope="module")
def qcluster(broker_config: dict[str, Any], django_db_setup: None) -> Iterator[None]:
    """One qcluster per broker for the module: it takes seconds to start."""
    process = support.started(
        support.python("-m", "django", "qcluster"),
        support.environment(DJANGO_Q, Q_CLUSTER=broker_config),
    )
    yield
    print(support.stopped(process))


@pytest.fixture
def cluster(
    broker_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    # Django-Q reads Q_CLUSTER once, at import: point this process's copy at
    # the broker under test (the worker gets it through its settings).
    monkeypatch.setattr(Conf, "ORM", broker_config.get("orm"))
    monkeypatch.setattr(Conf, "REDIS", broker_config.get("redis", {}))
    with support.remote_engine(DJANGO_Q):
        engine().broker("default").purge_queue()
        yield


@pytest.fixture
def worker(qcluster: None, cluster: None) -> None:
    pass


def engine() -> DjangoQEngine:
    found = engines.get("remote")
    assert isinstance(found, DjangoQEngine)
    return found


@pytest.mark.parametrize("options", [{"url": REDIS}, {"timeout": "5"}])
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="takes OPTIONS"):
        DjangoQEngine("x", options)


def test_the_check_says_that_django_q_pickles_its_envelope() -> None:
    [info] = DjangoQEngine("x", {}).check()
    assert (info.id, info.level) == ("signalbox.I012", checks.INFO)
    assert "pickles" in info.msg


def test_a_background_receiver_runs_in_qcluster_with_its_model(worker: None) -> None:
    order = support.send_order("A-7")
    assert _handoff.flush()
    support.wait_for_state(Delivery.objects.get().pk, State.COMPLETED)
    [[number, attempt, _pid]] = support.notes()
    assert (number, attempt) == (order.number, "1")


def test_a_rollback_hands_nothing_to_the_broker(cluster: None) -> None:
    support.send_and_roll_back()
    assert engine().broker("default").queue_size() == 0
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
    async_task(TASK, *forged, broker=engine().broker("default"))
    support.sentinel_ran()  # after the genuine and the forged task
    assert [n[0] for n in support.notes()] == ["S-1"]
    assert support.state_of(forged.pk, forged.using) == before
