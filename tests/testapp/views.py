"""Views the integration tests drive through Django's test clients.

Each view leaves a mark in :data:`trail` when its body is done, so a test can
tell whether a receiver ran inside the view or after it (at the commit that
``ATOMIC_REQUESTS`` wraps around the view).
"""

from __future__ import annotations

from django.db import connections, transaction
from django.db.models.signals import post_save
from django.dispatch import Signal as DjangoSignal
from django.http import HttpRequest, JsonResponse

import signalbox
from tests.testapp.models import Note, Order

order_placed = signalbox.Signal()
"""Sent by the views below once they have saved an order."""

order_noted = DjangoSignal()
"""A plain Django signal, sent by :func:`send_django_signals_from_async_view`."""

trail: list[object] = []
"""What happened, in order: views append "view returned", receivers their own marks."""


def _atomic_state() -> dict[str, bool]:
    return {alias: connections[alias].in_atomic_block for alias in connections}


def place_order(request: HttpRequest) -> JsonResponse:
    """Save an order (``post_save``), send ``order_placed``, maybe fail after."""
    order = Order.objects.create(number=request.GET.get("number", "1"))
    order_placed.send(sender=Order, order=order)
    if request.GET.get("fail"):
        raise RuntimeError("the view failed after sending")
    trail.append("view returned")
    return JsonResponse({"id": order.pk, "atomic": _atomic_state()})


@transaction.non_atomic_requests
def place_order_non_atomic(request: HttpRequest) -> JsonResponse:
    """:func:`place_order`, opted out of ``ATOMIC_REQUESTS``."""
    return place_order(request)


def place_order_on_both(request: HttpRequest) -> JsonResponse:
    """Save an order on "default" and a note on "other"."""
    order = Order.objects.create(number=request.GET.get("number", "1"))
    note = Note(text=f"order {order.number}")
    note.save(using="other")
    trail.append("view returned")
    return JsonResponse({"atomic": _atomic_state()})


async def place_order_async(request: HttpRequest) -> JsonResponse:
    """Save an order and ``await order_placed.asend(...)`` from an async view."""
    order = await Order.objects.acreate(number=request.GET.get("number", "1"))
    responses = await order_placed.asend(sender=Order, order=order)
    trail.append("view returned")
    return JsonResponse({"id": order.pk, "responses": len(responses)})


async def send_from_async_view(request: HttpRequest) -> JsonResponse:
    """The mistake the loop warning is for: a synchronous send() in an async view."""
    responses = order_placed.send(sender=Order, order=None)
    trail.append("view returned")
    return JsonResponse({"responses": len(responses)})


async def send_django_signals_from_async_view(request: HttpRequest) -> JsonResponse:
    """The same mistake with Django's own signal class, and with ``post_save``
    sent by hand, as code that saves on the loop's thread would send it."""
    order = Order(number=request.GET.get("number", "1"))
    responses = order_noted.send(sender=Order, order=order)
    responses += post_save.send(
        sender=Order, instance=order, created=True, using="default"
    )
    trail.append("view returned")
    return JsonResponse({"responses": len(responses)})
