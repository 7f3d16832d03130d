"""Background receivers the engines' tests run through real brokers and workers.

They are connected (to :data:`paid` and :data:`refused`) for the engine
aliased ``"remote"`` when the settings configure one (as
tests/engine_worker_settings.py does; the tests call :func:`connect`), each
under a fixed key so that the test process and the worker name them alike.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import signalbox
from tests.testapp.models import Note, Order

paid = signalbox.Signal()
refused = signalbox.Signal()
ALIAS = "remote"


def note_order(sender: object, order: Order, **kwargs: Any) -> None:
    """Note the order's number (a model instance, re-fetched), attempt and pid."""
    delivery = signalbox.current_delivery()
    assert delivery is not None
    Note.objects.create(text=f"{order.number} {delivery.attempt} {os.getpid()}")


def fail(sender: object, **kwargs: Any) -> None:
    """Note the attempt, then fail."""
    delivery = signalbox.current_delivery()
    assert delivery is not None
    Note.objects.create(text=f"fail {delivery.attempt} {os.getpid()}")
    raise RuntimeError("the mail server is down")


def connect() -> None:
    """Connect the receivers (to :data:`paid` and :data:`refused`) for ``"remote"``."""
    signalbox.connect(
        paid,
        note_order,
        run="background",
        engine=ALIAS,
        dispatch_uid="remote.note_order",
    )
    signalbox.connect(
        refused,
        fail,
        run="background",
        engine=ALIAS,
        retries=2,
        backoff=signalbox.Backoff(base=timedelta(0)),
        dispatch_uid="remote.fail",
    )


def disconnect() -> None:
    paid.disconnect(note_order, dispatch_uid="remote.note_order")
    refused.disconnect(fail, dispatch_uid="remote.fail")
