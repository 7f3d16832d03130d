"""Checkout, tested the way a project tests its receivers: with signalbox.testing.

The ``signalbox`` fixture (signalbox's pytest plugin) records every send
and drains what a worker would run; pytest-django's ``db`` runs each test
in a transaction that never commits, and ``drain()`` runs the on-commit
receivers as the commit would have.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import AsyncClient, Client

from shop import effects
from shop.models import Order
from shop.receivers import (
    ProviderDown,
    post_payment_webhook,
    refresh_order_cache,
    send_invoice_email,
    write_audit_line,
)
from shop.signals import order_paid
from signalbox.testing import Happened, Outcome

pytestmark = pytest.mark.django_db


def checkout(client: Client, number: str, **extra: Any) -> Any:
    return client.post("/checkout/", {"number": number, "total": "12.50", **extra})


def test_checkout_sends_the_invoice_once_the_order_is_committed(
    client: Client, signalbox: Any
) -> None:
    response = checkout(client, "A-1")

    assert response.status_code == 201
    order = Order.objects.get(number="A-1")
    signalbox.assert_sent(order_paid, sender=Order, order=order)
    # Inline: already done. Background: only its row, until a worker runs it.
    assert signalbox.assert_delivered(write_audit_line, order=order).happened is (
        Happened.RAN
    )
    assert signalbox.assert_delivered(send_invoice_email).delivery_id is not None
    assert mail.outbox == []

    ran = signalbox.drain(raise_errors=False)

    [invoice] = mail.outbox
    assert invoice.subject == "Your invoice for order A-1"
    assert "12.50" in invoice.body
    assert cache.get("shop:order:A-1") == {"total": "12.50", "paid": True}
    outcomes = {each.receiver.rsplit(".", 1)[1]: each.outcome for each in ran}
    assert outcomes == {
        "send_invoice_email": Outcome.COMPLETED,
        "post_payment_webhook": Outcome.RETRYING,
    }


def test_a_rolled_back_checkout_sends_nothing(client: Client, signalbox: Any) -> None:
    response = checkout(client, "A-2", fail_after_signal="on")

    assert response.status_code == 409
    assert not Order.objects.exists()
    # The send reached the receivers, and the rollback took back its rows and
    # the on-commit work: nothing is left to run.
    assert signalbox.drain() == []
    assert mail.outbox == []
    assert cache.get("shop:order:A-2") is None
    assert effects.find("cache refreshed", "A-2") is None


def test_the_webhook_is_retried_then_kept_dead(client: Client, signalbox: Any) -> None:
    checkout(client, "A-3")

    with pytest.raises(ProviderDown, match="refused the confirmation of order A-3"):
        signalbox.drain(queue="default")

    ran = signalbox.drain(until="empty", raise_errors=False)
    webhook = [each for each in ran if each.receiver.endswith("post_payment_webhook")]
    assert [each.attempt for each in webhook] == [2, 3]
    assert (webhook[-1].outcome, webhook[-1].reason) == (Outcome.DEAD, "max_attempts")
    attempts = [e.attempt for e in effects.find_all("webhook attempt", "A-3")]
    assert attempts == [1, 2, 3]


# The async view's ORM calls run in another thread, on a connection of its
# own: it must see committed rows, so this test commits (transactional_db).
@pytest.mark.django_db(transaction=True)
async def test_the_async_checkout_writes_the_same_rows(
    async_client: AsyncClient, signalbox: Any
) -> None:
    response = await async_client.post(
        "/checkout/async/", {"number": "A-4", "total": "3.00"}
    )

    assert response.status_code == 201
    signalbox.assert_delivered(send_invoice_email)
    signalbox.assert_delivered(refresh_order_cache)
    assert effects.find("websocket push", "A-4") is not None


def test_the_webhook_alone(signalbox: Any) -> None:
    order = Order.objects.create(number="A-5", total=Decimal("1.00"), paid=True)
    with signalbox.muted(order_paid):
        order_paid.send(sender=Order, order=order)
    signalbox.assert_not_delivered(post_payment_webhook)


@pytest.mark.signalbox(background="inline")
def test_inline_mode_surfaces_the_failing_webhook_at_the_send(
    signalbox: Any,
) -> None:
    order = Order.objects.create(number="A-6", total=Decimal("1.00"), paid=True)

    with pytest.raises(ProviderDown):
        order_paid.send(sender=Order, order=order)

    # The invoice ran at the send, before the webhook that failed.
    assert [message.subject for message in mail.outbox] == [
        "Your invoice for order A-6"
    ]
    assert [run.outcome for run in signalbox.runs] == [
        Outcome.COMPLETED,
        Outcome.RETRYING,
    ]
