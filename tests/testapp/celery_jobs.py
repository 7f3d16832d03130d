"""Background receivers that the Celery engine's tests run in Celery workers.

Each notes its start and end in the ``Note`` table through its own autocommit
write, so a killed worker cannot hide that it started, and a delivery that
ran twice shows two ends.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

import signalbox
from tests.testapp.models import Note, Order

paid = signalbox.Signal()


def noted(
    sender: object,
    order: Order,
    tag: str,
    seconds: float = 0,
    fail: bool = False,
    **kwargs: Any,
) -> None:
    """Note the start, sleep ``seconds`` on the first attempt, maybe fail."""
    delivery = signalbox.current_delivery()
    assert delivery is not None
    line = f"{tag} {{}} {delivery.id} {delivery.attempt} {os.getpid()} {order.number}"
    Note.objects.create(text=line.format("start"))
    if delivery.attempt == 1:
        time.sleep(seconds)
    if fail:
        raise RuntimeError("the mail server is down")
    Note.objects.create(text=line.format("end"))


def connect() -> None:
    """Connect :func:`noted` to run on the ``"celery"`` engine."""
    signalbox.connect(
        paid,
        noted,
        run="background",
        engine="celery",
        retries=2,
        backoff=signalbox.Backoff(base=timedelta(0)),
    )


def disconnect() -> None:
    paid.disconnect(noted)
