"""``signalbox status``, ``retry`` and ``prune``, and the outbox functions behind
them, on real rows."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Q
from django.db.models.functions import Now
from django.test import override_settings

from signalbox import outbox
from signalbox._states import State
from signalbox.models import Delivery

pytestmark = pytest.mark.django_db(transaction=True)


def add(
    receiver: str = "shop.mail", queue: str = "default", **fields: object
) -> Delivery:
    [pk] = outbox.enqueue(
        [outbox.NewDelivery(signal="s", receiver=receiver, payload={}, queue=queue)],
        using="default",
        ids=True,
    )
    if fields:
        Delivery.objects.filter(pk=pk).update(**fields)
    return Delivery.objects.get(pk=pk)


def run(*args: str) -> str:
    out = StringIO()
    call_command("signalbox", *args, stdout=out)
    return out.getvalue()


def refused(*args: str) -> tuple[str, str]:
    """Run a command that must fail: (what it printed, its error message)."""
    out = StringIO()
    with pytest.raises(CommandError) as error:
        call_command("signalbox", *args, stdout=out)
    return out.getvalue(), str(error.value)


def test_status_counts_states_per_queue_and_receiver() -> None:
    add()
    add(state=State.DEAD, finished_at=Now())
    add(receiver="shop.sms", queue="urgent")
    report = json.loads(run("status", "--json"))
    lines = {(line["queue"], line["receiver"]): line for line in report["lines"]}
    assert lines["default", "shop.mail"]["counts"] == {"available": 1, "dead": 1}
    assert lines["urgent", "shop.sms"]["counts"] == {"available": 1}
    # No worker is running, so no worker knows these keys.
    assert report["unknown"] == ["shop.mail", "shop.sms"]
    assert "shop.sms" in run("status")


def test_retry_brings_dead_rows_back_with_fresh_attempts() -> None:
    dead = add(state=State.DEAD, attempt=20, reason="max_attempts", finished_at=Now())
    other = add(receiver="shop.sms", state=State.DEAD, finished_at=Now())
    assert run("retry", str(dead.pk)) == "1 dead delivery is available again.\n"
    dead.refresh_from_db()
    assert (dead.state, dead.attempt, dead.reason) == (State.AVAILABLE, 0, "")
    assert Delivery.objects.get(pk=other.pk).state == State.DEAD
    run("retry", "--receiver", "shop.sms")
    assert Delivery.objects.get(pk=other.pk).state == State.AVAILABLE


def test_retry_needs_to_be_told_what() -> None:
    with pytest.raises(CommandError, match="--dead"):
        run("retry")


def test_retry_says_why_each_named_id_was_not_retried_and_fails() -> None:
    completed = add(state=State.COMPLETED, finished_at=Now())
    waiting = add(state=State.RETRYABLE, attempt=2)
    erased = add(state=State.DEAD, finished_at=Now())
    outbox.erase_payloads(Q(pk=erased.pk), using="default")
    dead = [add(state=State.DEAD, finished_at=Now()) for _ in range(2)]
    missing = max(row.pk for row in (completed, waiting, erased, *dead)) + 1000
    named = [missing, completed.pk, waiting.pk, erased.pk, *(row.pk for row in dead)]
    out, error = refused("retry", *map(str, named))
    # What could be retried was; the rest is named with its reason.
    assert out == "2 dead deliveries are available again.\n"
    assert error.splitlines() == [
        "4 of 6 named deliveries were not retried:",
        f"  {completed.pk}: completed, not dead (only dead deliveries are retried)",
        f"  {waiting.pk}: retryable, not dead (only dead deliveries are retried)",
        f"  {erased.pk}: dead, but its payload was erased: it cannot run again",
        f"  {missing}: no such delivery",
    ]
    states = dict(Delivery.objects.values_list("pk", "state"))
    assert [states[row.pk] for row in dead] == [State.AVAILABLE] * 2
    assert states[completed.pk] == State.COMPLETED
    assert states[waiting.pk] == State.RETRYABLE
    assert states[erased.pk] == State.DEAD


def test_retry_of_a_missing_id_alone_fails() -> None:
    out, error = refused("retry", "9999")
    assert out == ""  # no "0 … available again" before the reasons
    assert error == "1 of 1 named delivery was not retried:\n  9999: no such delivery"


def test_retry_names_ids_or_a_receiver_not_both() -> None:
    dead = add(state=State.DEAD, finished_at=Now())
    _, error = refused("retry", str(dead.pk), "--receiver", "shop.mail")
    assert "not both" in error
    assert Delivery.objects.get(pk=dead.pk).state == State.DEAD


def test_retry_of_a_receiver_key_no_delivery_has_fails() -> None:
    add(state=State.DEAD, finished_at=Now())
    _, error = refused("retry", "--receiver", "shop.mial")
    assert "No delivery has the receiver key 'shop.mial'" in error
    # A key some delivery has, with nothing dead, is no error: nothing to do.
    add(receiver="shop.sms")
    assert run("retry", "--receiver", "shop.sms") == (
        "0 dead deliveries are available again.\n"
    )


def test_retry_of_every_dead_delivery_counts_what_it_left() -> None:
    for _ in range(2):
        add(state=State.DEAD, finished_at=Now())
    erased = add(state=State.DEAD, finished_at=Now())
    outbox.erase_payloads(Q(pk=erased.pk), using="default")
    assert run("retry", "--dead").splitlines() == [
        "2 dead deliveries are available again.",
        "1 dead delivery was left alone: its payload was erased, so it cannot "
        "run again.",
    ]
    assert run("retry", "--dead").splitlines()[0] == (
        "0 dead deliveries are available again."
    )


def test_retry_leaves_rows_that_are_not_dead_alone() -> None:
    running = add(state=State.EXECUTING, attempt=1)
    run("retry", "--dead")
    assert Delivery.objects.get(pk=running.pk).state == State.EXECUTING


@override_settings(
    SIGNALBOX={"COMPLETED_RETENTION_SECONDS": 60, "DEAD_RETENTION_SECONDS": 3600}
)
def test_prune_deletes_only_old_finished_rows() -> None:
    old = outbox.ago(timedelta(minutes=10))
    ancient = outbox.ago(timedelta(hours=2))
    add(state=State.COMPLETED, finished_at=old)  # pruned
    kept_completed = add(state=State.COMPLETED, finished_at=Now())
    kept_dead = add(state=State.DEAD, finished_at=old)
    add(state=State.DEAD, finished_at=ancient)  # pruned
    waiting = add(enqueued_at=ancient, scheduled_at=ancient)
    running = add(state=State.EXECUTING, attempted_at=ancient)
    assert "Deleted 1 completed delivery and 1 dead delivery;" in run("prune")
    assert set(Delivery.objects.values_list("pk", flat=True)) == {
        kept_completed.pk,
        kept_dead.pk,
        waiting.pk,
        running.pk,
    }


PAYLOAD = {
    "sender": None,
    "kwargs": {"format": 1, "values": {"email": "a@example.com"}},
}


def kept_columns(row: Delivery) -> tuple[object, ...]:
    return (
        row.pk,
        row.signal,
        row.receiver,
        row.state,
        row.reason,
        row.error,
        row.attempt,
        row.enqueued_at,
        row.attempted_at,
        row.finished_at,
    )


@override_settings(
    SIGNALBOX={
        "COMPLETED_RETENTION_SECONDS": 60,
        "DEAD_PAYLOAD_RETENTION_SECONDS": 600,
        "DEAD_RETENTION_SECONDS": 3600,
    }
)
def test_prune_erases_old_dead_payloads_and_keeps_the_rows() -> None:
    def dead(age: timedelta) -> Delivery:
        return add(
            state=State.DEAD,
            payload=PAYLOAD,
            reason="max_attempts",
            error="Traceback: RuntimeError: boom",
            attempted_at=outbox.ago(age),
            finished_at=outbox.ago(age),
        )

    fresh, old = dead(timedelta(minutes=1)), dead(timedelta(minutes=20))
    dead(timedelta(hours=2))  # deleted
    done = add(state=State.COMPLETED, payload=PAYLOAD, finished_at=Now())
    waiting = add(payload=PAYLOAD, enqueued_at=outbox.ago(timedelta(hours=2)))
    out = run("prune")
    assert "Deleted 0 completed deliveries and 1 dead delivery;" in out
    assert "erased the payload of 1 dead delivery (its row is kept)" in out
    erased = Delivery.objects.get(pk=old.pk)
    assert kept_columns(erased) == kept_columns(old)
    assert erased.payload is None
    assert erased.payload_erased_at is not None
    assert Delivery.objects.filter(payload__isnull=True).count() == 1  # SQL NULL
    for untouched in (fresh, done, waiting):
        row = Delivery.objects.get(pk=untouched.pk)
        assert (row.payload, row.payload_erased_at) == (PAYLOAD, None)
    assert "erased the payloads of 0 dead" in run("prune")
    assert Delivery.objects.get(pk=old.pk).payload_erased_at == erased.payload_erased_at


def test_erasing_leaves_rows_that_may_still_run_alone() -> None:
    finished = [
        add(state=state, payload=PAYLOAD, finished_at=Now())
        for state in (State.DEAD, State.COMPLETED)
    ]
    running = [
        add(state=state, payload=PAYLOAD)
        for state in (State.AVAILABLE, State.RETRYABLE, State.EXECUTING)
    ]
    assert outbox.erase_payloads(Q(), using="default") == 2
    assert outbox.erase_payloads(Q(), using="default") == 0
    for row in finished:
        assert Delivery.objects.get(pk=row.pk).payload is None
    for row in running:
        assert Delivery.objects.get(pk=row.pk).payload == PAYLOAD


def test_retry_takes_dead_and_retryable_rows_but_never_erased_ones() -> None:
    dead = add(state=State.DEAD, attempt=20, reason="max_attempts", finished_at=Now())
    later = add(
        state=State.RETRYABLE,
        attempt=3,
        reason="error",
        scheduled_at=outbox.after(timedelta(hours=1)),
    )
    erased = add(state=State.DEAD, finished_at=Now())
    outbox.erase_payloads(Q(pk=erased.pk), using="default")
    done = add(state=State.COMPLETED, finished_at=Now())
    assert outbox.retry(Q(), using="default") == 2
    assert Delivery.objects.due().count() == 2  # both due now
    for row in (dead, later):
        fresh = Delivery.objects.get(pk=row.pk)
        assert (fresh.state, fresh.attempt, fresh.finished_at) == (
            State.AVAILABLE,
            0,
            None,
        )
    assert Delivery.objects.get(pk=erased.pk).state == State.DEAD
    assert Delivery.objects.get(pk=done.pk).state == State.COMPLETED
    out, error = refused("retry", str(erased.pk))
    assert out == ""
    assert f"{erased.pk}: dead, but its payload was erased" in error


@override_settings(SIGNALBOX={"UNKNOWN_RECEIVER_GRACE_SECONDS": 0})
def test_what_a_worker_and_a_relay_log_counts_one_delivery_as_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    add(
        receiver="nobody.knows_this",
        state=State.EXECUTING,
        attempt=1,
        lease_expires_at=outbox.ago(timedelta(minutes=1)),
    )
    run("worker", "--burst", "-v", "2")
    logged = [record.getMessage() for record in caplog.records]
    assert "Took back 1 delivery whose lease expired." in logged
    assert "1 delivery names a receiver no worker knows; marked dead." in logged
    caplog.clear()
    add(state=State.EXECUTING, lease_expires_at=outbox.ago(timedelta(minutes=1)))
    assert run("relay", "--once") == "Handed over 0 deliveries.\n"
    logged = [record.getMessage() for record in caplog.records]
    assert "Took back 1 delivery whose lease expired." in logged
