"""Checkout, three ways: a sync view, and two async views (one with the gotcha).

Each takes a POST with ``number`` and ``total``, creates the order already
paid, and sends ``order_paid``. The sync view sends inside the transaction; a
``fail_after_signal`` field makes a later step of that transaction fail, so it
rolls back after the signal was sent.
"""

from __future__ import annotations

from django import forms
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from shop.models import Order
from shop.signals import order_paid


class CheckoutForm(forms.Form):
    """What a checkout POST carries."""

    number = forms.CharField(max_length=32)
    total = forms.DecimalField(max_digits=10, decimal_places=2, min_value=0)
    fail_after_signal = forms.BooleanField(required=False)


class CheckoutFailed(Exception):
    """A step after ``order_paid`` failed, so the checkout's transaction rolls back."""


@require_POST
def checkout(request: HttpRequest) -> JsonResponse:
    """Create a paid order and send ``order_paid``, in one transaction.

    Inline receivers run inside the transaction; ``run="on_commit"`` receivers
    run after the COMMIT, still in this request, and never after a rollback;
    ``run="background"`` receivers only write an outbox row inside it, which
    a worker process runs once it is committed.
    """
    form = CheckoutForm(request.POST)
    if not form.is_valid():
        return invalid(form)
    data = form.cleaned_data
    try:
        with transaction.atomic():
            order = Order.objects.create(
                number=data["number"], total=data["total"], paid=True
            )
            order_paid.send(sender=Order, order=order)
            if data["fail_after_signal"]:
                raise CheckoutFailed("stock reservation failed")
    except CheckoutFailed as error:
        return JsonResponse({"order": data["number"], "error": str(error)}, status=409)
    return created(order)


@require_POST
async def checkout_async(request: HttpRequest) -> JsonResponse:
    """Async checkout that sends with ``await order_paid.asend(...)``.

    Sync receivers run in another thread and coroutine receivers are awaited,
    so the event loop stays free while they work.
    """
    form = CheckoutForm(request.POST)
    if not form.is_valid():
        return invalid(form)
    data = form.cleaned_data
    order = await Order.objects.acreate(
        number=data["number"], total=data["total"], paid=True
    )
    await order_paid.asend(sender=Order, order=order)
    return created(order)


@require_POST
async def checkout_async_send(request: HttpRequest) -> JsonResponse:
    """The gotcha: async checkout that calls the synchronous ``order_paid.send()``.

    Every sync receiver runs right here, on the event loop's thread, and every
    other request served by this loop waits. A coroutine receiver cannot be run
    from here at all: ``send()`` raises ``RuntimeError`` after the sync ones ran.
    """
    form = CheckoutForm(request.POST)
    if not form.is_valid():
        return invalid(form)
    data = form.cleaned_data
    order = await Order.objects.acreate(
        number=data["number"], total=data["total"], paid=True
    )
    order_paid.send(sender=Order, order=order)
    return created(order)


def invalid(form: forms.Form) -> JsonResponse:
    """400, with what was wrong with the POST."""
    return JsonResponse({"errors": form.errors}, status=400)


def created(order: Order) -> JsonResponse:
    """201, with the paid order's number."""
    return JsonResponse({"order": order.number, "paid": order.paid}, status=201)
