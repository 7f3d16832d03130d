"""Engines: configured by alias, handed committed rows after the commit, and the
relay for what was not handed over; the thread engine end to end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core import checks
from django.db import connections, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

import signalbox
from signalbox import ConfigurationError, ReceiverError, engines, outbox
from signalbox._states import State
from signalbox.checks import check_engines
from signalbox.engines import _handoff
from signalbox.engines.relay import Relay
from signalbox.engines.remote import deliver
from signalbox.engines.threads import ThreadEngine
from signalbox.models import Delivery
from signalbox.worker import Outcome, Worker
from tests import engine_support as support
from tests.testapp.engines import RecordingEngine

pytestmark = pytest.mark.django_db(transaction=True)

EMBEDDED = {"BACKEND": "signalbox.engines.embedded.EmbeddedEngine"}
RECORDING = {"BACKEND": "tests.testapp.engines.RecordingEngine"}
THREADS = {"BACKEND": "signalbox.engines.threads.ThreadEngine"}

order_paid = signalbox.Signal()
ran: list[Any] = []


def remote_job(sender: object, **kwargs: Any) -> None:
    delivery = signalbox.current_delivery()
    ran.append((kwargs.get("n"), delivery.attempt if delivery else None))


def failing_job(sender: object, **kwargs: Any) -> None:
    raise RuntimeError("the mail server is down")


def slow_job(sender: object, **kwargs: Any) -> None:
    time.sleep(float(kwargs["seconds"]))
    ran.append("slow")


@pytest.fixture(autouse=True)
def configured() -> Iterator[None]:
    ran.clear()
    RecordingEngine.handed.clear()
    RecordingEngine.down = False
    settings = {
        "ENGINES": {"default": EMBEDDED, "broker": RECORDING, "threads": THREADS},
        "HANDOVER_GRACE_SECONDS": 0,
        "LEASE_SECONDS": 1,
    }
    with override_settings(SIGNALBOX=settings):
        yield
        _handoff.flush()
        for receiver in (remote_job, failing_job, slow_job):
            order_paid.disconnect(receiver)
    engines.reset()


def connect(receiver: Any, engine: str = "broker", **options: Any) -> None:
    signalbox.connect(order_paid, receiver, run="background", engine=engine, **options)


# -- configuration ------------------------------------------------------------


@pytest.mark.parametrize(
    ("engines_setting", "message"),
    [
        ({"other": EMBEDDED}, 'needs a "default"'),
        ({"default": {"OPTIONS": {}}}, "must name a BACKEND"),
        ({"default": {"BACKEND": "x.Y", "TIMEOUT": 1}}, "takes BACKEND and OPTIONS"),
        ({"default": {"BACKEND": "nowhere.Engine"}}, "cannot be imported"),
        ({"default": {"BACKEND": "collections.OrderedDict"}}, "not a subclass"),
        ({"default": {**EMBEDDED, "OPTIONS": {"x": 1}}}, "takes no OPTIONS"),
        ({"default": {**THREADS, "OPTIONS": {"threads": 0}}}, "at least 1 thread"),
        ({"default": {**THREADS, "OPTIONS": {"pool": 2}}}, "takes OPTIONS"),
    ],
)
def test_a_misconfigured_engine_is_a_clear_error(
    engines_setting: dict[str, Any], message: str
) -> None:
    with (
        override_settings(SIGNALBOX={"ENGINES": engines_setting}),
        pytest.raises(ConfigurationError, match=message),
    ):
        engines.load_all()


# Each engine with options that are right but for one mistake, and the words
# the shared check (Engine.check_options) must say about it.
_WRONG_OPTIONS = [
    ("embedded.EmbeddedEngine", {"x": 1}, "no OPTIONS (the worker's", "unknown 'x'"),
    ("threads.ThreadEngine", {"threads": True}, "OPTIONS {'threads'", "bool"),
    ("rq.RQEngine", {"job_timeout": 1}, "OPTIONS {'url'", "OPTIONS['url'] is required"),
    ("rq.RQEngine", {"url": "redis://h", "job_timeout": "3m"}, "OPTIONS", "str"),
    ("dramatiq.DramatiqEngine", {"broker": "x", "queues": "a"}, "OPTIONS", "str"),
    ("celery.CeleryEngine", {"app": "a.b", "acks_late": 1}, "OPTIONS", "must be bool"),
    ("django_q.DjangoQEngine", {"timeout": "5"}, "OPTIONS {'timeout'", "str"),
]


@pytest.mark.parametrize(("backend", "options", "usage", "wrong"), _WRONG_OPTIONS)
def test_every_engine_refuses_wrong_options_in_one_format(
    backend: str, options: dict[str, Any], usage: str, wrong: str
) -> None:
    setting = {"BACKEND": f"signalbox.engines.{backend}", "OPTIONS": options}
    with (
        override_settings(SIGNALBOX={"ENGINES": {"default": EMBEDDED, "e": setting}}),
        pytest.raises(ConfigurationError) as raised,
    ):
        engines.get("e")
    message = str(raised.value)
    assert message.startswith(f"The {backend.split('.')[1].removesuffix('Engine')} ")
    assert f"engine 'e' takes {usage}" in message
    assert f"not {options!r}: " in message
    assert wrong in message


def test_the_system_check_reports_a_misconfigured_engine() -> None:
    with override_settings(SIGNALBOX={"ENGINES": {"default": {"BACKEND": "no.Such"}}}):
        [error] = check_engines()
    assert error.id == "signalbox.E002"
    assert "cannot be imported" in error.msg


def test_a_receiver_naming_an_unknown_engine_is_refused_at_connect() -> None:
    with pytest.raises(ReceiverError, match=r"engine='celery' is not in .*'broker'"):
        connect(remote_job, engine="celery")


def test_options_an_engine_ignores_are_a_warning() -> None:
    connect(remote_job, engine="threads", queue="mail")
    warnings = [m for m in check_engines() if m.id == "signalbox.W001"]
    assert len(warnings) == 1
    assert "sets queue, which engine 'threads'" in warnings[0].msg
    assert warnings[0].level == checks.WARNING


def test_without_engines_the_embedded_worker_runs_everything() -> None:
    with override_settings(SIGNALBOX={}):
        assert engines.aliases(embedded=True) == ["default"]
        assert engines.aliases(embedded=False) == []


# -- handing over after the commit --------------------------------------------


def test_committed_rows_are_handed_over_after_the_commit_only() -> None:
    connect(remote_job)
    with transaction.atomic():
        order_paid.send(sender=None, n=1)
        _handoff.flush()
        assert RecordingEngine.handed == []  # nothing before the commit
    assert _handoff.flush()
    [handed] = RecordingEngine.handed
    row = Delivery.objects.get()
    assert (handed.id, handed.engine, handed.using) == (row.id, "broker", "default")
    assert row.engine == "broker"
    assert row.handed_over_at is not None
    assert row.handovers == 1


def test_the_hand_over_thread_publishes_at_once_and_marks_later() -> None:
    # A mark per commit, with a connection opened for it, cost the web
    # process more than the publish: rows are marked within a quarter of the
    # grace window instead, together.
    connect(remote_job)
    settings = {"ENGINES": {"default": EMBEDDED, "broker": RECORDING}}
    with override_settings(SIGNALBOX={**settings, "HANDOVER_GRACE_SECONDS": 2}):
        for n in range(3):
            order_paid.send(sender=None, n=n)  # three commits (autocommit)
        deadline = time.monotonic() + 5
        while len(RecordingEngine.handed) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(RecordingEngine.handed) == 3
        assert not Delivery.objects.filter(handed_over_at__isnull=False).exists()
        deadline = time.monotonic() + 5
        unmarked = Delivery.objects.filter(handed_over_at__isnull=True)
        while unmarked.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert list(Delivery.objects.values_list("handovers", flat=True)) == [1, 1, 1]


def test_flush_marks_what_was_handed_over_at_once() -> None:
    connect(remote_job)
    settings = {"ENGINES": {"default": EMBEDDED, "broker": RECORDING}}
    with override_settings(SIGNALBOX={**settings, "HANDOVER_GRACE_SECONDS": 3600}):
        with transaction.atomic():
            order_paid.send(sender=None, n=1)
        started = time.monotonic()
        assert _handoff.flush()
        assert time.monotonic() - started < 1
    assert Delivery.objects.get().handovers == 1


def test_a_row_the_engine_ran_before_the_mark_is_left_for_its_retry() -> None:
    connect(failing_job, retries=2, backoff=signalbox.Backoff(base=timedelta(0)))
    RecordingEngine.down = True
    order_paid.send(sender=None)
    assert _handoff.flush()
    [handover] = outbox.handover_due(
        engines=["broker"],
        grace=timedelta(0),
        redeliver=timedelta(hours=1),
        limit=10,
        using="default",
    )
    # A fast worker ran and failed it between the publish and the mark.
    assert deliver(handover.id, engine="broker") == Outcome.RETRYING
    assert outbox.mark_handed_over([handover], using="default") == 0
    RecordingEngine.down = False
    assert Relay().run_once() == 1  # the retry is handed over, not hidden


def test_a_delayed_row_is_handed_over_once_due_not_at_the_commit() -> None:
    connect(remote_job, delay=timedelta(seconds=1))
    order_paid.send(sender=None, n=1)
    assert _handoff.flush()
    assert RecordingEngine.handed == []  # its message would find it not due
    assert Relay().run_once() == 0
    deadline = time.monotonic() + 5
    while not Delivery.objects.due().exists():  # by the database's clock
        assert time.monotonic() < deadline, "the delayed row never fell due"
        time.sleep(0.05)
    assert Relay().run_once() == 1
    assert [h.id for h in RecordingEngine.handed] == [Delivery.objects.get().pk]


def test_a_rollback_hands_nothing_over() -> None:
    connect(remote_job)
    try:
        with transaction.atomic():
            order_paid.send(sender=None, n=1)
            raise ZeroDivisionError
    except ZeroDivisionError:
        pass
    assert _handoff.flush()
    assert RecordingEngine.handed == []
    assert Delivery.objects.count() == 0


def test_the_send_adds_one_statement_and_waits_for_no_broker() -> None:
    connect(remote_job)
    RecordingEngine.down = True
    with transaction.atomic():
        with CaptureQueriesContext(connections["default"]) as queries:
            order_paid.send(sender=None, n=1)
        assert len(queries) == 1
    assert _handoff.flush()
    # The broker refused: the row simply stays, for the relay.
    row = Delivery.objects.get()
    assert (row.state, row.handed_over_at) == (State.AVAILABLE, None)


def test_the_embedded_worker_leaves_other_engines_rows_alone() -> None:
    connect(remote_job)
    order_paid.send(sender=None, n=1)
    assert Worker(burst=True).run().by_outcome == {}
    assert Delivery.objects.get().state == State.AVAILABLE


# -- the remote body ----------------------------------------------------------


def test_deliver_runs_a_due_row_once_and_records_it() -> None:
    connect(remote_job)
    order_paid.send(sender=None, n=7)
    pk = Delivery.objects.get().pk
    assert deliver(pk, engine="broker") == Outcome.COMPLETED
    assert deliver(pk, engine="broker") is None  # a redelivered message
    assert ran == [(7, 1)]
    assert Delivery.objects.get().state == State.COMPLETED


@pytest.mark.parametrize("which", ["completed", "dead", "missing", "leased", "other"])
def test_a_forged_or_stale_message_runs_nothing(which: str) -> None:
    connect(remote_job)
    order_paid.send(sender=None, n=1)
    row = Delivery.objects.get()
    engine = "broker"
    if which in ("completed", "dead"):
        Delivery.objects.filter(pk=row.pk).update(state=which)
    elif which == "leased":
        Delivery.objects.filter(pk=row.pk).update(
            state=State.EXECUTING, lease_token=uuid.uuid4()
        )
    elif which == "other":
        engine = "threads"
    pk = row.pk + 1000 if which == "missing" else row.pk
    assert deliver(pk, engine=engine) is None
    assert ran == []


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_deliver_runs_rows_of_the_databases_outbox_databases_lists(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_handoff, "_unlisted", set())  # as in a fresh process
    connect(remote_job)
    with transaction.atomic(using="other"):
        order_paid.send(sender=None, n=2, using="other")
    pk = Delivery.objects.using("other").get().pk
    assert _handoff.flush()
    assert caplog.text.count("does not list 'other'") == 1  # said by the sender
    caplog.clear()
    order_paid.send(sender=None, n=4, using="other")
    assert _handoff.flush()  # said once per process
    assert deliver(pk, engine="broker", using="other") is None
    assert "not in SIGNALBOX['OUTBOX_DATABASES']" in caplog.text
    assert "other" not in caplog.text  # the message's value is not echoed
    settings = {**django_settings.SIGNALBOX, "OUTBOX_DATABASES": ["default", "other"]}
    with override_settings(SIGNALBOX=settings):
        assert deliver(pk, engine="broker", using="other") == Outcome.COMPLETED
    assert ran == [(2, 1)]


def test_a_task_runs_only_rows_of_an_engine_of_its_own_class(
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect(remote_job)
    order_paid.send(sender=None, n=3)
    pk = Delivery.objects.get().pk
    for wrong in (ThreadEngine, "not an alias", ["broker"]):
        task_of = wrong if isinstance(wrong, type) else RecordingEngine
        engine = "broker" if isinstance(wrong, type) else wrong
        assert deliver(pk, engine=engine, task_of=task_of) is None  # type: ignore[arg-type]
    assert caplog.text.count("names an engine alias not configured here") == 3
    assert deliver(pk, engine="broker", task_of=RecordingEngine) == Outcome.COMPLETED
    assert ran == [(3, 1)]


def test_failures_are_retried_through_the_outbox_then_handed_over_again() -> None:
    connect(failing_job, retries=2, backoff=signalbox.Backoff(base=timedelta(0)))
    order_paid.send(sender=None)
    pk = Delivery.objects.get().pk
    assert _handoff.flush()
    assert deliver(pk, engine="broker") == Outcome.RETRYING
    row = Delivery.objects.get()
    assert (row.state, row.attempt) == (State.RETRYABLE, 1)
    RecordingEngine.handed.clear()
    assert Relay().run_once() == 1  # fell due again: handed over once more
    assert [h.id for h in RecordingEngine.handed] == [pk]
    assert deliver(pk, engine="broker") == Outcome.DEAD
    row = Delivery.objects.get()
    assert (row.state, row.reason) == (State.DEAD, "max_attempts")
    assert "the mail server is down" in row.error


def test_a_hand_over_marked_after_the_engine_ran_it_does_not_hide_the_retry() -> None:
    # A fast worker can run and fail a delivery before the hand-over thread
    # marks it handed over: that late mark must not hide the retry.
    connect(failing_job, retries=2, backoff=signalbox.Backoff(base=timedelta(0)))
    RecordingEngine.down = True
    order_paid.send(sender=None)
    assert _handoff.flush()
    pk = Delivery.objects.get().pk
    assert deliver(pk, engine="broker") == Outcome.RETRYING
    late = outbox.Handover(pk, "broker", "default", 0, "default", attempt=0)
    assert outbox.mark_handed_over([late], using="default") == 0
    RecordingEngine.down = False
    assert Relay().run_once() == 1
    assert Delivery.objects.get().handovers == 1


def test_a_long_delivery_keeps_its_lease() -> None:
    connect(slow_job)
    order_paid.send(sender=None, seconds=2.5)  # LEASE_SECONDS is 1
    pk = Delivery.objects.get().pk
    assert deliver(pk, engine="broker") == Outcome.COMPLETED
    assert outbox.rescue(using="default") == 0
    assert ran == ["slow"]


# -- the relay ----------------------------------------------------------------


def test_the_relay_hands_over_what_the_sender_could_not() -> None:
    connect(remote_job)
    RecordingEngine.down = True
    order_paid.send(sender=None, n=1)
    assert _handoff.flush()
    relay = Relay()
    assert relay.run_once() == 0  # still down: backs off
    RecordingEngine.down = False
    assert relay.run_once() == 0  # within its pause
    relay._paused_until.clear()
    assert relay.run_once() == 1
    assert Relay().run_once() == 0  # marked: not handed over twice
    assert len(RecordingEngine.handed) == 1


def test_the_relay_leaves_fresh_rows_to_their_sender_for_the_grace_period() -> None:
    connect(remote_job)
    RecordingEngine.down = True
    with override_settings(
        SIGNALBOX={
            "ENGINES": {"default": EMBEDDED, "broker": RECORDING},
            "HANDOVER_GRACE_SECONDS": 60,
        }
    ):
        order_paid.send(sender=None, n=1)
        assert _handoff.flush()
        RecordingEngine.down = False
        assert Relay().run_once() == 0


def test_a_row_rescued_from_a_dead_engine_worker_is_handed_over_again_at_once() -> None:
    # A rescued row keeps its due time, so "handed over before it fell due"
    # cannot tell the relay that the message was spent on the lost claim.
    connect(remote_job)
    order_paid.send(sender=None, n=1)
    assert _handoff.flush()
    pk = Delivery.objects.get().pk
    assert RecordingEngine.handed
    assert Relay().run_once() == 0  # handed over already
    claimed = outbox.claim_one(
        pk,
        engine="broker",
        worker="dies",
        receivers=[f"{__name__}.remote_job"],
        lease=timedelta(seconds=30),
        using="default",
    )
    assert claimed is not None
    Delivery.objects.update(lease_expires_at=outbox.ago(timedelta(seconds=1)))
    assert outbox.rescue(using="default") == 1
    RecordingEngine.handed.clear()
    assert Relay().run_once() == 1
    assert [h.id for h in RecordingEngine.handed] == [pk]
    assert deliver(pk, engine="broker") == Outcome.COMPLETED
    assert ran == [(1, 2)]


def test_a_lost_message_is_handed_over_again_later_and_later() -> None:
    connect(remote_job)
    order_paid.send(sender=None, n=1)
    assert _handoff.flush()
    pk = Delivery.objects.get().pk

    def handed_ago(seconds: float, handovers: int) -> None:
        Delivery.objects.filter(pk=pk).update(
            handed_over_at=outbox.ago(timedelta(seconds=seconds)),
            scheduled_at=outbox.ago(timedelta(hours=1)),
            handovers=handovers,
        )

    def due(redeliver: float) -> bool:
        found = outbox.handover_due(
            engines=["broker"],
            grace=timedelta(0),
            redeliver=timedelta(seconds=redeliver),
            limit=10,
            using="default",
        )
        return [h.id for h in found] == [pk]

    handed_ago(100, 1)
    assert not due(redeliver=200)
    assert due(redeliver=50)
    handed_ago(100, 2)  # the second hand-over waits twice as long
    assert not due(redeliver=60)
    assert due(redeliver=40)


# -- the thread engine, end to end --------------------------------------------


def test_the_thread_engine_runs_committed_deliveries_in_this_process() -> None:
    connect(remote_job, engine="threads")
    with transaction.atomic():
        for n in range(5):
            order_paid.send(sender=None, n=n)
    assert _handoff.flush()
    deadline = time.monotonic() + 10
    while Delivery.objects.completed().count() < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(ran) == [(n, 1) for n in range(5)]
    assert Delivery.objects.completed().count() == 5


def forged_for_threads(which: str) -> outbox.Handover:
    """A committed row of the thread engine, made ``which`` (see
    :data:`tests.engine_support.FORGED`) in the transaction that wrote it,
    and a hand-over naming it as a forged message would."""
    using = "other" if which == "other_database" else "default"
    with transaction.atomic(using=using):
        order_paid.send(sender=None, n=1, using=using)
        rows = Delivery.objects.using(using).all()
        pk = rows.get().pk
        if which in ("completed", "dead"):
            rows.update(state=which)
        elif which == "leased":
            rows.update(state=State.EXECUTING, lease_token=uuid.uuid4())
        elif which == "missing":
            rows.delete()
        elif which == "other_engine":
            rows.update(engine="broker")
    engine = "broker" if which == "other_engine" else "threads"
    return outbox.Handover(pk, engine, "default", 0, using, 0)


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
@pytest.mark.parametrize("which", support.FORGED)
def test_a_forged_hand_over_to_the_thread_engine_runs_nothing(
    which: str, caplog: pytest.LogCaptureFixture
) -> None:
    connect(remote_job, engine="threads")
    forged = forged_for_threads(which)
    assert _handoff.flush()  # the genuine hand-over is as stale as the forged one
    before = list(Delivery.objects.using(forged.using).values())
    threads = engines.get("threads")
    threads.publish([forged])
    threads.close()  # once every thread is done
    assert ran == []
    assert list(Delivery.objects.using(forged.using).values()) == before
    if which.startswith("other_"):  # said, without the message's values
        assert "nothing ran" in caplog.text


@pytest.mark.postgres
@pytest.mark.parametrize("synchronous", [False, True])
def test_deliver_relaxes_only_its_own_bookkeeping_transactions(
    synchronous: bool,
) -> None:
    # The claim and the acknowledgement run on the receiver's connection: a
    # SET LOCAL each, so the receiver's own writes keep the server's setting.
    connect(remote_job)
    order_paid.send(sender=None, n=1)
    pk = Delivery.objects.get().pk
    statements: list[str] = []

    def spy(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        statements.append(sql)
        return execute(sql, params, many, context)

    settings = {"ENGINES": {"default": EMBEDDED, "broker": RECORDING}}
    with (
        override_settings(SIGNALBOX={**settings, "SYNCHRONOUS_ACKS": synchronous}),
        connections["default"].execute_wrapper(spy),
    ):
        assert deliver(pk, engine="broker") == Outcome.COMPLETED
    relaxed = [s for s in statements if "synchronous_commit" in s]
    assert len(relaxed) == (0 if synchronous else 2)
    # One statement each, relaxing its own commit: no SET LOCAL in a
    # transaction around it (four round trips where one does).
    assert len(statements) == 2
    with connections["default"].cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone() == ("on",)


@pytest.mark.postgres
def test_deliver_inside_a_callers_transaction_leaves_its_durability_alone() -> None:
    connect(remote_job)
    order_paid.send(sender=None, n=1)
    pk = Delivery.objects.get().pk
    with transaction.atomic():
        assert deliver(pk, engine="broker") == Outcome.COMPLETED
        with connections["default"].cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone() == ("on",)


@pytest.mark.postgres
def test_only_rows_for_the_embedded_workers_wake_them() -> None:
    # An engine's rows are handed to it after the commit; a NOTIFY would only
    # send every idle embedded worker to claim nothing.
    import psycopg

    connect(remote_job)  # the recording engine
    params = connections["default"].get_connection_params()
    with psycopg.connect(**params, autocommit=True) as listener:
        listener.execute(f"LISTEN {outbox.NOTIFY_CHANNEL}")
        with transaction.atomic():
            order_paid.send(sender=None, n=1)
        assert list(listener.notifies(timeout=0.3)) == []
        connect(slow_job, engine="default")  # one send, two receivers, one INSERT
        with transaction.atomic():
            order_paid.send(sender=None, n=2, seconds=0)
        received = list(listener.notifies(timeout=1.0, stop_after=1))
        assert [n.channel for n in received] == [outbox.NOTIFY_CHANNEL]
    assert Delivery.objects.filter(engine="broker").count() == 2
    assert Delivery.objects.filter(engine="default").count() == 1


def sent_to_the_broker(count: int) -> list[int]:
    """Connect ``remote_job`` on the "broker" engine and send ``count``
    times (autocommit); the new deliveries' ids, in order."""
    connect(remote_job)
    for n in range(count):
        order_paid.send(sender=None, n=n)
    return list(Delivery.objects.order_by("id").values_list("pk", flat=True))


@pytest.mark.postgres
def test_a_stream_of_deliveries_leaves_its_completions_to_one_later_statement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from signalbox.engines import remote
    from signalbox.worker import _keeper

    # Long enough that neither the keeper nor a slow machine gets in between.
    monkeypatch.setattr(_keeper, "ACK_DELAY", 5.0)
    monkeypatch.setattr(_keeper.keeper, "_ended", 0.0)  # no delivery just ended
    first, second, third = sent_to_the_broker(3)
    statements: list[str] = []

    def spy(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        statements.append(sql)
        return execute(sql, params, many, context)

    def state(pk: int) -> str:
        return Delivery.objects.get(pk=pk).state

    with connections["default"].execute_wrapper(spy):
        # A lone delivery writes its own completion before it returns.
        assert deliver(first, engine="broker", defer_ack=True) == Outcome.COMPLETED
        assert state(first) == State.COMPLETED
        # Those that follow closely leave theirs to the keeper's thread ...
        assert deliver(second, engine="broker", defer_ack=True) == Outcome.COMPLETED
        assert state(second) == State.EXECUTING
        # ... and a redelivery meanwhile finds the row leased: runs nothing.
        assert deliver(second, engine="broker", defer_ack=True) is None
        assert deliver(third, engine="broker", defer_ack=True) == Outcome.COMPLETED
    assert sum("'completed'" in s for s in statements) == 1  # the lone one's
    assert (state(second), state(third)) == (State.EXECUTING, State.EXECUTING)
    remote.write_acks()  # what worker_process_shutdown and atexit do
    assert (state(second), state(third)) == (State.COMPLETED, State.COMPLETED)
    assert [n for n, _ in ran] == [0, 1, 2]


@pytest.mark.postgres
def test_a_deferred_completion_is_written_by_the_keeper_soon_after() -> None:
    from signalbox.worker import _keeper

    first, second = sent_to_the_broker(2)
    deliver(first, engine="broker", defer_ack=True)
    assert deliver(second, engine="broker", defer_ack=True) == Outcome.COMPLETED
    deadline = time.monotonic() + 2
    while Delivery.objects.completed().count() < 2 and time.monotonic() < deadline:
        time.sleep(_keeper.ACK_DELAY)
    assert Delivery.objects.completed().count() == 2


@pytest.mark.postgres
def test_deliver_inside_a_transaction_never_defers_its_completion() -> None:
    first, second = sent_to_the_broker(2)
    deliver(first, engine="broker", defer_ack=True)
    with transaction.atomic():
        deliver(second, engine="broker", defer_ack=True)
        assert Delivery.objects.get(pk=second).state == State.COMPLETED


@pytest.mark.postgres
def test_write_acks_returns_after_a_write_the_keeper_has_under_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # At exit (atexit, Celery's worker_process_shutdown) write_acks() is the
    # last chance: if it returned while the keeper's thread was still
    # writing, the process would end under that write and the rows run again.
    import threading

    from signalbox.engines import remote
    from signalbox.worker import _keeper

    monkeypatch.setattr(_keeper.keeper, "_ended", 0.0)
    first, second = sent_to_the_broker(2)
    entered, release = threading.Event(), threading.Event()
    complete_many = outbox.complete_many

    def slow_complete_many(claims: Any, *, using: str) -> Any:
        entered.set()
        release.wait(5)
        return complete_many(claims, using=using)

    monkeypatch.setattr(outbox, "complete_many", slow_complete_many)
    deliver(first, engine="broker", defer_ack=True)  # alone: written at once
    deliver(second, engine="broker", defer_ack=True)  # deferred
    assert entered.wait(5)  # the keeper's thread writes it, ACK_DELAY later

    def on_a_thread(target: Any) -> threading.Thread:
        def run() -> None:
            try:
                target()
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    exiting = on_a_thread(remote.write_acks)
    exiting.join(0.3)
    assert exiting.is_alive()  # waits for the write under way
    release.set()
    exiting.join(5)
    assert not exiting.is_alive()
    assert Delivery.objects.get(pk=second).state == State.COMPLETED


def test_a_receiver_connected_between_deliveries_is_found_by_the_next() -> None:
    # deliver() keeps its reading of the registry between deliveries; a
    # receiver connected since must reach the next one.
    (first,) = sent_to_the_broker(1)
    assert deliver(first, engine="broker") == Outcome.COMPLETED
    connect(failing_job)
    order_paid.send(sender=None, n=1)
    failing = Delivery.objects.get(receiver__endswith="failing_job")
    assert deliver(failing.pk, engine="broker") == Outcome.RETRYING


HOSTILE_KWARGS = {
    # int(Decimal("1e300000")), which Django runs on an integer pk: seconds.
    "costly pk": {"$sb": "decimal", "v": "1e300000"},
    # A snapshot value the field refuses: Django's ValidationError quotes it.
    "refused snapshot": "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
}


@pytest.mark.parametrize("kind", list(HOSTILE_KWARGS))
def test_an_engine_task_buries_a_hostile_row_at_once_as_a_decode_error(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The engines' task bodies decode through the same run_delivery as the
    # embedded worker: a forged row is dead at once, quoting nothing.
    connect(remote_job)
    order_paid.send(sender=None, n=1)
    row = Delivery.objects.get()
    value = HOSTILE_KWARGS[kind]
    reference = {"model": "testapp.Invoice", "db": "default", "pk": 2**40}
    reference |= {"fields": {}, "strings": {}}
    if kind == "costly pk":
        reference["pk"] = value
    else:
        reference["strings"] = {"issued": value}
    row.payload["kwargs"]["values"]["n"] = {"$sb": "model", "v": reference}
    Delivery.objects.filter(pk=row.pk).update(payload=row.payload)
    started = time.monotonic()
    assert deliver(row.pk, engine="broker") == Outcome.DEAD
    assert time.monotonic() - started < 1.0
    row.refresh_from_db()
    assert (row.reason, row.attempt) == ("decode_error", 1)
    assert ran == []
    logged = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert not [text for text in [row.error, *logged] if "1e300000" in text]
    assert not [text for text in [row.error, *logged] if str(value) in text]
