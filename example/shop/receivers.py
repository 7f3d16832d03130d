"""The shop's receivers: one for each way a receiver can run.

==========================  ==============================================
``write_audit_line``        inline (the default): runs during ``send()``
``refresh_order_cache``     ``run="on_commit"``: runs once the transaction
                            around the ``send()`` commits
``push_to_websocket``       a coroutine: awaited by ``asend()``
``send_invoice_email``      slow (an SMTP round trip); the shop connects it
                            ``run="background"``, so a worker process sends
                            it; the demo reconnects it per scenario to
                            compare modes
``post_payment_webhook``    ``run="background"`` with ``retries=3`` and a
                            short backoff; the payment provider is down in
                            this example, so it always fails and ends dead
``note_order_committed``    on Django's own ``post_save``: notes the moment
                            the order row is committed, for the demo
==========================  ==============================================

None of them touches the database: the async views send ``order_paid`` too,
and Django forbids synchronous ORM calls on an event loop's thread, which is
where a plain ``send()`` from an async view runs its receivers.

Every process that loads the shop app connects these, the worker included:
a worker runs only the background receivers it finds connected in its own
process, by key (``shop.receivers.send_invoice_email``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any, Final

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db.models.signals import post_save

from shop import effects
from shop.models import Order
from shop.signals import order_paid
from signalbox import Backoff, Run, current_delivery, receiver

audit_log = logging.getLogger("shop.audit")

EMAIL_RUN: Final[Run] = "background"
"""How the shop connects :func:`send_invoice_email` (the demo restores this)."""

WEBHOOK_OPTIONS: Final[dict[str, Any]] = {
    "retries": 3,  # attempts in all, the first one included
    "backoff": Backoff(
        base=timedelta(milliseconds=50), cap=timedelta(milliseconds=200)
    ),
}
"""The background options :func:`post_payment_webhook` is connected with."""


@receiver(order_paid)
def write_audit_line(sender: type[Order], order: Order, **kwargs: Any) -> None:
    """Write an audit line for the payment, during ``send()`` (fast)."""
    audit_log.info("order %s paid, total %s", order.number, order.total)
    effects.record("audit line", order.number)


@receiver(order_paid, run="on_commit")
def refresh_order_cache(sender: type[Order], order: Order, **kwargs: Any) -> None:
    """Refresh the cached order, once the payment is committed (never on rollback)."""
    cache.set(f"shop:order:{order.number}", {"total": str(order.total), "paid": True})
    effects.record("cache refreshed", order.number)


@receiver(order_paid)
async def push_to_websocket(sender: type[Order], order: Order, **kwargs: Any) -> None:
    """Push the payment to the shop's dashboard over a (simulated) websocket."""
    await asyncio.sleep(0.05)
    effects.record("websocket push", order.number)


@receiver(order_paid, run=EMAIL_RUN)
def send_invoice_email(sender: type[Order], order: Order, **kwargs: Any) -> None:
    """E-mail the invoice; the SMTP round trip takes ``settings.SHOP_EMAIL_SECONDS``."""
    effects.record("e-mail started", order.number)
    time.sleep(settings.SHOP_EMAIL_SECONDS)
    send_mail(
        subject=f"Your invoice for order {order.number}",
        message=f"Thank you! We received {order.total}.",
        from_email=None,
        recipient_list=["customer@example.com"],
    )
    effects.record("e-mail sent", order.number)


class ProviderDown(ConnectionError):
    """The payment provider did not answer (it never does, in this example)."""


@receiver(order_paid, run="background", **WEBHOOK_OPTIONS)
def post_payment_webhook(sender: type[Order], order: Order, **kwargs: Any) -> None:
    """Confirm the payment to the provider's webhook, which is down: always raises.

    signalbox retries it after a short random wait (three attempts in all),
    then keeps the delivery as dead, with the traceback, for a person to retry.
    """
    delivery = current_delivery()
    effects.record(
        "webhook attempt", order.number, attempt=delivery.attempt if delivery else None
    )
    raise ProviderDown(
        f"payments.example.com refused the confirmation of order {order.number}"
    )


@receiver(post_save, sender=Order, run="on_commit")
def note_order_committed(sender: type[Order], instance: Order, **kwargs: Any) -> None:
    """Note the moment an order row is committed.

    Checkout saves the order before it sends ``order_paid``, so this is the
    first on-commit callback of the transaction: Django runs it right after
    the COMMIT, before any on-commit receiver of ``order_paid``.
    """
    effects.record("order committed", instance.number)
