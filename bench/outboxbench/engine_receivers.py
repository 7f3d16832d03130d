"""A no-op background receiver on the Celery engine (bench/engines.py)."""

from __future__ import annotations

from typing import Any

import signalbox

handed = signalbox.Signal()
"""Sent with ``order=`` (request path) or ``order_id=`` (throughput)."""


@signalbox.receiver(handed, run="background", engine="celery")
def order_handed(sender: object, **kwargs: Any) -> None:
    """Does nothing: the figures are the engine's own cost."""
