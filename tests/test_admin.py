"""The admin: what an operator sees of the outbox, and the two actions.

Permissions, CSRF and escaping are test_security.py's business; these tests
use a user who holds every signalbox permission.
"""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.db.models import Q
from django.db.models.functions import Now
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from signalbox import outbox
from signalbox._states import State
from signalbox.models import Delivery, WorkerRecord

pytestmark = pytest.mark.django_db

PAYLOAD = {
    "sender": None,
    "kwargs": {"format": 1, "values": {"email": "a@example.com", "n": 3}},
}
TRACEBACK = 'Traceback (most recent call last):\n  File "x.py"\nRuntimeError: boom\n'
CODENAMES = ("view_delivery", "retry_delivery", "erase_delivery_payload")


def staff(*codenames: str, name: str = "operator") -> User:
    """A staff user (not a superuser) holding exactly ``codenames``."""
    user = User.objects.create_user(name, is_staff=True)
    perms = Permission.objects.filter(
        content_type__app_label="signalbox", codename__in=codenames
    )
    assert perms.count() == len(codenames)
    user.user_permissions.set(perms)
    return user


def logged_in(user: User, **options: Any) -> Client:
    client = Client(**options)
    client.force_login(user)
    return client


@pytest.fixture
def operator() -> Client:
    return logged_in(staff(*CODENAMES, "view_workerrecord"))


def add(receiver: str = "shop.mail", **fields: Any) -> Delivery:
    [pk] = outbox.enqueue(
        [outbox.NewDelivery(signal="shop.paid", receiver=receiver, payload=PAYLOAD)],
        using="default",
        ids=True,
    )
    if fields:
        Delivery.objects.filter(pk=pk).update(**fields)
    return Delivery.objects.get(pk=pk)


def dead(receiver: str = "shop.mail", **fields: Any) -> Delivery:
    return add(
        receiver,
        **{
            "state": State.DEAD,
            "attempt": 20,
            "reason": "max_attempts",
            "error": TRACEBACK,
            "attempted_at": Now(),
            "finished_at": Now(),
            **fields,
        },
    )


LIST = reverse("admin:signalbox_delivery_changelist")


def change_url(delivery: Delivery) -> str:
    return reverse("admin:signalbox_delivery_change", args=[delivery.pk])


def listed(client: Client, **query: str) -> list[int]:
    response = client.get(LIST, query)
    assert response.status_code == 200
    return sorted(row.pk for row in response.context["cl"].result_list)


def act(client: Client, action: str, *rows: Delivery) -> Any:
    return client.post(
        LIST,
        {"action": action, "_selected_action": [row.pk for row in rows]},
        follow=True,
    )


def test_the_list_shows_what_an_operator_asks_first(operator: Client) -> None:
    row = dead(queue="mail")
    response = operator.get(LIST)
    cells = {
        name: html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
        for name, cell in re.findall(
            r'<t[dh] class="field-(\w+)[^"]*">(.*?)</t[dh]>', response.content.decode()
        )
    }
    assert cells == {
        "id": str(row.pk),
        "state": "dead",
        "receiver": "shop.mail",
        "queue": "mail",
        "attempts": "20/20",
        "enqueued_at": cells["enqueued_at"],
        "finished_at": cells["finished_at"],
        "reason": "max_attempts",
        "last_error": "RuntimeError: boom",
    }
    assert cells["enqueued_at"] not in ("", "-")
    assert cells["finished_at"] not in ("", "-")


def test_the_list_leaves_payloads_in_the_database(operator: Client) -> None:
    dead(), dead()
    with CaptureQueriesContext(connection) as queries:
        assert operator.get(LIST).status_code == 200
    reads = [q["sql"] for q in queries if "signalbox_delivery" in q["sql"]]
    column = connection.ops.quote_name  # "reason" or `reason`, by database
    assert any(f".{column('reason')}" in sql for sql in reads)
    assert not any(f".{column('payload')}" in sql for sql in reads)


def test_filters_by_state_queue_receiver_reason_and_erasure(operator: Client) -> None:
    mail = dead()
    sms = dead("shop.sms", reason="not_retryable", queue="urgent")
    waiting = add()
    outbox.erase_payloads(Q(pk=sms.pk), using="default")
    assert listed(operator, state__exact="dead") == sorted([mail.pk, sms.pk])
    assert listed(operator, state__exact="available") == [waiting.pk]
    assert listed(operator, queue="urgent") == [sms.pk]
    assert listed(operator, receiver="shop.mail") == sorted([mail.pk, waiting.pk])
    assert listed(operator, reason="not_retryable") == [sms.pk]
    assert listed(operator, payload_erased_at__isempty="0") == [sms.pk]


def test_search_by_receiver_or_id(operator: Client) -> None:
    mail, sms = add("shop.mail"), add("shop.sms")
    assert listed(operator, q="mail") == [mail.pk]
    assert listed(operator, q=str(sms.pk)) == [sms.pk]
    assert listed(operator, q="no such thing") == []
    assert listed(operator, q="99999999999999999999999") == []  # beyond a bigint


def test_the_detail_page_shows_the_traceback_and_the_payload_as_json(
    operator: Client,
) -> None:
    row = dead()
    page = operator.get(change_url(row)).content.decode()
    blocks = [
        html.unescape(block) for block in re.findall(r"<pre>(.*?)</pre>", page, re.S)
    ]
    assert TRACEBACK in blocks
    [payload] = [block for block in blocks if block.startswith("{")]
    assert payload == json_text(PAYLOAD)
    form = page.partition('id="delivery_form"')[2].partition("</form>")[0]
    editable = re.findall(r'<(?:textarea|select|input(?![^>]*type="hidden"))', form)
    assert editable == []  # read-only: no field, no save button


def json_text(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def test_deliveries_are_never_added_edited_or_deleted_by_hand(operator: Client) -> None:
    row = dead()
    assert operator.get(reverse("admin:signalbox_delivery_add")).status_code == 403
    assert operator.post(change_url(row), {"state": "available"}).status_code == 403
    delete = reverse("admin:signalbox_delivery_delete", args=[row.pk])
    assert operator.post(delete, {"post": "yes"}).status_code == 403
    assert act(operator, "delete_selected", row).status_code == 403
    assert Delivery.objects.get(pk=row.pk).state == State.DEAD


def test_retry_makes_dead_and_retryable_rows_available_with_fresh_attempts(
    operator: Client,
) -> None:
    gone, later = dead(), add(state=State.RETRYABLE, attempt=4, reason="error")
    later_at = outbox.after(timedelta(hours=1))
    Delivery.objects.filter(pk=later.pk).update(scheduled_at=later_at)
    done = add(state=State.COMPLETED, finished_at=Now())
    response = act(operator, "retry", gone, later, done)
    assert response.status_code == 200
    [message] = [str(m) for m in response.context["messages"]]
    assert message.startswith("2 of 3 selected deliveries are available again")
    assert message.endswith("Left alone: 1 (not dead or retryable, or erased).")
    for row in (gone, later):
        fresh = Delivery.objects.get(pk=row.pk)
        assert (fresh.state, fresh.attempt, fresh.finished_at) == (
            State.AVAILABLE,
            0,
            None,
        )
        assert fresh.error == row.error  # the last error stays until a new one
    assert set(Delivery.objects.due().values_list("pk", flat=True)) == {
        gone.pk,
        later.pk,
    }
    assert Delivery.objects.get(pk=done.pk).state == State.COMPLETED


def test_action_messages_count_one_delivery_as_one(operator: Client) -> None:
    def message(action: str) -> str:
        response = act(operator, action, dead())
        [text] = [str(m) for m in response.context["messages"]]
        return text

    assert message("retry") == (
        "1 of 1 selected delivery is available again, with fresh attempts."
    )
    assert message("erase_payload") == (
        "Erased the payload of 1 of 1 selected delivery; its row is kept."
    )


def test_erase_keeps_the_row_and_says_so_on_the_detail_page(operator: Client) -> None:
    row, waiting = dead(), add()
    response = act(operator, "erase_payload", row, waiting)
    [message] = [str(m) for m in response.context["messages"]]
    assert message.startswith("Erased the payload of 1 of 2 selected deliveries")
    erased = Delivery.objects.get(pk=row.pk)
    assert erased.payload is None
    assert erased.payload_erased_at is not None
    assert (erased.receiver, erased.error, erased.reason, erased.attempt) == (
        row.receiver,
        row.error,
        row.reason,
        row.attempt,
    )
    assert (erased.enqueued_at, erased.finished_at) == (
        row.enqueued_at,
        row.finished_at,
    )
    assert Delivery.objects.get(pk=waiting.pk).payload == PAYLOAD
    page = operator.get(change_url(row)).content.decode()
    assert "(erased)" in page
    assert "a@example.com" not in page
    # An erased row has nothing left to run.
    response = act(operator, "retry", row)
    assert Delivery.objects.get(pk=row.pk).state == State.DEAD
    [message] = [str(m) for m in response.context["messages"]]
    assert message.startswith("0 of 1 selected")


def test_the_workers_page_lists_workers_and_their_keys(operator: Client) -> None:
    outbox.heartbeat("host:1", ["default"], ["shop.mail", "shop.sms"], using="default")
    WorkerRecord.objects.create(name="host:2", seen_at=outbox.ago(timedelta(days=1)))
    page = operator.get(reverse("admin:signalbox_workerrecord_changelist"))
    text = page.content.decode()
    assert "host:1" in text
    assert "host:2" in text
    assert text.count('alt="True"') == 1  # only host:1 is live
    record = WorkerRecord.objects.get(name="host:1")
    detail = operator.get(
        reverse("admin:signalbox_workerrecord_change", args=[record.pk])
    ).content.decode()
    assert "<pre>shop.mail\nshop.sms</pre>" in detail
    add_url = reverse("admin:signalbox_workerrecord_add")
    assert operator.get(add_url).status_code == 403
