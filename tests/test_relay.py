"""The relay hands an engine's retries and delayed rows over when they fall due.

It sleeps until the next waiting row's due time (polled after each pass) and,
on PostgreSQL, wakes on ``NOTIFY signalbox_relay`` when a retry or a delayed
row is written; it records a heartbeat, and ``manage.py check`` and
``signalbox status`` say when an engine's rows wait for a relay nobody runs.
"""

from __future__ import annotations

import io
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from django.test import override_settings

import signalbox
from signalbox import engines, outbox, status
from signalbox._states import State
from signalbox.checks import check_relay
from signalbox.engines import _handoff
from signalbox.engines.relay import DUE_POLL, NOTIFY_BACKSTOP, Relay
from signalbox.engines.remote import deliver
from signalbox.models import Delivery, WorkerRecord
from signalbox.outbox import _leases
from signalbox.worker import Outcome
from tests.testapp.engines import RecordingEngine

pytestmark = pytest.mark.django_db(transaction=True)

EMBEDDED = {"BACKEND": "signalbox.engines.embedded.EmbeddedEngine"}
RECORDING = {"BACKEND": "tests.testapp.engines.RecordingEngine"}
THREADS = {
    "BACKEND": "signalbox.engines.threads.ThreadEngine",
    "OPTIONS": {"threads": 16},
}

order_paid = signalbox.Signal()


finished: list[int] = []  # what ran to the end (list.append is atomic)


def fails_first(sender: object, **kwargs: Any) -> None:
    delivery = signalbox.current_delivery()
    assert delivery is not None
    if delivery.attempt == 1:
        raise ConnectionError("the payment provider is busy")
    finished.append(delivery.id)


def runs(sender: object, **kwargs: Any) -> None:
    delivery = signalbox.current_delivery()
    assert delivery is not None
    finished.append(delivery.id)


# The defaults the issue was found with: a ten-second hand-over grace, a
# one-second poll.
SETTINGS = {"ENGINES": {"default": EMBEDDED, "broker": RECORDING, "threads": THREADS}}


@pytest.fixture(autouse=True)
def configured() -> Iterator[None]:
    finished.clear()
    RecordingEngine.handed.clear()
    RecordingEngine.down = False
    with override_settings(SIGNALBOX=SETTINGS):
        yield
        _handoff.flush()
        for receiver in (fails_first, runs):
            order_paid.disconnect(receiver)
    engines.reset()


def connect(receiver: Any, engine: str = "broker", **options: Any) -> None:
    signalbox.connect(order_paid, receiver, run="background", engine=engine, **options)


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)  # seldom: the timings measured share this process
    return True


class RunningRelay:
    """A relay on a thread of this process, stopped (and waited for) on exit."""

    def __init__(self) -> None:
        self.relay = Relay()
        self.thread = threading.Thread(target=self._run, name="test-relay")

    def _run(self) -> None:
        try:
            self.relay.run()
        finally:
            connections.close_all()

    def __enter__(self) -> Relay:
        self.thread.start()
        return self.relay

    def __exit__(self, *exc: object) -> None:
        self.relay.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


def lateness_ms() -> list[float]:
    """How long after its due time each completed row's last attempt was
    claimed (its receiver started), by the database's clock, in ms."""
    rows = Delivery.objects.completed().values_list("attempted_at", "scheduled_at")
    return sorted((ran - due).total_seconds() * 1000 for ran, due in rows)


# -- which rows the relay hands over, and when the next one is due ------------


def test_a_retry_is_handed_over_once_due_not_after_the_grace() -> None:
    # The engine ran and failed the row before the sender's hand-over thread
    # marked it, so the row has no mark: it waited out HANDOVER_GRACE_SECONDS
    # (ten) after its backoff, "retrying in 1.070 s" ran 10.9 s later.
    connect(fails_first, backoff=signalbox.Backoff(base=timedelta(0)))
    RecordingEngine.down = True  # the sender's hand-over leaves no mark
    order_paid.send(sender=None)
    assert _handoff.flush()
    pk = Delivery.objects.get().pk
    assert deliver(pk, engine="broker") == Outcome.RETRYING
    RecordingEngine.down = False
    assert Relay().run_once() == 1
    assert [h.id for h in RecordingEngine.handed] == [pk]


def test_a_delayed_row_is_handed_over_once_due_not_after_the_grace() -> None:
    connect(runs, delay=timedelta(milliseconds=200))
    order_paid.send(sender=None)
    assert _handoff.flush()
    assert Relay().run_once() == 0  # not due yet
    assert wait_for(lambda: Delivery.objects.due().exists(), 5)
    assert Relay().run_once() == 1


def test_a_fresh_row_stays_its_senders_for_the_grace() -> None:
    connect(runs)
    RecordingEngine.down = True
    order_paid.send(sender=None)
    assert _handoff.flush()
    RecordingEngine.down = False
    assert Relay().run_once() == 0


def next_due(*engines: str) -> timedelta | None:
    return outbox.next_due(
        engines=engines, grace=timedelta(seconds=10), using="default"
    )


def test_next_due_is_when_the_engines_next_row_to_hand_over_falls_due() -> None:
    assert next_due("broker") is None
    connect(runs, delay=timedelta(seconds=30))
    connect(fails_first, engine="default", delay=timedelta(seconds=5))
    order_paid.send(sender=None)
    left = next_due("broker")
    assert left is not None
    assert timedelta(seconds=25) < left <= timedelta(seconds=30)
    left = next_due("broker", "default")
    assert left is not None
    assert left <= timedelta(seconds=5)
    Delivery.objects.update(scheduled_at=outbox.ago(timedelta(seconds=1)))
    left = next_due("broker")
    assert left is not None
    assert left <= -timedelta(seconds=1)  # overdue
    Delivery.objects.update(handed_over_at=outbox.after(timedelta(0)))
    assert next_due("broker") is None  # handed over: its redelivery is polled


def test_next_due_leaves_fresh_rows_to_their_sender() -> None:
    connect(runs)
    RecordingEngine.down = True
    order_paid.send(sender=None)
    assert next_due("broker") is None
    Delivery.objects.update(enqueued_at=outbox.ago(timedelta(seconds=11)))
    left = next_due("broker")  # the sender did not hand it over: the relay's
    assert left is not None
    assert left <= timedelta(0)


def test_the_relay_sleeps_until_the_next_due_row_within_its_poll() -> None:
    connect(runs, delay=timedelta(milliseconds=400))
    relay = Relay()
    assert relay._pass() == pytest.approx(1.0)  # nothing waits: the poll
    order_paid.send(sender=None)
    assert 0.2 < relay._pass() <= 0.41


def test_a_row_due_while_the_pass_ran_is_handed_over_at_once() -> None:
    connect(runs, delay=timedelta(seconds=5))
    order_paid.send(sender=None)
    Delivery.objects.update(scheduled_at=outbox.ago(timedelta(seconds=1)))
    relay = Relay()
    # The pass looked two seconds ago, before the row fell due.
    assert relay._until_next(time.monotonic() - 2) < 0.01


def test_a_row_the_pass_could_not_mark_is_left_to_the_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Handing it over again at once, and again, would flood the broker.
    connect(runs, delay=timedelta(seconds=5))
    order_paid.send(sender=None)
    Delivery.objects.update(scheduled_at=outbox.ago(timedelta(seconds=1)))

    def refuse(*args: object, **kwargs: object) -> int:
        raise ConnectionError("the database went away")

    monkeypatch.setattr(outbox, "mark_handed_over", refuse)
    relay = Relay()
    assert relay._pass() == pytest.approx(1.0)
    assert len(RecordingEngine.handed) == 1


# -- on time, end to end ------------------------------------------------------


@pytest.mark.postgres
def test_a_retry_or_a_delayed_row_wakes_the_relays_not_the_workers() -> None:
    import psycopg

    connect(fails_first, backoff=signalbox.Backoff(base=timedelta(seconds=5)))
    connect(runs, engine="threads", delay=timedelta(seconds=5))
    params = connections["default"].get_connection_params()
    with psycopg.connect(**params, autocommit=True) as listener:
        listener.execute(f"LISTEN {outbox.RELAY_CHANNEL}")
        listener.execute(f"LISTEN {outbox.NOTIFY_CHANNEL}")
        order_paid.send(sender=None)  # a delayed row of "threads"
        assert _handoff.flush()
        retried = Delivery.objects.get(engine="broker").pk
        assert deliver(retried, engine="broker") == Outcome.RETRYING
        received = list(listener.notifies(timeout=1.0, stop_after=2))
    # The engine's alias, and nothing of the row: the relays of other
    # engines go back to sleep; the embedded workers are not woken at all.
    assert sorted((n.channel, n.payload) for n in received) == [
        (outbox.RELAY_CHANNEL, "broker"),
        (outbox.RELAY_CHANNEL, "threads"),
    ]


# The relay's poll in the two tests below: ten seconds, so that a row handed
# over by the poll rather than on time is seconds late, not milliseconds, and
# the assertions can leave room for a loaded machine (CI runs two suites side
# by side on two cores). bench/relay.py measures the p99 against the 100 ms
# target on a quiet machine.
SLOW_POLL = {**SETTINGS, "POLL_SECONDS": 10}


@pytest.mark.postgres
@override_settings(SIGNALBOX=SLOW_POLL)
def test_retries_and_delayed_rows_start_within_100_ms_of_their_due_time() -> None:
    # The thread engine runs each row in this process, the relay runs on a
    # thread: 25 retries due up to a second after their failure, and 25 rows
    # delayed by 300 ms, less than the relay's poll, so each is on time only
    # if its write woke the relay (NOTIFY) to sleep until it.
    sends = 25
    connect(
        fails_first,
        engine="threads",
        backoff=signalbox.Backoff(base=timedelta(seconds=1)),
    )
    connect(runs, engine="threads", delay=timedelta(milliseconds=300))
    with RunningRelay():
        for _ in range(sends):
            order_paid.send(sender=None)
            time.sleep(0.04)  # a stream of sends, not one burst (no waiting on it)
        assert wait_for(lambda: len(finished) == 2 * sends)
    assert Delivery.objects.filter(attempt=2).count() == sends  # the retries
    late = lateness_ms()
    p99 = statistics.quantiles(late, n=100, method="inclusive")[98]
    p50, most = statistics.median(late), late[-1]
    figures = f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {most:.1f} ms"
    assert p50 < 100, figures
    assert most < 2000, figures  # by the poll, they would be up to 10 s late


def retries_while_the_relay_sleeps() -> list[float]:
    """Ten retries written while a relay sleeps out its (ten-second) poll;
    how late each started after it fell due, in ms, sorted."""
    connect(
        fails_first,
        engine="threads",
        backoff=signalbox.Backoff(base=timedelta(milliseconds=200)),
    )
    with RunningRelay() as relay:
        # Its first pass is done (its heartbeat is written first): it sleeps
        # for its poll, knowing of nothing due.
        assert wait_for(lambda: WorkerRecord.objects.filter(name=relay.name).exists())
        for _ in range(10):
            order_paid.send(sender=None)  # run at once, retried within 0.2 s
        assert wait_for(lambda: len(finished) == 10)
    return lateness_ms()


@override_settings(SIGNALBOX=SLOW_POLL)
def test_without_notify_the_relay_looks_for_rows_due_sooner_while_it_sleeps() -> None:
    # SQLite, MySQL: nothing wakes the relay when a retry is written, so it
    # looks at the next due time every DUE_POLL (0.1 s) while it sleeps, one
    # small query, rather than learning of the retry at its next one-second
    # pass. (On PostgreSQL, NOTIFY wakes it sooner still.)
    late = retries_while_the_relay_sleeps()
    assert DUE_POLL == 0.1
    # A tenth of a second's look, on a loaded machine; not the ten-second poll.
    assert late[-1] < 1500, f"max {late[-1]:.1f} ms"


@pytest.mark.postgres
@override_settings(SIGNALBOX=SLOW_POLL)
def test_a_lost_notify_makes_a_retry_at_most_a_backstop_late(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A NOTIFY can be lost on its way (the relay's LISTEN connection was
    # being made, or dropped): the relay still looks at the next due time
    # every NOTIFY_BACKSTOP, so a retry is not left for the ten-second poll.
    monkeypatch.setattr(_leases, "wake_relay_for", lambda *args, **kwargs: None)
    late = retries_while_the_relay_sleeps()
    assert NOTIFY_BACKSTOP == 1.0
    assert late[-1] < NOTIFY_BACKSTOP * 1000 + 1500, f"max {late[-1]:.1f} ms"


# -- a relay leaves a trace; check and status miss it --------------------------


def test_the_relay_keeps_a_worker_record_while_it_runs() -> None:
    with RunningRelay() as relay:
        assert wait_for(lambda: WorkerRecord.objects.filter(name=relay.name).exists())
        record = WorkerRecord.objects.get(name=relay.name)
        assert record.name.startswith(outbox.RELAY_PREFIX)
        assert (record.queues, record.receivers) == ([], [])
        assert outbox.relay_seen(stale_after=timedelta(seconds=60), using="default")
    assert not WorkerRecord.objects.exists()  # removed when it stops


def test_a_relay_run_from_cron_keeps_one_record_per_host() -> None:
    for _ in range(2):
        call_command("signalbox", "relay", "--once", stdout=io.StringIO())
    [record] = WorkerRecord.objects.all()
    assert record.name == f"{outbox.RELAY_PREFIX}{socket.gethostname()}:once"
    assert outbox.relay_seen(stale_after=timedelta(seconds=60), using="default")


def due_retry_for_the_broker() -> None:
    connect(fails_first, backoff=signalbox.Backoff(base=timedelta(0)))
    order_paid.send(sender=None)
    assert _handoff.flush()
    assert deliver(Delivery.objects.get().pk, engine="broker") == Outcome.RETRYING


def test_check_and_status_warn_when_rows_wait_for_a_relay_nobody_runs() -> None:
    due_retry_for_the_broker()
    [warning] = check_relay()
    assert warning.id == "signalbox.W005"
    assert "1 delivery of engine 'broker' is due" in warning.msg
    assert "threads" not in warning.msg  # nothing of that engine waits
    assert "signalbox relay" in (warning.hint or "")
    report = status.report(using="default")
    assert report.relay_warning is not None
    assert warning.msg == f"Database 'default': {report.relay_warning}"
    assert "signalbox relay" in report.as_text()


def test_a_relay_seen_lately_silences_the_warning() -> None:
    due_retry_for_the_broker()
    Relay().run_once()  # its heartbeat
    assert check_relay() == []
    assert status.report(using="default").relay_warning is None


def test_a_stale_relay_record_is_not_a_relay() -> None:
    due_retry_for_the_broker()
    relay = Relay()
    relay.run_once()
    WorkerRecord.objects.update(seen_at=outbox.ago(timedelta(minutes=5)))
    Delivery.objects.update(
        state=State.RETRYABLE, scheduled_at=outbox.ago(timedelta(0))
    )
    assert [w.id for w in check_relay()] == ["signalbox.W005"]


def later(sender: object, **kwargs: Any) -> None:
    pass


@pytest.mark.parametrize(
    "setting",
    [{}, SETTINGS],
    ids=["only the embedded worker", "engines, nothing due"],
)
def test_nothing_due_for_an_engine_is_no_warning(setting: dict[str, Any]) -> None:
    connect(runs, engine="default")  # the embedded worker's: no relay needed
    connect(later, delay=timedelta(hours=1))  # the broker's, not due yet
    order_paid.send(sender=None)
    try:
        with override_settings(SIGNALBOX=setting):
            assert check_relay() == []
            assert status.report(using="default").relay_warning is None
    finally:
        order_paid.disconnect(later)
