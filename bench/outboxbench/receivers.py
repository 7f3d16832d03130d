"""The background receivers signalbox delivers in the benchmark.

Each signal has exactly one receiver, so one send writes one outbox row.
"""

from __future__ import annotations

from typing import Any

import signalbox
from outboxbench import marks

placed = signalbox.Signal()
"""Sent with ``order=`` (request path) or ``order_id=`` (throughput)."""

probe = signalbox.Signal()
"""Sent with ``sample=`` and ``port=``: the latency probe."""


@signalbox.receiver(placed, run="background")
def order_placed(sender: object, **kwargs: Any) -> None:
    """Does nothing: the figures are signalbox's own cost."""


@signalbox.receiver(probe, run="background")
def probe_received(sender: object, sample: int, port: int, **kwargs: Any) -> None:
    marks.stamp(sample, port)
