"""A no-op background receiver on the Celery engine (bench/engines.py)."""

from __future__ import annotations

from typing import Any

import signalbox

handed = signalbox.Signal()
"""Sent with ``order=`` (request path) or ``order_id=`` (throughput)."""


# Its own queue (`bench-engine`, after the engine's queue_prefix), apart from
# the plain tasks' (the app's task_default_queue, where `queue=` unset goes).
@signalbox.receiver(handed, run="background", engine="celery", queue="engine")
def order_handed(sender: object, **kwargs: Any) -> None:
    """Does nothing: the figures are the engine's own cost."""
