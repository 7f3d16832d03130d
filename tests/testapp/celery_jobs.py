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
paid_later = signalbox.Signal()
LATER = timedelta(seconds=3)


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


def noted_later(sender: object, **kwargs: Any) -> None:
    """:func:`noted`, for a receiver that runs ``LATER`` after the commit."""
    noted(sender, **kwargs)


def connect() -> None:
    """Connect the receivers to run on the ``"celery"`` engine."""
    backoff = signalbox.Backoff(base=timedelta(0))
    options: dict[str, Any] = {"run": "background", "engine": "celery"}
    signalbox.connect(paid, noted, retries=2, backoff=backoff, **options)
    signalbox.connect(paid_later, noted_later, delay=LATER, **options)


def disconnect() -> None:
    paid.disconnect(noted)
    paid_later.disconnect(noted_later)
