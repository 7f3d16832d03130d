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
    assert "1 dead deliveries" in run("retry", str(dead.pk))
    dead.refresh_from_db()
    assert (dead.state, dead.attempt, dead.reason) == (State.AVAILABLE, 0, "")
    assert Delivery.objects.get(pk=other.pk).state == State.DEAD
    run("retry", "--receiver", "shop.sms")
    assert Delivery.objects.get(pk=other.pk).state == State.AVAILABLE


def test_retry_needs_to_be_told_what() -> None:
    with pytest.raises(CommandError, match="--dead"):
        run("retry")


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
    assert "Deleted 1 completed and 1 dead" in run("prune")
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
    assert "Deleted 0 completed and 1 dead deliveries" in out
    assert "erased the payloads of 1 dead deliveries" in out
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
    assert "0 dead deliveries" in run("retry", str(erased.pk))
