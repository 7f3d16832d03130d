"""``signalbox status``, ``retry`` and ``prune``, on real rows."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
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
