"""run="background": rows written in the sender's transaction, run by the worker."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.db.models.signals import post_delete, post_save
from django.test import override_settings

import signalbox
from signalbox import outbox, registry
from signalbox._states import State
from signalbox.exceptions import Retry
from signalbox.models import Delivery
from signalbox.worker import Outcome, Worker, run_delivery
from tests.testapp.models import Note, Order

paid = signalbox.Signal()
seen: list[dict[str, Any]] = []


def record(sender: Any, **kwargs: Any) -> None:
    seen.append({"sender": sender, **kwargs, "delivery": signalbox.current_delivery()})


def explode(sender: Any, **kwargs: Any) -> None:
    raise RuntimeError("boom")


def snooze(sender: Any, **kwargs: Any) -> None:
    if len(seen) == 0:
        seen.append({"snoozed": True})
        raise Retry(delay=0)
    seen.append({"ran": True})


def refuse(sender: Any, **kwargs: Any) -> None:
    raise KeyError("not retryable")


async def record_async(sender: Any, **kwargs: Any) -> None:
    seen.append({"async": True, **kwargs})


def on_deleted(sender: Any, instance: Order, **kwargs: Any) -> None:
    seen.append({"number": instance.number, "pk": instance.pk})


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    seen.clear()
    with override_settings(SIGNALBOX={"POLL_SECONDS": 0.02}):
        yield
    for receiver in (record, explode, snooze, refuse, record_async, write_note):
        paid.disconnect(receiver)
    post_save.disconnect(record, sender=Order)
    post_delete.disconnect(on_deleted, sender=Order)


def drain(**options: Any) -> dict[Outcome, int]:
    return Worker(burst=True, concurrency=2, **options).run().by_outcome


pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


def test_commit_writes_a_row_that_the_worker_runs() -> None:
    signalbox.connect(paid, record, run="background")
    order = Order.objects.create(number="A1")
    with transaction.atomic():
        paid.send(sender=Order, order=order, amount=3)
        assert Delivery.objects.count() == 1
    assert drain() == {Outcome.COMPLETED: 1}
    [call] = seen
    assert call["sender"] is Order
    assert call["signal"] is paid
    assert call["order"] == order
    assert call["amount"] == 3
    assert call["delivery"].attempt == 1
    assert Delivery.objects.get().state == State.COMPLETED


def test_rollback_writes_nothing() -> None:
    signalbox.connect(paid, record, run="background")
    with pytest.raises(ZeroDivisionError), transaction.atomic():  # noqa: PT012
        paid.send(sender=None)
        1 / 0
    assert Delivery.objects.count() == 0


def test_savepoint_rollback_drops_only_its_rows() -> None:
    signalbox.connect(paid, record, run="background")
    with transaction.atomic():
        paid.send(sender=None, which="outer")
        try:
            with transaction.atomic():
                paid.send(sender=None, which="inner")
                raise ValueError
        except ValueError:
            pass
    drain()
    assert [call["which"] for call in seen] == ["outer"]


def test_model_signal_rows_go_to_the_alias_the_signal_names() -> None:
    signalbox.connect(post_save, record, sender=Order, run="background")
    with transaction.atomic(using="other"):
        Order.objects.using("other").create(number="B2")
    assert Delivery.objects.using("other").count() == 1
    assert Delivery.objects.using("default").count() == 0
    assert drain(using="other") == {Outcome.COMPLETED: 1}
    assert seen[0]["instance"].number == "B2"
    assert seen[0]["created"] is True


def test_failures_retry_then_die_with_the_traceback() -> None:
    signalbox.connect(
        paid,
        explode,
        run="background",
        retries=2,
        backoff=signalbox.Backoff(base=timedelta(0), cap=timedelta(0)),
    )
    paid.send(sender=None)
    drain()
    row = Delivery.objects.get()
    assert row.state == State.DEAD
    assert row.attempt == 2
    assert row.reason == "max_attempts"
    assert "RuntimeError: boom" in row.error
    assert "Traceback" in row.error


def test_not_retryable_errors_die_at_once() -> None:
    signalbox.connect(paid, refuse, run="background", dont_retry_on=KeyError)
    paid.send(sender=None)
    assert drain() == {Outcome.DEAD: 1}
    assert Delivery.objects.get().reason == "not_retryable"


def test_retry_spends_no_attempt() -> None:
    signalbox.connect(paid, snooze, run="background", retries=1)
    paid.send(sender=None)
    drain()
    assert seen == [{"snoozed": True}, {"ran": True}]
    row = Delivery.objects.get()
    assert (row.state, row.attempt) == (State.COMPLETED, 1)


def test_coroutine_receivers_run_on_the_workers_loop() -> None:
    signalbox.connect(paid, record_async, run="background")
    paid.send(sender=None, n=1)
    assert drain() == {Outcome.COMPLETED: 1}
    assert seen == [{"async": True, "n": 1, "signal": paid}]


def test_post_delete_receivers_get_the_snapshot() -> None:
    signalbox.connect(post_delete, on_deleted, sender=Order, run="background")
    order = Order.objects.create(number="C3")
    pk = order.pk
    order.delete()
    drain()
    assert seen == [{"number": "C3", "pk": pk}]


def test_delay_holds_the_row_back() -> None:
    signalbox.connect(paid, record, run="background", delay=timedelta(hours=1))
    paid.send(sender=None)
    assert drain() == {}
    assert Delivery.objects.get().state == State.SCHEDULED


def test_unknown_keys_are_never_claimed() -> None:
    outbox.enqueue(
        [outbox.NewDelivery(signal="x", receiver="os.system", payload={})],
        using="default",
    )
    assert drain() == {}
    assert Delivery.objects.get().state == State.AVAILABLE


def test_codec_errors_reach_the_caller_before_anything_is_written() -> None:
    signalbox.connect(paid, record, run="background")
    with pytest.raises(signalbox.CodecError) as raised, transaction.atomic():
        paid.send(sender=None, callback=lambda: None)
    assert raised.value.argument == "callback"
    assert Delivery.objects.count() == 0


def write_note(sender: Any, text: str, **kwargs: Any) -> None:
    Note.objects.create(text=text)


def test_a_stale_claim_cannot_acknowledge() -> None:
    # A worker paused past its lease (SIGSTOP, a long GC pause) wakes up to
    # find its row taken over: nothing it reports may apply.
    outbox.enqueue(
        [outbox.NewDelivery(signal="s", receiver="k", payload={})], using="default"
    )
    [stale] = outbox.claim(
        worker="a",
        queues=["default"],
        receivers=["k"],
        limit=1,
        lease=timedelta(seconds=30),
        using="default",
    )
    Delivery.objects.update(lease_expires_at=outbox.ago(timedelta(seconds=1)))
    assert outbox.rescue(using="default") == 1
    [fresh] = outbox.claim(
        worker="b",
        queues=["default"],
        receivers=["k"],
        limit=1,
        lease=timedelta(seconds=30),
        using="default",
    )
    assert fresh.attempt == 2
    assert not outbox.complete(stale, using="default")
    assert not outbox.fail(
        stale, error="x", reason="error", retry_in=None, using="default"
    )
    assert not outbox.release([stale], using="default")
    assert outbox.complete(fresh, using="default")
    row = Delivery.objects.get()
    assert (row.state, row.attempt, row.leased_by) == (State.COMPLETED, 2, "b")


def test_atomic_receivers_roll_back_with_a_lost_lease() -> None:
    signalbox.connect(paid, write_note, run="background", atomic=True)
    paid.send(sender=None, text="once")
    [claimed] = outbox.claim(
        worker="w",
        queues=["default"],
        receivers=[f"{__name__}.write_note"],
        limit=1,
        lease=timedelta(seconds=30),
        using="default",
    )
    found = registry.registry.background()
    # Another worker takes the row over while this one runs the receiver.
    Delivery.objects.update(lease_token=None, state=State.AVAILABLE)
    assert run_delivery(claimed, found, using="default") == Outcome.LEASE_LOST
    assert not Note.objects.exists()  # its write rolled back with the ack
    assert drain() == {Outcome.COMPLETED: 1}
    assert list(Note.objects.values_list("text", flat=True)) == ["once"]


async def test_asend_enqueues_from_async_code() -> None:
    signalbox.connect(paid, record, run="background")
    responses = await paid.asend(sender=None, n=2)
    assert [response for _, response in responses] == [None]
    count = await Delivery.objects.acount()
    # The thread asend() ran in holds its own connection: close it, or the
    # test database cannot be dropped.
    await sync_to_async(connections.close_all)()
    assert count == 1


def record_too(sender: Any, **kwargs: Any) -> None:
    seen.append({"too": True})


def test_several_background_receivers_cost_one_insert() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    signalbox.connect(paid, record, run="background")
    signalbox.connect(paid, record_too, run="background")
    try:
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            paid.send(sender=None, n=1)
        inserts = [q["sql"] for q in queries if "INSERT" in q["sql"]]
        assert len(inserts) == 1
        assert Delivery.objects.count() == 2
        assert drain() == {Outcome.COMPLETED: 2}
    finally:
        paid.disconnect(record_too)


def test_rows_handed_over_before_an_error_are_still_written() -> None:
    # As with Django, receivers before the one that raised have run.
    signalbox.connect(paid, record, run="background")
    signalbox.connect(paid, record_too, run="background")
    paid.connect(explode)
    try:
        with pytest.raises(RuntimeError):
            paid.send(sender=None)
        assert Delivery.objects.count() == 2
    finally:
        paid.disconnect(record_too)
