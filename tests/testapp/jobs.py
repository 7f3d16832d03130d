"""Background receivers that the acceptance tests run in real worker processes.

Each records its executions in the ``Note`` table through its own
autocommit write, so a killed worker cannot hide that it started.
"""

from __future__ import annotations

import os
import time
from typing import Any

import signalbox
from tests.testapp.models import Note

work = signalbox.Signal()


@signalbox.receiver(work, run="background", retries=3)
def sleepy_job(sender: object, seconds: float, tag: str, **kwargs: Any) -> None:
    """Note the start, then sleep ``seconds`` on the first run only (the first
    attempt, never interrupted)."""
    delivery = signalbox.current_delivery()
    assert delivery is not None
    Note.objects.create(
        text=f"{tag} start {delivery.id} {delivery.attempt} {os.getpid()} "
        f"{delivery.interrupted}"
    )
    if delivery.attempt == 1 and not delivery.interrupted:
        time.sleep(seconds)
    Note.objects.create(
        text=f"{tag} end {delivery.id} {delivery.attempt} {os.getpid()}"
    )
